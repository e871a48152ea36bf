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
import datetime
import json
import os
import pathlib
import random
import resource
import socket
import subprocess
import sys
import time

from bench import replace_section, stop, wait_port  # the single-core benchmark's helpers

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(os.environ.get("BENCH_BIN_DIR", ROOT / "target" / "release"))
CORES = os.cpu_count() or 1
BEGIN, END = "<!-- multicore:begin -->", "<!-- multicore:end -->"


def server_port():
    """A free port below the ephemeral range, so clients never collide with it."""
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def cores(first, count):
    count = max(1, count)
    return ",".join(str((first + i) % CORES) for i in range(count))


def pinned(cpus, args):
    return (["taskset", "-c", cpus] if CORES > 1 else []) + args


def start_producers(n, size, fps, cpus):
    procs, endpoints = [], []
    for i in range(n):
        zmq = f"tcp://127.0.0.1:{server_port()}"
        procs.append(subprocess.Popen(
            pinned(cpus, [str(BIN / "frame-producer"), "--bind", zmq,
                          "--metrics-listen", f"127.0.0.1:{server_port()}",
                          "--stream", f"cam{i}", "--size", size, "--fps", str(fps), "--log-level", "warn"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        endpoints.append(zmq)
    return procs, endpoints


def start_servers(kind, k, endpoints):
    """Returns (processes, per-stream list of addresses)."""
    if kind == "gateway":
        port = server_port()
        args = [str(BIN / "stream-gateway"), "--listen", f"127.0.0.1:{port}", "--threads", str(k),
                "--max-clients", "1000000", "--log-level", "warn"]
        for e in endpoints:
            args += ["--producer", e]
        p = subprocess.Popen(pinned(cores(0, k), args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        return [p], [[f"127.0.0.1:{port}"]] * len(endpoints)
    procs, addrs = [], [[] for _ in endpoints]
    for i in range(k):
        port = server_port()
        stream = i % len(endpoints) if len(endpoints) > 1 else 0
        endpoint = endpoints[stream]
        procs.append(subprocess.Popen(
            pinned(str(i % CORES), [str(BIN / "floor-server"), "--producer", endpoint,
                                    "--listen", f"127.0.0.1:{port}"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
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
            args = [str(BIN / "mjpeg-load"), "--addr", ",".join(addrs[stream]), "--path", path,
                    "--clients", str(per), "--duration", str(a.duration), "--warmup", str(a.warmup)]
            for pid in pids:
                args += ["--pid", pid]
            loaders.append(subprocess.Popen(pinned(str((a.threads + j) % CORES), args),
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        reports = []
        for p in loaders:
            out, err = p.communicate(timeout=900)
            if p.returncode != 0:
                raise RuntimeError(f"mjpeg-load failed: {err[-2000:]}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
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
    lines = [
        BEGIN,
        "## Multi-core: one gateway with K threads vs. K single-thread floors",
        "",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {CORES} cores "
        f"(`scripts/bench.sh --multicore`); {a.size} test pattern at {a.fps:g} fps; {a.duration:g} s per point; "
        f"servers on cores 0..{a.threads - 1}, {a.loaders} load generators on the next cores. "
        "CPU: the server processes' run time (all floors summed) per delivered frame. "
        "Unanswered: clients that never got a response head.",
        "",
        "| K | streams | viewers | server | CPU % | µs / frame | ratio | fps p50 | fps min | p99 ms | unanswered | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        floor = floors.get((r["clients"], r["streams"]))
        ratio = (r["us_per_frame"] / floor["us_per_frame"]
                 if r["kind"] == "gateway" and floor and floor["us_per_frame"] else None)
        lines.append(
            f"| {r['threads']} | {r['streams']} | {r['clients']} | {r['kind']} | {r['cpu_percent']:.0f} | "
            f"{r['us_per_frame']:.2f} | {'%.2f×' % ratio if ratio else ''} | {r['fps_p50']:.2f} | {r['fps_min']:.2f} | "
            f"{r['latency_ms_p99']:.1f} | {r['unanswered']} | {r['rss_mb']:.1f} |")
    lines.append(END)
    replace_section(path, BEGIN, END, "\n".join(lines))
    print(f"table: {path}")


if __name__ == "__main__":
    sys.exit(main())
