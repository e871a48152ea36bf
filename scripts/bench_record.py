#!/usr/bin/env python3
"""The recording benchmark: what a frame-recorder costs, on disk and in CPU.

One producer of 16 test-pattern cameras at 1280x720, 15 fps; one gateway
with one MJPEG viewer per camera (mjpeg-load); first a round without a
recorder, then a frame-recorder recording every camera continuously and a
second round of the same viewers while it does. Reported: the recorder's
CPU (% of one core, from /proc/PID/stat), bytes per camera-hour (from the
bytes on disk, extrapolated), the p99 of its cluster writes (from its
recorder_write_seconds histogram), and the gateway's CPU per delivered
frame without and with the recorder, side by side.

    scripts/bench.sh --record                   # 16 cameras, 30 s each round
    python3 scripts/bench_record.py --smoke     # 2 small cameras, a few seconds (debug binaries)

Writes its table between the `record` markers of bench/report.md (the smoke
run writes bench/tmp/record.md).
"""
import argparse
import pathlib
import shutil
import sys
import tempfile
import time

from benchkit import report
from benchkit.procs import (ROOT, cpu_seconds, free_port, get, mjpeg_load, scrape, start, start_gateway,
                            start_producer, stop, wait_http, wait_until)

BEGIN, END = "<!-- record: scripts/bench.sh --record -->", "<!-- /record -->"


def load(port, pid, names, a):
    return mjpeg_load(["--addr", f"127.0.0.1:{port}", "--pid", pid, "--clients", len(names),
                       "--path", ",".join(f"/stream/{n}" for n in names),
                       "--duration", a.duration, "--warmup", a.warmup], cpus=1)


def histogram_p(samples, name, q):
    """The upper bound of the bucket holding quantile `q` of histogram `name`."""
    buckets = sorted((float(ls["le"]), v) for n, ls, v in samples
                     if n == name + "_bucket" and ls.get("le") not in (None, "+Inf"))
    total = sum(v for n, ls, v in samples if n == name + "_count")
    if not total:
        return None
    for le, v in buckets:
        if v >= q * total:
            return le
    return float("inf")


