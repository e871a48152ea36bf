#!/usr/bin/env python3
"""Before/after: this tree's stream-gateway against one built from another
commit, side by side in one run, so a refactor can show it costs nothing.

Both gateways read the same producers (each build's own frame-producer and
mjpeg-load would differ too, so only the gateway is swapped: the producer and
the load generator come from this tree). Each point is measured in turns
(before, after, before, after ...) on one serving thread pinned to core 0,
mjpeg-load on core 1, and the median of the turns is reported:

- fan-out: N MJPEG viewers of one 640x480 stream (the default mode's shape);
- wall: P pages over one WebSocket each, watching 16 cameras.

    git worktree add --detach /tmp/base OLD && \
      (cd /tmp/base && cargo build --release -p stream-gateway)
    scripts/bench.sh --ab /tmp/base/target/release [--clients 1,100,1000] [--pages 50]

Writes its table between the `ab` markers of bench/report.md.
"""
import argparse
import pathlib
import statistics
import subprocess
import sys
import time

from benchkit import report
from benchkit.procs import BIN, ROOT, mjpeg_load, run_load, start_gateway, start_producer, stop

BEGIN, END = "<!-- ab: scripts/bench.sh --ab -->", "<!-- /ab -->"


def gateway(exe, endpoints):
    p, port = start_gateway(endpoints, ["--threads", "1", "--max-clients", "100000"], cpus=0, exe=exe)
    time.sleep(1.5)  # every stream's first frame reaches the latest-frame slot
    return p, port


def measure(exe, endpoints, load):
    p, port = gateway(exe, endpoints)
    try:
        return load(port, p.pid)
    finally:
        stop(p)


def version(exe):
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        out = ""
    return out or exe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before", help="a directory holding the stream-gateway to compare against")
    ap.add_argument("--clients", default="1,100,1000")
    ap.add_argument("--pages", type=int, default=50)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "report.md"))
    a = ap.parse_args()
    builds = {"before": f"{a.before.rstrip('/')}/stream-gateway", "after": str(BIN / "stream-gateway")}
    rows = []

    def point(label, endpoints, load):
        got = {b: [] for b in builds}
        for _ in range(a.turns):
            for b, exe in builds.items():
                r = measure(exe, endpoints, load)
                if r["parse_errors"] or r["connected"] != r["clients"]:
                    raise SystemExit(f"{label} {b}: parse errors or clients without frames: {r}")
                got[b].append(r)
        row = {"point": label}
        for b, rs in got.items():
            for key in ("server_cpu_us_per_frame", "fps_p50", "latency_ms_p99", "server_rss_mb"):
                row[f"{b}_{key}"] = statistics.median(r[key] for r in rs)
        row["ratio"] = row["after_server_cpu_us_per_frame"] / max(1e-9, row["before_server_cpu_us_per_frame"])
        print(f"{label:28} before {row['before_server_cpu_us_per_frame']:7.2f} us/frame "
              f"after {row['after_server_cpu_us_per_frame']:7.2f} us/frame  ratio {row['ratio']:.2f}", flush=True)
        rows.append(row)

    producer, zmq = start_producer(["--size", "640x480", "--fps", "30"])
    try:
        for n in [int(x) for x in a.clients.split(",")]:
            point(f"fan-out 640x480 30 fps, {n} viewers", [zmq],
                  lambda port, pid, n=n: run_load(port, n, pid, a.duration, a.warmup))
    finally:
        stop(producer)

    started = [start_producer(["--stream", f"cam{i}", "--size", "320x240", "--fps", "10"]) for i in range(16)]
    try:
        names = ",".join(f"cam{i}" for i in range(16))
        point(f"wall 16 x 320x240 10 fps, {a.pages} pages", [e for _, e in started],
              lambda port, pid: mjpeg_load(["--addr", f"127.0.0.1:{port}", "--pid", pid, "--clients", a.pages,
                                            "--ws", names, "--duration", a.duration, "--warmup", a.warmup],
                                           cpus=1))
    finally:
        for p, _ in started:
            stop(p)

    cells = [[r["point"], r["before_server_cpu_us_per_frame"], r["after_server_cpu_us_per_frame"],
              f"{r['ratio']:.2f}×", r["before_fps_p50"], r["after_fps_p50"], r["before_latency_ms_p99"],
              r["after_latency_ms_p99"], r["before_server_rss_mb"], r["after_server_rss_mb"]] for r in rows]
    report.write_section(pathlib.Path(a.out), BEGIN, END, [
        "## Before/after: the gateway against an earlier build (`scripts/bench.sh --ab DIR`)",
        "",
        f"{report.stamp()}; before = `{version(builds['before'])}` from `{a.before}`, after = this tree; "
        f"median of {a.turns} alternating turns of {a.duration:g} s; one serving thread on core 0, "
        "mjpeg-load on core 1, the same producers for both.",
        "",
        *report.table(["point", "before µs/frame", "after µs/frame", "after/before", "fps before", "fps after",
                       "p99 ms before", "p99 ms after", "RSS MB before", "RSS MB after"], cells,
                      ["", ".2f", ".2f", "", ".2f", ".2f", ".1f", ".1f", ".1f", ".1f"]),
    ])
    print(f"report: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
