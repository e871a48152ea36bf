#!/usr/bin/env python3
"""The detection benchmark: what the object detector costs and how late its
news is.

1. The model alone (`bench_inference`, the detector's own modules): decode
   and prepare, inference, threshold + NMS, per frame, p50/p99, on one and
   two threads, on darknet's person.jpg (640x424).
2. The service live: a producer (person.jpg at 15 fps; then a 1280x720 test
   pattern at 30 fps, whose frames are DCT-decoded at 1/2), the detector at
   --detect-fps 5 on one inference thread, and a ZeroMQ subscriber here that
   reads every detections message: the detector's CPU (% of one core, from
   /proc), the rate it analyses at, and the delay from each frame's capture
   to its detections message arriving here.

    scripts/bench.sh --detect             # release build, 30 s per live run
    scripts/bench.sh --detect --duration 10

Writes its tables between the `detect` markers of bench/report.md
(`--smoke`: a few seconds with the debug build, into bench/tmp/).
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from benchkit import report, wire
from benchkit.procs import BIN, ROOT, cpu_seconds, endpoint, free_port, rss_kib, start, start_producer, stop, wait_port

BEGIN, END = "<!-- detect: scripts/bench.sh --detect -->", "<!-- /detect -->"
PICTURES = pathlib.Path("/usr/share/darknet/data")
MODELS = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "mjpeg-fanout" / "models"
MODEL = MODELS / "ssdlite-mobilenet-v2-person.onnx"


def microbench(runs):
    rows = []
    exe = BIN / "examples" / "bench_inference"
    if not exe.exists():
        print(f"{exe} not built: skipping the model-alone timings", flush=True)
        return rows
    for threads in (1, 2):
        out = subprocess.run([str(exe), "--model", str(MODEL), "--threads", str(threads), "--runs", str(runs),
                              str(PICTURES / "person.jpg")], capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"bench_inference failed: {out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"threads={threads} prepare p50={r['prepare_ms_p50']:.2f} ms inference p50={r['inference_ms_p50']:.2f} "
              f"p99={r['inference_ms_p99']:.2f} ms nms p50={r['postprocess_ms_p50']:.3f} ms people={r['people']}",
              flush=True)
        rows.append(r)
    return rows


def live(name, producer_args, a):
    import zmq  # pyzmq (scripts/setup.sh installs it)
    producer, zmq_p = start_producer(producer_args)
    zmq_d, metrics_d = endpoint(), free_port()
    detector = start("object-detector", ["--producer", zmq_p, "--bind", zmq_d, "--metrics-listen",
                                         f"127.0.0.1:{metrics_d}", "--model", MODEL, "--detect-fps", a.detect_fps,
                                         "--log-level", "warn"], stderr=subprocess.PIPE)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        wait_port(metrics_d)
        sub.connect(zmq_d)
        sub.setsockopt(zmq.SUBSCRIBE, wire.subscription(wire.DETECTIONS))
        sub.setsockopt(zmq.RCVTIMEO, 5000)
        first = time.time() + 10
        while True:  # the first detections message: everything is connected
            try:
                sub.recv_multipart()
                break
            except zmq.Again:
                if time.time() > first:
                    raise RuntimeError(f"no detections message within 10 s: {detector.stderr.read1()[-2000:]}")
        warm_end = time.time() + a.warmup
        while time.time() < warm_end:
            sub.recv_multipart()
        t0, c0 = time.time(), cpu_seconds(detector.pid)
        delays, seqs = [], []
        while time.time() - t0 < a.duration:
            parts = sub.recv_multipart()
            now = time.time_ns()
            _kind, head, _payload = wire.decode_message(parts)
            delays.append((now - head.capture_ts_ns) / 1e6)
            seqs.append(head.seq)
        elapsed, c1 = time.time() - t0, cpu_seconds(detector.pid)
        rss_mb = rss_kib(detector.pid) / 1024
    finally:
        sub.close(linger=0)
        ctx.term()
        stop(detector)
        stop(producer)
    r = {"input": name, "messages_per_s": len(delays) / elapsed,
         "cpu_percent": (c1 - c0) / elapsed * 100,
         "delay_ms_p50": report.pct(delays, 50), "delay_ms_p99": report.pct(delays, 99), "delay_ms_max": max(delays),
         "rss_mb": rss_mb, "in_order": all(b > a_ for a_, b in zip(seqs, seqs[1:]))}
    print(f"{name:34} {r['messages_per_s']:.2f} msg/s cpu={r['cpu_percent']:.1f}% delay p50={r['delay_ms_p50']:.1f} "
          f"p99={r['delay_ms_p99']:.1f} max={r['delay_ms_max']:.1f} ms", flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--detect-fps", type=float, default=5.0)
    ap.add_argument("--smoke", action="store_true", help="a few seconds with the debug build, into bench/tmp/")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.smoke:
        a.duration, a.warmup, a.runs = 3.0, 1.0, 20
    out = pathlib.Path(a.out or ROOT / "bench" / ("tmp/detect.md" if a.smoke else "report.md"))
    if not MODEL.exists():
        sys.exit(f"{MODEL} is missing: run scripts/model.sh")
    a.load = os.getloadavg()[0]
    micro = microbench(a.runs)
    pictures = pathlib.Path(tempfile.mkdtemp(prefix="bench-detect-"))
    try:
        shutil.copy(PICTURES / "person.jpg", pictures / "person.jpg")
        rows = [live("person.jpg 640x424, 15 fps", ["--source", str(pictures), "--fps", "15"], a),
                live("test pattern 1280x720, 30 fps", ["--size", "1280x720", "--fps", "30"], a)]
    finally:
        shutil.rmtree(pictures, ignore_errors=True)
    write(out, micro, rows, a)
    bad = [r for r in rows if not r["in_order"] or r["messages_per_s"] > a.detect_fps * 1.1]
    return 1 if bad else 0


def write(path, micro, rows, a):
    lines = ["## Detection: the object detector's cost and delay", "",
             f"{report.stamp()} (`scripts/bench.sh --detect`), SSDLite-MobileNetV2 (person) in ONNX Runtime 1.32 "
             f"through `ort`, {'debug' if a.smoke else 'release'} build; load average {a.load:.1f} at the start "
             "(other work shares these cores: compare within a run).", ""]
    if micro:
        lines += ["Per frame, darknet's person.jpg (640x424, DCT-decoded at 3/4 to 480x318), "
                  f"{micro[0]['runs']} runs (`bench_inference`):", "",
                  *report.table(["inference threads", "decode + prepare p50 / p99 ms", "inference p50 / p99 ms",
                                 "threshold + NMS p50 ms", "model load ms"],
                                [[r["threads"], f"{r['prepare_ms_p50']:.2f} / {r['prepare_ms_p99']:.2f}",
                                  f"{r['inference_ms_p50']:.2f} / {r['inference_ms_p99']:.2f}",
                                  r["postprocess_ms_p50"], r["load_ms"]] for r in micro],
                                ["", "", "", ".3f", ".0f"]),
                  ""]
    lines += [f"The service live, `--detect-fps {a.detect_fps:g}` (one inference thread), {a.duration:g} s after "
              f"{a.warmup:g} s of warm-up; CPU is the detector process's, in % of one core; delay is from the "
              "frame's capture (its header's timestamp) to its detections message arriving at a subscriber:", "",
              *report.table(["input", "detections msg/s", "detector CPU %", "delay p50 ms", "delay p99 ms", "max ms",
                             "detector RSS MB"],
                            [[r["input"], r["messages_per_s"], r["cpu_percent"], r["delay_ms_p50"],
                              r["delay_ms_p99"], r["delay_ms_max"], r["rss_mb"]] for r in rows],
                            ["", ".2f", ".1f", ".1f", ".1f", ".1f", ".0f"])]
    report.write_section(path, BEGIN, END, lines)
    print(f"table: {path}")


if __name__ == "__main__":
    sys.exit(main())
