#!/usr/bin/env python3
"""Publish JPEG files to stream-gateway in the frame wire format (docs/wire-format.md).

An example of a producer in another language:
    python3 scripts/publish_frames.py --bind tcp://0.0.0.0:5555 --stream cam9 photos/*.jpg

Each message is three parts: [stream name][header][jpeg], the header being
<B Q Q I I Q> (version, seq, capture ns, width, height, producer id), then a
u64 length and the UTF-8 stream name, all little-endian.
"""
import argparse
import os
import pathlib
import random
import struct
import sys
import time

import zmq

VERSION = 1


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


def header(seq: int, ts_ns: int, width: int, height: int, producer_id: int, stream: str) -> bytes:
    name = stream.encode()
    return struct.pack("<BQQIIQQ", VERSION, seq, ts_ns, width, height, producer_id, len(name)) + name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="tcp://0.0.0.0:5555")
    ap.add_argument("--stream", default="py0")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--count", type=int, default=0, help="stop after this many frames (0: forever)")
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

    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 4)
    sock.bind(args.bind)
    producer_id = random.getrandbits(64)
    interval = 1.0 / args.fps
    start = time.monotonic()
    seq = 0
    while args.count == 0 or seq < args.count:
        data, (w, h) = frames[seq % len(frames)]
        head = header(seq, time.time_ns(), w, h, producer_id, args.stream)
        sock.send_multipart([args.stream.encode(), head, data], copy=False)
        seq += 1
        time.sleep(max(0.0, start + seq * interval - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
