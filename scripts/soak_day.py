#!/usr/bin/env python3
"""Day-long soak of the whole system (not part of the test command).

What runs, all on loopback, release binaries:
  - frame-producer (test pattern 1280x720 @ 30 fps, bus key on), restarted
    every --producer-restart seconds (default 600);
  - stream-gateway subscribed to it and to a garbage publisher (random
    multipart messages, half of them well-formed but unsigned or forged),
    restarted every --gateway-restart seconds (default 3600);
  - --viewers MJPEG viewers (default 1000) through mjpeg-load, reconnecting
    every minute (churn), one viewer reading 1 KB/s, one that stops reading.
Every minute one CSV row: RSS, fds and threads of both services, viewer
fps (p50, min) and capture-to-receive latency p99, parse errors, invalid
messages counted. At the end: an SVG plot and a check that nothing grows,
by the least-squares slope over the last half of the run.

    scripts/soak_day.py --hours 24            # the real thing
    scripts/soak_day.py --minutes 6 --viewers 50 --producer-restart 120 --gateway-restart 240
Writes bench/soak/soak.csv, soak.svg and report.md (figures), and prints them;
--report-only CSV redoes the plot and report from a CSV.
"""
import argparse
import csv
import os
import pathlib
import random
import socket
import subprocess
import sys
import threading
import time

from benchkit import procs, report, wire
from benchkit.procs import BIN, ROOT, endpoint, free_port, mjpeg_load, proc_stats


class Service:
    def __init__(self, name, args, env, log_dir):
        self.name, self.args, self.env = name, args, env
        self.log = open(log_dir / f"{name}.log", "ab")
        self.p = None
        self.started = 0.0
        self.start()

    def start(self):
        self.p = procs.start(self.name, self.args, env=self.env, stdout=self.log, stderr=self.log,
                             stdin=subprocess.DEVNULL)
        self.started = time.monotonic()

    def restart(self):
        procs.stop(self.p, timeout=10)
        self.start()

    def stop(self):
        self.p.kill()
        self.p.wait()


def garbage_publisher(bind: str, stop: threading.Event):
    """Random multipart messages: wrong part counts, junk, and well-formed
    frames that are unsigned or signed with a key nobody holds."""
    import zmq
    s = zmq.Context.instance().socket(zmq.PUB)
    s.setsockopt(zmq.SNDHWM, 10)
    s.bind(bind)
    forger = wire.new_key()
    seq = 0
    while not stop.is_set():
        kind = random.randrange(4)
        head = wire.Header(seq, time.time_ns(), 64, 64, 1, "cam0")
        jpeg = b"\xff\xd8" + os.urandom(random.randrange(10, 5000)) + b"\xff\xd9"
        if kind == 0:
            parts = [os.urandom(random.randrange(0, 50)) for _ in range(random.randrange(1, 6))]
        elif kind == 1:
            parts = wire.message(wire.FRAME, head, jpeg)                # unsigned
        else:
            parts = wire.message(wire.FRAME, head, jpeg, forger)        # forged
        s.send_multipart(parts)
        seq += 1
        time.sleep(0.1)
    s.close(0)


def slow_viewer(addr, bps: int, stop: threading.Event, stalled: bool):
    """Reads /video_feed at `bps` bytes a second, or not at all after the head."""
    while not stop.is_set():
        try:
            with socket.create_connection(addr, timeout=60) as c:
                c.sendall(b"GET /video_feed HTTP/1.1\r\nHost: soak\r\n\r\n")
                while not stop.is_set():
                    if stalled:
                        time.sleep(1)
                        continue
                    if not c.recv(bps):
                        break
                    time.sleep(1)
        except OSError:
            time.sleep(1)


