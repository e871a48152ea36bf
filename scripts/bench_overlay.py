#!/usr/bin/env python3
"""The overlay benchmark: what detections cost the gateway per delivered frame.

1000 viewer pages (mjpeg-load --ws cam0 --ws-detections: each page's one
WebSocket, asking for detections as the page does with "Boxes" on) watch one
640x480 test-pattern camera, while a stand-in detector on the bus publishes
detections messages for it at 5 a second ("on"), or publishes nothing
("off"). The rounds alternate off/on in one run, on one gateway process (one
serving thread pinned to core 0, mjpeg-load on core 1), so both see the same
machine. The figure is the gateway's CPU per delivered frame, on against
off: a page's detections ride in front of its next frame in the same write,
so it should be the same within noise.

    scripts/bench.sh --overlay                  # 1000 pages, 3 rounds of each
    scripts/bench.sh --overlay --pages 100 --rounds 1

Writes its table between the `overlay` markers of bench/report.md.
"""
import argparse
import datetime
import json
import os
import pathlib
import statistics
import struct
import subprocess
import sys
import threading
import time

from bench import BIN, free_port, pinned, replace_section, stop, wait_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- overlay: scripts/bench.sh --overlay -->", "<!-- /overlay -->"


def detections_message(stream, seq, size, boxes):
    """A version 3 detections message (docs/wire-format.md), unsigned."""
    name = stream.encode()
    header = struct.pack("<BQQIIQQ", 3, seq, time.time_ns(), size[0], size[1], 0xBE7C, len(name)) + name
    model = b"bench-overlay"
    payload = struct.pack("<Q", len(model)) + model + struct.pack("<Q", len(boxes))
    for label, score, x, y, w, h in boxes:
        payload += struct.pack("<Q", len(label)) + label.encode() + struct.pack("<fffff", score, x, y, w, h)
    return [b"d/" + name + b"/", header, payload]


class Detector(threading.Thread):
    """A stand-in detector: a PUB socket sending `rate` detections
    messages a second for `stream` while `on` is set."""

    def __init__(self, endpoint, stream, size, rate):
        super().__init__(daemon=True)
        try:
            import zmq
        except ImportError:
            sys.exit("bench_overlay.py needs pyzmq: run scripts/setup.sh (installs it)")
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.bind(endpoint)
        self.stream, self.size, self.rate = stream, size, rate
        self.on, self.done = threading.Event(), threading.Event()
        self.sent = 0
        self.boxes = [("person", 0.91, 0.10, 0.20, 0.20, 0.60), ("person", 0.72, 0.55, 0.25, 0.15, 0.50),
                      ("dog", 0.66, 0.70, 0.70, 0.20, 0.25)]

    def run(self):
        seq, next_at = 0, time.monotonic()
        while not self.done.is_set():
            next_at += 1.0 / self.rate
            if self.on.is_set():
                seq += 1
                self.sock.send_multipart(detections_message(self.stream, seq, self.size, self.boxes))
                self.sent += 1
            time.sleep(max(0.0, next_at - time.monotonic()))


def load(port, pid, a):
    args = [str(BIN / "mjpeg-load"), "--addr", f"127.0.0.1:{port}", "--pid", str(pid),
            "--clients", str(a.pages), "--ws", "cam0", "--ws-detections",
            "--duration", str(a.duration), "--warmup", str(a.warmup)]
    out = subprocess.run(pinned(1, args), capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"mjpeg-load failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--rate", type=float, default=5.0, help="detections messages a second")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "report.md"))
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split("x"))
    zmq_frames = f"tcp://127.0.0.1:{free_port()}"
    zmq_dets = f"tcp://127.0.0.1:{free_port()}"
    producer = subprocess.Popen(
        [str(BIN / "frame-producer"), "--bind", zmq_frames, "--metrics-listen", f"127.0.0.1:{free_port()}",
         "--stream", "cam0", "--size", a.size, "--fps", str(a.fps), "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    detector = Detector(zmq_dets, "cam0", size, a.rate)
    detector.start()
    port = free_port()
    gateway = subprocess.Popen(
        pinned(0, [str(BIN / "stream-gateway"), "--producer", zmq_frames, "--producer", zmq_dets,
                   "--listen", f"127.0.0.1:{port}", "--threads", "1", "--max-clients", "100000",
                   "--log-level", "warn"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_port(port)
        time.sleep(1.5)
        for r in range(a.rounds):
            for mode in ("off", "on"):
                (detector.on.set if mode == "on" else detector.on.clear)()
                time.sleep(1.0)
                res = load(port, gateway.pid, a)
                res.update(mode=mode, round=r)
                rows.append(res)
                print(f"round {r} {mode:3} cpu={res['server_cpu_percent']:5.1f}% "
                      f"{res['server_cpu_us_per_frame']:6.2f} us/frame frames={res['frames']} "
                      f"detections={res['detections']} fps p50={res['fps_p50']:.2f} min={res['fps_min']:.2f} "
                      f"errors={res['parse_errors']}", flush=True)
    finally:
        detector.done.set()
        stop(gateway)
        stop(producer)
    write(a, rows)
    bad = [r for r in rows if r["parse_errors"] or r["connected"] != r["clients"]
           or (r["mode"] == "on") != (r["detections"] > 0)]
    if bad:
        print(f"FAILED: errors, pages without frames, or detections where none flowed in {len(bad)} rounds",
              file=sys.stderr)
        return 1
    return 0


def write(a, rows):
    med = lambda mode, key: statistics.median(r[key] for r in rows if r["mode"] == mode)
    lines = [
        BEGIN,
        "## Detections overlay: gateway CPU per delivered frame, detections flowing vs. not",
        "",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores: "
        f"{a.pages} pages (one WebSocket each, asking for detections) watching one {a.size} camera at {a.fps:g} fps; "
        f"a stand-in detector publishing {a.rate:g} detections messages a second (3 boxes) or nothing; "
        f"{a.rounds} rounds of each, alternating, {a.duration:g} s each, on one gateway (one serving thread "
        "on core 0, mjpeg-load on core 1). µs/frame is the gateway's CPU time over frames delivered.",
        "",
        "| round | detections | gateway CPU % | µs CPU / frame | frames delivered | detections delivered | fps p50 | fps min | latency p50 ms | p99 ms | RSS MB | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['round']} | {r['mode']} | {r['server_cpu_percent']:.1f} | {r['server_cpu_us_per_frame']:.2f} | "
            f"{r['frames']} | {r['detections']} | {r['fps_p50']:.2f} | {r['fps_min']:.2f} | "
            f"{r['latency_ms_p50']:.1f} | {r['latency_ms_p99']:.1f} | {r['server_rss_mb']:.1f} | {r['parse_errors']} |")
    off, on = med("off", "server_cpu_us_per_frame"), med("on", "server_cpu_us_per_frame")
    spread = [r["server_cpu_us_per_frame"] for r in rows if r["mode"] == "off"]
    lines += [
        "",
        f"Median µs CPU per delivered frame: off {off:.2f}, on {on:.2f} (on/off {on / off:.3f}×; "
        f"the off rounds alone range {min(spread):.2f}–{max(spread):.2f}).",
        "Each page's detections are written in front of its next frame, in the same `write()` "
        "(docs/websocket.md), so detections add bytes, not writes, per page.",
        END,
    ]
    replace_section(a.out, BEGIN, END, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
