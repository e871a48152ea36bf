#!/usr/bin/env python3
"""Fan-out benchmark: stream-gateway beside a raw-socket floor server.

For each frame size and client count N it runs the real frame-producer, then
the gateway and the floor server in turn (each pinned to core 0) under the
same mjpeg-load (pinned to core 1), and records CPU per delivered frame,
RSS, per-client fps and capture-to-receive latency. Writes a markdown report
and an SVG plot. The gateway/floor ratio, measured side by side in one run,
is the figure that matters on a shared, noisy machine.

    scripts/bench.sh              # full run, writes bench/report.md and bench/plot.svg
    scripts/bench.sh --smoke      # tiny run for CI, writes bench/tmp/
"""
import argparse
import json
import math
import pathlib
import sys
import time

from benchkit import report
from benchkit.procs import ROOT, cpu_seconds, free_port, run_load, start, start_gateway, start_producer, stop, wait_port


def serve(kind, zmq, port):
    """The gateway or the floor server on core 0, with its first frames."""
    if kind == "gateway":
        p, _ = start_gateway([zmq], ["--threads", "1", "--max-clients", "100000"], port=port, cpus=0)
    else:
        p = start("floor-server", ["--producer", zmq, "--listen", f"127.0.0.1:{port}"], cpus=0)
        wait_port(port)
    time.sleep(1.0)  # first frames reach the server's latest-frame slot
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny N and a few seconds, for CI")
    ap.add_argument("--clients", default="1,10,100,1000,3000")
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--out", default=str(ROOT / "bench"))
    a = ap.parse_args()
    if a.smoke:
        a.clients, a.sizes, a.duration, a.out = "1,5", "320x240", 2.0, str(ROOT / "bench" / "tmp")
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    clients = [int(x) for x in a.clients.split(",")]
    rows, producer_cpu = [], {}
    for size in a.sizes.split(","):
        producer, zmq = start_producer(["--size", size, "--fps", a.fps])
        time.sleep(1.0)
        t0, c0 = time.time(), cpu_seconds(producer.pid)
        try:
            for n in clients:
                for kind in ("floor", "gateway"):
                    port = free_port()
                    server = serve(kind, zmq, port)
                    try:
                        r = run_load(port, n, server.pid, a.duration, 2.0 if not a.smoke else 0.5)
                    finally:
                        stop(server)
                    r.update(kind=kind, size=size, n=n)
                    rows.append(r)
                    print(f"{size} N={n:5} {kind:8} cpu={r['server_cpu_percent']:5.1f}% "
                          f"{r['server_cpu_us_per_frame']:6.2f} us/frame rss={r['server_rss_mb']:5.1f} MB "
                          f"fps p50={r['fps_p50']:.2f} min={r['fps_min']:.2f} "
                          f"lat p50={r['latency_ms_p50']:.1f} p99={r['latency_ms_p99']:.1f} ms errors={r['parse_errors']}",
                          flush=True)
        finally:
            producer_cpu[size] = (cpu_seconds(producer.pid) - c0) / (time.time() - t0) * 100.0
            stop(producer)
    write_report(out, rows, producer_cpu, a)
    bad = [r for r in rows if r["parse_errors"] or r["connected"] != r["clients"]]
    if bad:
        print(f"FAILED: parse errors or clients without frames in {len(bad)} runs", file=sys.stderr)
        return 1
    print(f"report: {out / 'report.md'}")
    return 0


