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
import sys
import threading
import time

from benchkit import report, wire
from benchkit.procs import ROOT, endpoint, mjpeg_load, start_gateway, start_producer, stop, wait_port

BEGIN, END = "<!-- overlay: scripts/bench.sh --overlay -->", "<!-- /overlay -->"
BOXES = [("person", 0.91, 0.10, 0.20, 0.20, 0.60), ("person", 0.72, 0.55, 0.25, 0.15, 0.50),
         ("dog", 0.66, 0.70, 0.70, 0.20, 0.25)]


class Detector(threading.Thread):
    """A stand-in detector: a PUB socket sending `rate` detections
    messages a second for `stream` while `on` is set."""

    def __init__(self, bind, stream, size, rate):
        super().__init__(daemon=True)
        try:
            import zmq
        except ImportError:
            sys.exit("bench_overlay.py needs pyzmq: run scripts/setup.sh (installs it)")
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.bind(bind)
        self.stream, self.size, self.rate = stream, size, rate
        self.on, self.done = threading.Event(), threading.Event()
        self.sent = 0
        self.payload = wire.encode_detections("bench-overlay", BOXES)

    def run(self):
        seq, next_at = 0, time.monotonic()
        while not self.done.is_set():
            next_at += 1.0 / self.rate
            if self.on.is_set():
                seq += 1
                head = wire.Header(seq, time.time_ns(), *self.size, 0xBE7C, self.stream)
                self.sock.send_multipart(wire.message(wire.DETECTIONS, head, self.payload))
                self.sent += 1
            time.sleep(max(0.0, next_at - time.monotonic()))


def load(port, pid, a):
    return mjpeg_load(["--addr", f"127.0.0.1:{port}", "--pid", pid, "--clients", a.pages, "--ws", "cam0",
                       "--ws-detections", "--duration", a.duration, "--warmup", a.warmup], cpus=1)


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
    producer, zmq_frames = start_producer(["--stream", "cam0", "--size", a.size, "--fps", a.fps])
    zmq_dets = endpoint()
    detector = Detector(zmq_dets, "cam0", size, a.rate)
    detector.start()
    gateway, port = start_gateway([zmq_frames, zmq_dets], ["--threads", "1", "--max-clients", "100000"],
                                  cpus=0, wait=False)
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
    med = lambda mode, key: report.median(r[key] for r in rows if r["mode"] == mode)
    off, on = med("off", "server_cpu_us_per_frame"), med("on", "server_cpu_us_per_frame")
    spread = [r["server_cpu_us_per_frame"] for r in rows if r["mode"] == "off"]
    text = report.write_section(a.out, BEGIN, END, [
        "## Detections overlay: gateway CPU per delivered frame, detections flowing vs. not",
        "",
        f"{report.stamp()}: {a.pages} pages (one WebSocket each, asking for detections) watching one {a.size} "
        f"camera at {a.fps:g} fps; a stand-in detector publishing {a.rate:g} detections messages a second "
        f"(3 boxes) or nothing; {a.rounds} rounds of each, alternating, {a.duration:g} s each, on one gateway "
        "(one serving thread on core 0, mjpeg-load on core 1). µs/frame is the gateway's CPU time over frames "
        "delivered.",
        "",
        *report.table(
            ["round", "detections", "gateway CPU %", "µs CPU / frame", "frames delivered", "detections delivered",
             "fps p50", "fps min", "latency p50 ms", "p99 ms", "RSS MB", "errors"],
            [[r["round"], r["mode"], r["server_cpu_percent"], r["server_cpu_us_per_frame"], r["frames"],
              r["detections"], r["fps_p50"], r["fps_min"], r["latency_ms_p50"], r["latency_ms_p99"],
              r["server_rss_mb"], r["parse_errors"]] for r in rows],
            ["", "", ".1f", ".2f", "", "", ".2f", ".2f", ".1f", ".1f", ".1f"]),
        "",
        f"Median µs CPU per delivered frame: off {off:.2f}, on {on:.2f} (on/off {on / off:.3f}×; "
        f"the off rounds alone range {min(spread):.2f}–{max(spread):.2f}).",
        "Each page's detections are written in front of its next frame, in the same `write()` "
        "(docs/websocket.md), so detections add bytes, not writes, per page.",
    ])
    print(text)


if __name__ == "__main__":
    sys.exit(main())
