#!/usr/bin/env python3
"""Multi-core fan-out benchmark: one gateway with K serving threads beside K
independent single-thread floor servers (the perfect-sharding reference),
same frames, same clients, one run.

Cores 0..K-1 serve (the gateway's K threads, or one floor per core), the next
L cores run L load generators with the clients split evenly, producers get
what is left. Streams: with --streams 1 every client watches cam0; with S > 1
there are S producers and the clients of stream i go to /stream/cami (the
floors: floor i serves producer i, a perfect shard per stream).

    scripts/bench.sh --multicore --threads 7 --clients 18000           # one stream
    scripts/bench.sh --multicore --threads 7 --streams 7 --clients 17500
    scripts/bench.sh --multicore --smoke                                # tiny, for CI

Prints one line per run and writes the table between the `multicore` markers
of bench/report.md (or bench/tmp/multicore.md for --smoke).
"""
import argparse
import pathlib
import resource
import sys
import time

from benchkit import report
from benchkit.procs import (CORES, ROOT, cores, endpoint, load_report, server_port, start, start_gateway,
                            start_load, start_producer, stop, wait_port)

BEGIN, END = "<!-- multicore:begin -->", "<!-- multicore:end -->"


def start_producers(n, size, fps, cpus):
    started = [start_producer(["--stream", f"cam{i}", "--size", size, "--fps", fps], bind=endpoint(server_port()),
                              cpus=cpus) for i in range(n)]
    return [p for p, _ in started], [e for _, e in started]


def start_servers(kind, k, endpoints):
    """Returns (processes, per-stream list of addresses)."""
    if kind == "gateway":
        p, port = start_gateway(endpoints, ["--threads", k, "--max-clients", "1000000"], port=server_port(),
                                cpus=cores(0, k))
        return [p], [[f"127.0.0.1:{port}"]] * len(endpoints)
    procs, addrs = [], [[] for _ in endpoints]
    for i in range(k):
        port = server_port()
        stream = i % len(endpoints) if len(endpoints) > 1 else 0
        procs.append(start("floor-server", ["--producer", endpoints[stream], "--listen", f"127.0.0.1:{port}"],
                           cpus=i % CORES))
        wait_port(port)
        addrs[stream].append(f"127.0.0.1:{port}")
    return procs, addrs


def run(kind, a, endpoints):
    servers, addrs = start_servers(kind, a.threads, endpoints)
    time.sleep(1.5)  # first frames reach every latest-frame slot
    pids = [str(p.pid) for p in servers]
    loaders = []
    try:
        per = a.clients // a.loaders
        for j in range(a.loaders):
            stream = j % len(endpoints)
            path = "/video_feed" if len(endpoints) == 1 else f"/stream/cam{stream}"
            args = ["--addr", ",".join(addrs[stream]), "--path", path,
                    "--clients", per, "--duration", a.duration, "--warmup", a.warmup]
            for pid in pids:
                args += ["--pid", pid]
            loaders.append(start_load(args, cpus=(a.threads + j) % CORES))
        reports = [load_report(p) for p in loaders]
    finally:
        for p in loaders:
            if p.poll() is None:
                p.kill()
        for p in servers:
            stop(p)
    return aggregate(kind, a, reports)


