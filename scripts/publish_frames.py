#!/usr/bin/env python3
"""Publish JPEG files to stream-gateway in the frame wire format (docs/wire-format.md).

An example of a producer in another language:
    python3 scripts/publish_frames.py --bind tcp://127.0.0.1:5555 --stream cam9 photos/*.jpg
    python3 scripts/publish_frames.py --key-file bus.key --bind tcp://10.0.0.5:5555 photos/

Wire version 3: each message is three parts, [topic][header][jpeg]. The topic
is b"f/<stream>/" for full-rate frames and b"p/<stream>/" for the preview that
gateways keep for every stream (here the same picture, about once a second).
The header is <B Q Q I I Q> (version 3, seq, capture ns, width, height,
producer id), then a u64 length and the UTF-8 stream name, all little-endian.

With a bus key (--key-file, or the BUS_KEY_FILE / BUS_KEY variables) a 4th part
carries HMAC-SHA-256 over the other three: [0x01][key id, 4 bytes][tag, 32
bytes] (docs/wire-format.md, "Authentication"). The format itself is
scripts/benchkit/wire.py, which every script on the bus shares.
Unlike frame-producer, a libzmq PUB cannot refuse subscribers without the key:
anyone who reaches the port can read the frames, so bind a private address.
"""
import argparse
import os
import pathlib
import random
import struct
import sys
import time

import zmq

from benchkit import wire


def jpeg_size(data: bytes):
    """Width and height from the first SOFn segment of a JPEG."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="tcp://127.0.0.1:5555")
    ap.add_argument("--key-file", default=os.environ.get("BUS_KEY_FILE"),
                    help="bus key file (hex, first line signs); also BUS_KEY_FILE, or the key in BUS_KEY")
    ap.add_argument("--stream", default="py0")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--count", type=int, default=0, help="stop after this many frames (0: forever)")
    ap.add_argument("--preview-interval", type=float, default=1.0, help="seconds between previews")
    ap.add_argument("paths", nargs="+", help="JPEG files or directories of them")
    args = ap.parse_args()

    files = []
    for p in map(pathlib.Path, args.paths):
        files += sorted(x for x in p.iterdir() if x.suffix.lower() in (".jpg", ".jpeg")) if p.is_dir() else [p]
    frames = []
    for f in files:
        data = f.read_bytes()
        size = jpeg_size(data)
        if not data.startswith(b"\xff\xd8") or size is None:
            print(f"skipping {f}: not a JPEG", file=sys.stderr)
            continue
        frames.append((data, size))
    if not frames:
        print("no JPEG frames to publish", file=sys.stderr)
        return 2
    key = None
    try:
        if args.key_file:
            key = wire.read_keys(args.key_file)[0]
        elif os.environ.get("BUS_KEY"):
            key = wire.parse_keys(os.environ["BUS_KEY"])[0]
    except (OSError, ValueError) as e:
        print(f"bus key: {e}", file=sys.stderr)
        return 2

    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 4)
    sock.bind(args.bind)
    producer_id = random.getrandbits(64)
    interval = 1.0 / args.fps
    start = time.monotonic()
    seq = previews = 0
    next_preview = start
    while args.count == 0 or seq < args.count:
        data, (w, h) = frames[seq % len(frames)]
        ts = time.time_ns()
        head = wire.Header(seq, ts, w, h, producer_id, args.stream)
        sock.send_multipart(wire.message(wire.FRAME, head, data, key), copy=False)
        if time.monotonic() >= next_preview:
            # Previews count their own seq. A real producer sends a small picture.
            head = wire.Header(previews, ts, w, h, producer_id, args.stream)
            sock.send_multipart(wire.message(wire.PREVIEW, head, data, key), copy=False)
            previews += 1
            next_preview = max(next_preview + args.preview_interval, time.monotonic())
        seq += 1
        time.sleep(max(0.0, start + seq * interval - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