def disk_bytes(path):
    return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=16)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of each round")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--smoke", action="store_true", help="2 cameras at 320x240, 3 s rounds; bench/tmp/")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.smoke:
        a.cameras, a.size, a.duration, a.warmup = 2, "320x240", 3.0, 1.0
    out = a.out or str(ROOT / "bench" / ("tmp/record.md" if a.smoke else "report.md"))
    names = [f"cam{i}" for i in range(a.cameras)]
    cams = [x for n in names for x in ("--camera", f"name={n},source=test-pattern,size={a.size},fps={a.fps:g}")]
    rec_dir = tempfile.mkdtemp(prefix="bench-record-")
    producer, bus = start_producer(cams)
    gateway, port = start_gateway([bus], cpus=0)
    recorder, rows = None, {}
    try:
        wait_until("the gateway to list every camera",
                   lambda: all(n.encode() in get(port, "/api/streams")
                               for n in names))
        rows["without"] = load(port, gateway.pid, names, a)
        rec_port = free_port()
        recorder = start("frame-recorder", ["--producer", bus, "--dir", rec_dir, "--listen",
                                            f"127.0.0.1:{rec_port}", "--log-level", "warn"])
        wait_http(rec_port, "/metrics")
        wait_until("the recorder to write every camera", lambda: all(
            v > 0 for v in (sum(x for m, ls, x in scrape(rec_port)
                                if m == "recorder_frames_written_total" and ls.get("stream") == n)
                            for n in names)), timeout=60)
        bytes0, cpu0, t0 = disk_bytes(rec_dir), cpu_seconds(recorder.pid), time.monotonic()
        rows["with"] = load(port, gateway.pid, names, a)
        cpu1, t1 = cpu_seconds(recorder.pid), time.monotonic()
        samples = scrape(rec_port)
        bytes1 = disk_bytes(rec_dir)
    finally:
        if recorder:
            stop(recorder)
        stop(gateway)
        stop(producer)
        shutil.rmtree(rec_dir, ignore_errors=True)
    secs = t1 - t0
    rec = {
        "cpu_percent": 100.0 * (cpu1 - cpu0) / secs,
        "bytes_per_camera_hour": (bytes1 - bytes0) / a.cameras / secs * 3600,
        "write_p99_ms": (lambda v: None if v is None else v * 1e3)(
            histogram_p(samples, "recorder_write_seconds", 0.99)),
        "frames": sum(v for n, _, v in samples if n == "recorder_frames_written_total"),
        "dropped": sum(v for n, _, v in samples if n == "recorder_dropped_frames_total"),
    }
    for mode, r in rows.items():
        print(f"{mode:7} gateway {r['server_cpu_percent']:5.1f}% {r['server_cpu_us_per_frame']:7.2f} us/frame "
              f"frames={r['frames']} fps p50={r['fps_p50']:.2f} latency p50={r['latency_ms_p50']:.1f} ms "
              f"errors={r['parse_errors']}", flush=True)
    print(f"recorder {rec['cpu_percent']:.1f}% of a core, {rec['bytes_per_camera_hour'] / 1e9:.2f} GB/camera-hour, "
          f"write p99 {rec['write_p99_ms']} ms, {rec['frames']:.0f} frames written, {rec['dropped']:.0f} dropped",
          flush=True)
    write(a, out, rows, rec)
    bad = [m for m, r in rows.items() if r["parse_errors"] or r["connected"] != r["clients"]]
    if bad or rec["frames"] <= 0:
        print(f"FAILED: viewer errors in {bad} or nothing recorded", file=sys.stderr)
        return 1
    return 0


def write(a, out, rows, rec):
    per_hour = rec["bytes_per_camera_hour"]
    text = report.write_section(out, BEGIN, END, [
        "## Recording: recorder CPU, disk per camera, gateway CPU with and without a recorder",
        "",
        f"{report.stamp()}: one producer of {a.cameras} test-pattern cameras at {a.size}, {a.fps:g} fps; one "
        f"gateway (core 0) with one MJPEG viewer per camera (mjpeg-load, core 1), {a.duration:g} s without a "
        "frame-recorder, then the same with one recording every camera continuously (default flags). "
        "µs/frame is the gateway's CPU time over frames delivered.",
        "",
        *report.table(
            ["recorder", "gateway CPU %", "µs CPU / frame", "frames delivered", "fps p50", "latency p50 ms",
             "p99 ms", "errors"],
            [[m, r["server_cpu_percent"], r["server_cpu_us_per_frame"], r["frames"], r["fps_p50"],
              r["latency_ms_p50"], r["latency_ms_p99"], r["parse_errors"]] for m, r in rows.items()],
            ["", ".1f", ".2f", "", ".2f", ".1f", ".1f"]),
        "",
        *report.table(
            ["recorder CPU % of a core", "GB / camera-hour", "GB / camera-day", "GB / camera-week",
             "write p99 ms (bucket bound)", "frames written", "dropped"],
            [[rec["cpu_percent"], per_hour / 1e9, per_hour * 24 / 1e9, per_hour * 24 * 7 / 1e9,
              rec["write_p99_ms"], int(rec["frames"]), int(rec["dropped"])]],
            [".1f", ".2f", ".1f", ".1f", ".1f"]),
        "",
        "Bytes per camera-hour are the bytes the recording directory grew by during the second round, "
        "divided by cameras and extrapolated; the recorder stores the bus's JPEGs as they are, so it "
        "scales with the camera's JPEG size and rate (`--record-fps` divides it by the rate kept).",
    ])
    print(text)


if __name__ == "__main__":
    sys.exit(main())
