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
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

from bench import BIN, free_port, pinned, replace_section, stop, wait_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- wall: scripts/bench.sh --wall -->", "<!-- /wall -->"


def load(port, pid, a, ws):
    args = [str(BIN / "mjpeg-load"), "--addr", f"127.0.0.1:{port}", "--pid", str(pid),
            "--duration", str(a.duration), "--warmup", str(a.warmup)]
    names = [f"cam{i}" for i in range(a.cameras)]
    if ws:
        args += ["--clients", str(a.pages), "--ws", ",".join(names)]
    else:
        args += ["--clients", str(a.pages * a.cameras), "--path", ",".join(f"/stream/{n}" for n in names)]
    out = subprocess.run(pinned(1, args), capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"mjpeg-load failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    producers, endpoints = [], []
    for i in range(a.cameras):
        zmq = f"tcp://127.0.0.1:{free_port()}"
        producers.append(subprocess.Popen(
            [str(BIN / "frame-producer"), "--bind", zmq, "--metrics-listen", f"127.0.0.1:{free_port()}",
             "--stream", f"cam{i}", "--size", a.size, "--fps", str(a.fps), "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        endpoints.append(zmq)
    rows = []
    try:
        for ws in (True, False):
            port = free_port()
            args = [str(BIN / "stream-gateway"), "--listen", f"127.0.0.1:{port}", "--threads", "1",
                    "--max-clients", "100000", "--log-level", "warn"]
            for e in endpoints:
                args += ["--producer", e]
            gw = subprocess.Popen(pinned(0, args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_port(port)
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
    lines = [BEGIN, "## The wall: one WebSocket per page vs. one MJPEG stream per camera", "",
             f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
             f"(`scripts/bench.sh --wall`); {a.cameras} cameras, {a.size} at {a.fps:g} fps; {a.pages} viewers; "
             f"{a.duration:g} s; gateway with one serving thread on core 0, load on core 1. "
             "fps: per viewer and camera.", "",
             "| transport | connections | gateway CPU % | µs / delivered frame | ratio | fps p50 | fps min | p99 ms | RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['transport']} | {r['connections']} | {r['server_cpu_percent']:.1f} | "
                     f"{r['server_cpu_us_per_frame']:.2f} | {r['server_cpu_us_per_frame'] / base:.2f}× | "
                     f"{r['fps_p50']:.2f} | {r['fps_min']:.2f} | {r['latency_ms_p99']:.1f} | {r['server_rss_mb']:.1f} |")
    lines.append(END)
    replace_section(path, BEGIN, END, "\n".join(lines))
    print(f"table: {path}")


if __name__ == "__main__":
    sys.exit(main())
