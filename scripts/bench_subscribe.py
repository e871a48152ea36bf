#!/usr/bin/env python3
"""The subscribe benchmark: what subscribing on demand saves.

One frame-producer with 16 test-pattern cameras, 4 gateways, viewers on 2
cameras (each watched on 2 of the gateways, as stream-director --affinity 2
would place them: gateway i serves cam(i mod 2)). Measured in one run, with
the same producer: every gateway with `--subscribe all` (every camera at
full rate into every gateway, as before), then with `--subscribe on-demand`
(previews of all 16, full rate of the watched camera only). For each:
bytes per second into each gateway (`gateway_received_bytes_total`, by
kind), the producer's CPU and the gateways' CPU over the same window, and
the viewers' frame rate (mjpeg-load, every part checked).

    scripts/bench.sh --subscribe                 # 16 cameras, 1280x720 at 15 fps
    scripts/bench.sh --subscribe --size 640x480 --fps 10

Writes its table between the `subscribe` markers of bench/report.md.
"""
import argparse
import json
import pathlib
import sys
import time

from benchkit import report
from benchkit.procs import (ROOT, cpu_seconds, get, load_report, metric_sum, scrape, start_gateway, start_load,
                            start_producer, stop, wait_port, wait_until)

BEGIN, END = "<!-- subscribe: scripts/bench.sh --subscribe -->", "<!-- /subscribe -->"
GATEWAYS = 4


def received(port):
    """Bytes received by kind (frame, preview, ...), summed over streams."""
    samples = [s for s in scrape(port) if s[0] == "gateway_received_bytes_total"]
    return {kind: metric_sum(samples, "gateway_received_bytes_total", kind=kind)
            for kind in {labels["kind"] for _, labels, _ in samples}}


def online(port, n):
    streams = json.loads(get(port, "/api/streams"))["streams"]
    return sum(1 for s in streams if s["online"]) >= n


def run_mode(mode, endpoint, producer, a):
    started = [start_gateway([endpoint], ["--threads", "1", "--subscribe", mode], wait=False)
               for _ in range(GATEWAYS)]
    gateways, ports = [g for g, _ in started], [p for _, p in started]
    try:
        for p in ports:
            wait_port(p)
            wait_until(f"gateway on {p}: {a.cameras} streams online", lambda: online(p, a.cameras))
        # Gateway i's viewers watch cam(i mod 2): mjpeg-load's client k goes
        # to address k mod 4 and path k mod 2.
        load = start_load(["--addr", ",".join(f"127.0.0.1:{p}" for p in ports),
                           "--path", "/stream/cam0,/stream/cam1", "--clients", GATEWAYS * a.viewers,
                           "--warmup", a.warmup, "--duration", a.duration + 2])
        time.sleep(a.warmup + 1)
        pids = [producer.pid] + [g.pid for g in gateways]
        t0, cpu0, bytes0 = time.time(), [cpu_seconds(p) for p in pids], [received(p) for p in ports]
        time.sleep(a.duration)
        t1, cpu1, bytes1 = time.time(), [cpu_seconds(p) for p in pids], [received(p) for p in ports]
        viewers = load_report(load, timeout=120)
    finally:
        for g in gateways:
            stop(g)
    dt = t1 - t0
    cpu = [(c1 - c0) / dt * 100 for c0, c1 in zip(cpu0, cpu1)]
    rates = []
    for b0, b1 in zip(bytes0, bytes1):
        kinds = set(b0) | set(b1)
        rates.append({k: (b1.get(k, 0.0) - b0.get(k, 0.0)) / dt for k in kinds})
    return {
        "mode": mode,
        "gateway_bytes_per_s": rates,
        "producer_cpu_percent": cpu[0],
        "gateway_cpu_percent": cpu[1:],
        "viewer_fps_p50": viewers["fps_p50"],
        "viewer_fps_min": viewers["fps_min"],
        "parse_errors": viewers["parse_errors"],
        "seconds": dt,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=16)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--viewers", type=int, default=5, help="viewers per gateway")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "report.md"))
    a = ap.parse_args()
    args = []
    for i in range(a.cameras):
        args += ["--camera", f"name=cam{i},source=test-pattern,size={a.size},fps={a.fps:g}"]
    producer, endpoint = start_producer(args)
    rows = []
    try:
        for mode in ("all", "on-demand"):
            r = run_mode(mode, endpoint, producer, a)
            rows.append(r)
            total = sum(sum(g.values()) for g in r["gateway_bytes_per_s"])
            print(f"{mode:10} into gateways {total / 1e6:7.2f} MB/s "
                  f"(each {', '.join(f'{sum(g.values()) / 1e6:.2f}' for g in r['gateway_bytes_per_s'])}) "
                  f"producer CPU {r['producer_cpu_percent']:5.1f}% "
                  f"gateways CPU {sum(r['gateway_cpu_percent']):5.1f}% "
                  f"viewer fps p50 {r['viewer_fps_p50']:.2f} errors {r['parse_errors']}", flush=True)
    finally:
        stop(producer)
    write(pathlib.Path(a.out), rows, a)
    return 1 if any(r["parse_errors"] for r in rows) else 0


def write(path, rows, a):
    mb = lambda v: f"{v / 1e6:.2f}"
    total = lambda r: sum(sum(g.values()) for g in r["gateway_bytes_per_s"])
    cells = [[r["mode"], ", ".join(f"{mb(g.get('frame', 0))} + {mb(g.get('preview', 0))}"
                                   for g in r["gateway_bytes_per_s"]),
              mb(total(r)), r["producer_cpu_percent"], sum(r["gateway_cpu_percent"]),
              f"{r['viewer_fps_p50']:.2f} ({r['viewer_fps_min']:.2f})"] for r in rows]
    before, after = (total(r) for r in rows)
    report.write_section(path, BEGIN, END, [
        "## Subscribe on demand: what a gateway receives", "",
        f"{report.stamp()} (`scripts/bench.sh --subscribe`); one producer with {a.cameras} test-pattern cameras, "
        f"{a.size} at {a.fps:g} fps; {GATEWAYS} gateways; {a.viewers} MJPEG viewers on each, "
        f"gateway i's on cam(i mod 2) (so 2 cameras watched, each on 2 gateways); "
        f"{rows[0]['seconds']:.0f} s per mode, same producer. MB/s: 10⁶ bytes of messages "
        "(`gateway_received_bytes_total`) per second; CPU: % of one core.", "",
        *report.table(["`--subscribe`", "MB/s into each gateway (frames + previews)", "MB/s into all 4",
                       "producer CPU %", "4 gateways CPU %", "viewer fps p50 (min)"], cells,
                      ["", "", "", ".1f", ".1f"]),
        "", f"On demand, the gateways together take {after / max(before, 1e-9) * 100:.1f} % of the bytes "
        f"they took subscribed to everything, and the producer uses "
        f"{rows[1]['producer_cpu_percent']:.1f} % of a core instead of {rows[0]['producer_cpu_percent']:.1f} % "
        "(it encodes full-rate frames only of cameras someone subscribed to)."])
    print(f"table: {path}")


if __name__ == "__main__":
    sys.exit(main())