def slope(xs, ys):
    n = len(xs)
    if n < 3:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def svg_plot(rows, path: pathlib.Path):
    """A small multi-panel SVG without plotting libraries."""
    panels = [("gateway_rss_mb", "gateway RSS MB"), ("producer_rss_mb", "producer RSS MB"),
              ("gateway_fds", "gateway fds"), ("gateway_threads", "gateway threads"),
              ("fps_p50", "viewer fps p50"), ("latency_p99_ms", "latency p99 ms")]
    w, h, pad = 420, 160, 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{3 * h}" font-family="sans-serif" font-size="11">']
    t = [float(r["minute"]) for r in rows]
    for i, (key, title) in enumerate(panels):
        ox, oy = (i % 2) * w, (i // 2) * h
        ys = [float(r[key]) for r in rows if r[key] != ""]
        ts = [float(r["minute"]) for r in rows if r[key] != ""]
        out.append(f'<text x="{ox + pad}" y="{oy + 14}">{title}</text>')
        if len(ys) < 2:
            continue
        # From zero, so that noise in a flat line does not look like growth.
        lo, hi = min(0.0, min(ys)), max(ys) * 1.15
        hi = hi if hi > lo else lo + 1
        tmax = max(t) or 1
        pts = " ".join(f"{ox + pad + (x / tmax) * (w - 2 * pad):.1f},{oy + h - pad - (y - lo) / (hi - lo) * (h - 2 * pad - 10):.1f}"
                       for x, y in zip(ts, ys))
        out.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{pts}"/>')
        out.append(f'<text x="{ox + pad}" y="{oy + h - 8}">min {min(ys):.1f}, max {max(ys):.1f} (axis from 0), over {tmax:.0f} min</text>')
    out.append("</svg>")
    path.write_text("\n".join(out))


LIMITS = {"gateway_rss_mb": 5.0, "producer_rss_mb": 5.0, "gateway_fds": 2.0, "gateway_threads": 1.0}


def verdicts(rows):
    """(name, slope per hour over the last half, limit, ok) for each watched column."""
    half = rows[len(rows) // 2:]
    out = []
    for key_, limit in LIMITS.items():
        pts = [(float(r["minute"]) / 60, float(r[key_])) for r in half if r[key_] != ""]
        s = slope([p[0] for p in pts], [p[1] for p in pts])
        out.append((key_, s, limit, s <= limit))
    return out


def report_md(rows, out: pathlib.Path, settings: str):
    """bench/soak/report.md: the figures and the plot."""
    def col(k):
        return [float(r[k]) for r in rows if r[k] != ""]
    figures = [(k, col(k)) for k in ("producer_rss_mb", "producer_fds", "producer_threads", "gateway_rss_mb",
                                     "gateway_fds", "gateway_threads", "connected", "fps_p50", "fps_min",
                                     "latency_p99_ms", "parse_errors")]
    lines = [
        "# Soak run (scripts/soak_day.py)", "",
        f"{len(rows)} minutes; {settings}.", "",
        "![soak plot](soak.svg)", "",
        *report.table(["figure", "min", "max", "last"], [[k, min(v), max(v), v[-1]] for k, v in figures if v],
                      ["", ".2f", ".2f", ".2f"]),
        "", "Growth over the last half of the run (least-squares slope per hour; restarts included):", "",
        *report.table(["figure", "slope/h", "limit/h", "verdict"],
                      [[k, s, limit, "flat" if ok else "GROWS"] for k, s, limit, ok in verdicts(rows)],
                      ["", "+.3f"]),
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=0)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--viewers", type=int, default=1000)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", default="30")
    ap.add_argument("--producer-restart", type=float, default=600)
    ap.add_argument("--gateway-restart", type=float, default=3600)
    ap.add_argument("--out", default=str(ROOT / "bench" / "soak"))
    ap.add_argument("--report-only", metavar="CSV", help="only write report.md and the plot from a CSV")
    args = ap.parse_args()
    settings = (f"{args.viewers} viewers reconnecting every minute, {args.size} @ {args.fps} fps, producer restart "
                f"every {args.producer_restart:.0f} s, gateway every {args.gateway_restart:.0f} s, bus garbage, bus key on")
    if args.report_only:
        rows = list(csv.DictReader(open(args.report_only)))
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        svg_plot(rows, out / "soak.svg")
        report_md(rows, out, settings)
        return 0
    total = args.hours * 3600 if args.hours else args.minutes * 60
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for b in ("frame-producer", "stream-gateway", "mjpeg-load"):
        if not (BIN / b).exists():
            subprocess.run(["cargo", "build", "--release", "--bins", "-q"], cwd=ROOT, check=True)
            break

    key = wire.write_key_file(out / "bus.key", wire.new_key())
    zmq_ep, junk_ep = endpoint(), endpoint()
    http = ("127.0.0.1", free_port())
    producer = Service("frame-producer", ["--bind", zmq_ep, "--metrics-listen", f"127.0.0.1:{free_port()}",
                                          "--size", args.size, "--fps", args.fps],
                       {"PRODUCER_BUS_KEY_FILE": str(key)}, out)
    gateway = Service("stream-gateway", ["--producer", zmq_ep, "--producer", junk_ep,
                                         "--listen", f"{http[0]}:{http[1]}"],
                      {"GATEWAY_BUS_KEY_FILE": str(key)}, out)
    stop = threading.Event()
    threads = [threading.Thread(target=garbage_publisher, args=(junk_ep, stop), daemon=True),
               threading.Thread(target=slow_viewer, args=(http, 1000, stop, False), daemon=True),
               threading.Thread(target=slow_viewer, args=(http, 0, stop, True), daemon=True)]
    for t in threads:
        t.start()
    time.sleep(3)

    fields = ["minute", "producer_rss_mb", "producer_fds", "producer_threads", "producer_age_s",
              "gateway_rss_mb", "gateway_fds", "gateway_threads", "gateway_age_s",
              "connected", "fps_p50", "fps_min", "latency_p99_ms", "parse_errors"]
    rows = []
    start = time.monotonic()
    csv_path = out / "soak.csv"
    with open(csv_path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=fields)
        wr.writeheader()
        minute = 0
        while time.monotonic() - start < total:
            now = time.monotonic()
            if now - producer.started >= args.producer_restart:
                producer.restart()
            if now - gateway.started >= args.gateway_restart:
                gateway.restart()
                time.sleep(2)
            # One minute of viewers: they all connect, watch 50 s and leave (churn).
            load = mjpeg_load(["--addr", f"{http[0]}:{http[1]}", "--clients", args.viewers, "--warmup", "3",
                               "--duration", "50"], check=False)
            ps, gs = proc_stats(producer.p.pid) or ("",) * 3, proc_stats(gateway.p.pid) or ("",) * 3
            minute += 1
            row = {"minute": minute,
                   "producer_rss_mb": ps[0], "producer_fds": ps[1], "producer_threads": ps[2],
                   "producer_age_s": round(time.monotonic() - producer.started),
                   "gateway_rss_mb": gs[0], "gateway_fds": gs[1], "gateway_threads": gs[2],
                   "gateway_age_s": round(time.monotonic() - gateway.started),
                   "connected": load.get("connected", ""), "fps_p50": load.get("fps_p50", ""),
                   "fps_min": load.get("fps_min", ""), "latency_p99_ms": load.get("latency_ms_p99", ""),
                   "parse_errors": load.get("parse_errors", "")}
            rows.append(row)
            wr.writerow(row)
            f.flush()
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            # The minute's remainder, if the load ended early.
            time.sleep(max(0.0, start + minute * 60 - time.monotonic()))
    stop.set()
    producer.stop()
    gateway.stop()
    svg_plot(rows, out / "soak.svg")

    report_md(rows, out, settings)
    # Nothing grows: slope over the last half, per hour.
    verdict = 0
    for key_, s, limit, ok in verdicts(rows):
        verdict |= not ok
        print(f"{key_}: slope {s:+.2f}/h over the last half (limit {limit}/h) {'ok' if ok else 'GROWS'}")
    errors = sum(int(r["parse_errors"] or 0) for r in rows)
    print(f"{len(rows)} minutes, viewer parse errors {errors}; CSV {csv_path}, plot {out / 'soak.svg'}")
    return 1 if verdict or errors else 0


if __name__ == "__main__":
    sys.exit(main())
