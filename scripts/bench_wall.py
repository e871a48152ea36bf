#!/usr/bin/env python3
"""The wall benchmark: the gateway's CPU per delivered frame when viewer
pages watch 16 cameras over one WebSocket each, against the same frames as
plain MJPEG streams (one connection per camera per viewer), in one run.

16 test-pattern producers; the gateway with one serving thread pinned to
core 0; mjpeg-load on core 1 as N pages x 16 cameras over /ws, then as
16 N MJPEG clients spread over the 16 /stream/camI URLs.

    scripts/bench.sh --wall              # 100 pages vs 1600 MJPEG viewers
    scripts/bench.sh --wall --pages 20   # smaller

Writes its table between the `wall` markers of bench/report.md.
"""
import argparse
import pathlib
import sys
import time

from benchkit import report
from benchkit.procs import ROOT, mjpeg_load, start_gateway, start_producer, stop

BEGIN, END = "<!-- wall: scripts/bench.sh --wall -->", "<!-- /wall -->"


def load(port, pid, a, ws):
    args = ["--addr", f"127.0.0.1:{port}", "--pid", pid, "--duration", a.duration, "--warmup", a.warmup]
    names = [f"cam{i}" for i in range(a.cameras)]
    if ws:
        args += ["--clients", a.pages, "--ws", ",".join(names)]
    else:
        args += ["--clients", a.pages * a.cameras, "--path", ",".join(f"/stream/{n}" for n in names)]
    return mjpeg_load(args, cpus=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--cameras", type=int, default=16)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "report.md"))
    a = ap.parse_args()
    started = [start_producer(["--stream", f"cam{i}", "--size", a.size, "--fps", a.fps]) for i in range(a.cameras)]
    producers, endpoints = [p for p, _ in started], [e for _, e in started]
    rows = []
    try:
        for ws in (True, False):
            gw, port = start_gateway(endpoints, ["--threads", "1", "--max-clients", "100000"], cpus=0)
            try:
                time.sleep(2.0)  # every camera's first frame
                r = load(port, gw.pid, a, ws)
            finally:
                stop(gw)
            r["transport"] = "WebSocket (one per page)" if ws else "MJPEG (one per camera)"
            r["connections"] = a.pages if ws else a.pages * a.cameras
            rows.append(r)
            print(f"{r['transport']:26} conns={r['connections']:5} cpu={r['server_cpu_percent']:5.1f}% "
                  f"{r['server_cpu_us_per_frame']:6.2f} us/frame fps p50={r['fps_p50']:.2f} min={r['fps_min']:.2f} "
                  f"p99={r['latency_ms_p99']:.1f} ms errors={r['parse_errors']}", flush=True)
    finally:
        for p in producers:
            stop(p)
    write(pathlib.Path(a.out), rows, a)
    return 1 if any(r["parse_errors"] for r in rows) else 0


def write(path, rows, a):
    base = rows[1]["server_cpu_us_per_frame"] or 1e-9
    report.write_section(path, BEGIN, END, [
        "## The wall: one WebSocket per page vs. one MJPEG stream per camera", "",
        f"{report.stamp()} (`scripts/bench.sh --wall`); {a.cameras} cameras, {a.size} at {a.fps:g} fps; "
        f"{a.pages} viewers; {a.duration:g} s; gateway with one serving thread on core 0, load on core 1. "
        "fps: per viewer and camera.", "",
        *report.table(["transport", "connections", "gateway CPU %", "µs / delivered frame", "ratio", "fps p50",
                       "fps min", "p99 ms", "RSS MB"],
                      [[r["transport"], r["connections"], r["server_cpu_percent"], r["server_cpu_us_per_frame"],
                        f"{r['server_cpu_us_per_frame'] / base:.2f}×", r["fps_p50"], r["fps_min"],
                        r["latency_ms_p99"], r["server_rss_mb"]] for r in rows],
                      ["", "", ".1f", ".2f", "", ".2f", ".2f", ".1f", ".1f"])])
    print(f"table: {path}")


if __name__ == "__main__":
    sys.exit(main())