def write_report(out, rows, producer_cpu, a):
    by = {(r["size"], r["n"], r["kind"]): r for r in rows}
    cells = []
    for r in rows:
        floor = by.get((r["size"], r["n"], "floor"))
        ratio = (r["server_cpu_us_per_frame"] / floor["server_cpu_us_per_frame"]
                 if r["kind"] == "gateway" and floor and floor["server_cpu_us_per_frame"] else None)
        cells.append([r["size"], r["n"], r["kind"], r["server_cpu_percent"], r["server_cpu_us_per_frame"],
                      f"{ratio:.2f}×" if ratio else "", r["server_rss_mb"], r["fps_p50"], r["fps_min"],
                      r["latency_ms_p50"], r["latency_ms_p99"], r["latency_ms_max"], r["parse_errors"]])
    report.write_top(out / "report.md", [
        "# Fan-out benchmark: stream-gateway vs. raw-socket floor",
        "",
        f"{report.stamp()}; {a.fps:g} fps test pattern; {a.duration:g} s per point; "
        "server pinned to core 0, load generator to core 1.",
        "CPU is the server process's run time over the window (sum of its threads' schedstat, ns resolution); "
        "µs/frame divides it by frames delivered.",
        "",
        *report.table(["size", "clients", "server", "CPU %", "µs CPU / frame", "ratio", "RSS MB", "fps p50",
                       "fps min", "latency p50 ms", "p99 ms", "max ms", "errors"], cells,
                      ["", "", "", ".1f", ".2f", "", ".1f", ".2f", ".2f", ".1f", ".1f", ".1f"]),
        "",
        "Producer CPU (whole run, % of one core): " + ", ".join(f"{s}: {c:.1f} %" for s, c in producer_cpu.items()),
        "",
        "![plot](plot.svg)",
        "",
    ])
    (out / "results.json").write_text(json.dumps({"rows": rows, "producer_cpu_percent": producer_cpu}, indent=1))
    (out / "plot.svg").write_text(svg(rows))


def svg(rows):
    """Two panels: µs CPU per frame and p99 latency against clients (log x)."""
    W, H, M = 460, 300, 50
    colors = {("gateway", 0): "#d62728", ("floor", 0): "#1f77b4", ("gateway", 1): "#ff9896", ("floor", 1): "#aec7e8"}
    sizes = sorted({r["size"] for r in rows}, key=lambda s: int(s.split("x")[0]))
    ns = sorted({r["n"] for r in rows})
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 40}" font-family="sans-serif" font-size="11">',
             '<rect width="100%" height="100%" fill="white"/>']
    for panel, (key, title) in enumerate([("server_cpu_us_per_frame", "µs of server CPU per delivered frame"),
                                          ("latency_ms_p99", "capture-to-receive latency p99 (ms)")]):
        ox = panel * W
        ymax = max([r[key] for r in rows] + [1e-9]) * 1.1
        lx = lambda n: ox + M + (math.log10(n) - math.log10(ns[0])) / max(1e-9, math.log10(ns[-1]) - math.log10(ns[0])) * (W - 2 * M)
        ly = lambda v: H - M + 20 - v / ymax * (H - 2 * M)
        parts.append(f'<text x="{ox + W / 2}" y="16" text-anchor="middle" font-size="13">{title}</text>')
        parts.append(f'<line x1="{ox + M}" y1="{ly(0)}" x2="{ox + W - M}" y2="{ly(0)}" stroke="black"/>')
        parts.append(f'<line x1="{ox + M}" y1="{ly(0)}" x2="{ox + M}" y2="{ly(ymax)}" stroke="black"/>')
        for n in ns:
            parts.append(f'<text x="{lx(n)}" y="{ly(0) + 14}" text-anchor="middle">{n}</text>')
        for i in range(5):
            v = ymax * i / 4
            parts.append(f'<text x="{ox + M - 4}" y="{ly(v) + 4}" text-anchor="end">{v:.1f}</text>')
        parts.append(f'<text x="{ox + W / 2}" y="{ly(0) + 30}" text-anchor="middle">clients</text>')
        legend_y = 30
        for si, size in enumerate(sizes):
            for kind in ("gateway", "floor"):
                pts = sorted((r["n"], r[key]) for r in rows if r["size"] == size and r["kind"] == kind)
                if not pts:
                    continue
                c = colors[(kind, min(si, 1))]
                path = " ".join(f"{lx(n):.1f},{ly(v):.1f}" for n, v in pts)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
                for n, v in pts:
                    parts.append(f'<circle cx="{lx(n):.1f}" cy="{ly(v):.1f}" r="3" fill="{c}"/>')
                parts.append(f'<text x="{ox + W - M - 110}" y="{legend_y}" fill="{c}">{kind} {size}</text>')
                legend_y += 13
    parts.append("</svg>")
    return "\n".join(parts)

if __name__ == "__main__":
    sys.exit(main())