def aggregate(kind, a, reports):
    """One row from the load generators' reports: they measured the same
    servers over (almost) the same window, so server CPU is averaged across
    them and delivered frames are summed."""
    n = len(reports)
    server_cpu_s = sum(sum(r["pids_cpu_s"]) for r in reports) / n
    seconds = sum(r["seconds"] for r in reports) / n
    frames_per_s = sum(r["frames"] / max(r["seconds"], 1e-9) for r in reports)
    p50s = sorted(r["fps_p50"] for r in reports)
    return {
        "kind": kind,
        "threads": a.threads,
        "streams": a.streams,
        "clients": sum(r["clients"] for r in reports),
        "unanswered": sum(r["clients"] - r["connected"] for r in reports),
        "cpu_percent": server_cpu_s / max(seconds, 1e-9) * 100.0,
        "us_per_frame": server_cpu_s / max(seconds, 1e-9) / max(frames_per_s, 1e-9) * 1e6,
        "fps_min": min(r["fps_min"] for r in reports),
        "fps_p50": p50s[len(p50s) // 2],
        "latency_ms_p99": max(r["latency_ms_p99"] for r in reports),
        "parse_errors": sum(r["parse_errors"] for r in reports),
        "rss_mb": max(r["server_rss_mb"] for r in reports),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--threads", type=int, default=max(1, (CORES - 2) // 2), help="K: gateway threads = floor servers")
    ap.add_argument("--loaders", type=int, default=0, help="load generator processes (default K)")
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--clients", default="3000", help="total clients, comma list")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "report.md"))
    a = ap.parse_args()
    if a.smoke:
        a.threads, a.loaders, a.clients, a.size, a.duration, a.warmup = 1, 1, "4", "320x240", 2.0, 0.5
        a.out = str(ROOT / "bench" / "tmp" / "multicore.md")
    a.loaders = a.loaders or a.threads
    if a.streams > 1:
        a.loaders = max(a.loaders, a.streams)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    print(f"{CORES} cores; open files limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}", flush=True)
    producer_cpus = cores(a.threads + a.loaders, CORES - a.threads - a.loaders) if CORES > a.threads + a.loaders else cores(0, CORES)
    producers, endpoints = start_producers(a.streams, a.size, a.fps, producer_cpus)
    rows = []
    try:
        time.sleep(1.0)
        for total in [int(x) for x in a.clients.split(",")]:
            a.clients = total
            for kind in ("floor", "gateway"):
                r = run(kind, a, endpoints)
                rows.append(r)
                print(f"K={a.threads} streams={a.streams} N={r['clients']:6} {kind:8} cpu={r['cpu_percent']:6.1f}% "
                      f"{r['us_per_frame']:6.2f} us/frame fps p50={r['fps_p50']:.2f} min={r['fps_min']:.2f} "
                      f"p99={r['latency_ms_p99']:.1f} ms unanswered={r['unanswered']} errors={r['parse_errors']}",
                      flush=True)
    finally:
        for p in producers:
            stop(p)
    write(pathlib.Path(a.out), rows, a)
    bad = [r for r in rows if r["parse_errors"]]
    if bad:
        print(f"FAILED: parse errors in {len(bad)} runs", file=sys.stderr)
        return 1
    return 0


def write(path, rows, a):
    floors = {(r["clients"], r["streams"]): r for r in rows if r["kind"] == "floor"}
    cells = []
    for r in rows:
        floor = floors.get((r["clients"], r["streams"]))
        ratio = (r["us_per_frame"] / floor["us_per_frame"]
                 if r["kind"] == "gateway" and floor and floor["us_per_frame"] else None)
        cells.append([r["threads"], r["streams"], r["clients"], r["kind"], r["cpu_percent"], r["us_per_frame"],
                      f"{ratio:.2f}×" if ratio else "", r["fps_p50"], r["fps_min"], r["latency_ms_p99"],
                      r["unanswered"], r["rss_mb"]])
    report.write_section(path, BEGIN, END, [
        "## Multi-core: one gateway with K threads vs. K single-thread floors",
        "",
        f"{report.stamp()} (`scripts/bench.sh --multicore`); {a.size} test pattern at {a.fps:g} fps; "
        f"{a.duration:g} s per point; servers on cores 0..{a.threads - 1}, {a.loaders} load generators on the "
        "next cores. CPU: the server processes' run time (all floors summed) per delivered frame. "
        "Unanswered: clients that never got a response head.",
        "",
        *report.table(["K", "streams", "viewers", "server", "CPU %", "µs / frame", "ratio", "fps p50", "fps min",
                       "p99 ms", "unanswered", "RSS MB"], cells,
                      ["", "", "", "", ".0f", ".2f", "", ".2f", ".2f", ".1f", "", ".1f"]),
    ])
    print(f"table: {path}")


if __name__ == "__main__":
    sys.exit(main())
