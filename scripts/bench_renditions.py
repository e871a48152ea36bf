#!/usr/bin/env python3
"""The renditions benchmark (issue #23, docs/renditions.md), in one run:

1. The 16-camera page: one producer of 16 cameras at 1280x720, 15 fps
   (camera-like pictures of about 60 KB: ffmpeg's testsrc2, softened and
   grainy), one gateway, and a "page" of 16 viewers, one per camera: at the
   width a 1280-pixel page's tile asks (320, as tests/page_renditions.rs
   sees Chromium ask) against the full pictures. Bytes per second the page
   receives (the gateway's bytes out) and the producer's CPU, each way.
2. The throttled viewer: a network namespace behind a veth with a 2 Mbit/s
   token bucket (tc tbf), a viewer in it: the full picture's fps, then
   `width=auto`'s settled width and fps, then the same after lifting the
   limit. Needs root (ip netns); skipped otherwise.
3. The gateway's CPU per delivered frame with viewers spread over three
   pictures (320, 640, full) against all on one (mjpeg-load, one serving
   thread on core 0, load on core 1).

    scripts/bench.sh --renditions
    scripts/bench.sh --renditions --viewers 300 --duration 10

Writes its section between the `renditions` markers of bench/report.md.
"""
import argparse
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from benchkit import report
from benchkit.procs import (BIN, ROOT, cpu_seconds, free_port, get, load_report, metric_sum, mjpeg_load, scrape,
                            start, start_gateway, start_load, start_producer, stop, wait_until)

BEGIN, END = "<!-- renditions: scripts/bench.sh --renditions -->", "<!-- /renditions -->"
FPS = 15


def camera_frames(dirpath: pathlib.Path, size: str, n: int = 30) -> None:
    """What test_support::media::camera_frames makes: camera-like JPEGs."""
    src = f"testsrc2=size={size}:rate={FPS},gblur=sigma=1.5,noise=alls=6:allf=t"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src,
                    "-frames:v", str(n), "-q:v", "4", str(dirpath / "%03d.jpg")], check=True)


# ---- an MJPEG client (also run inside the namespace) ----------------------

def jpeg_width(jpeg: bytes) -> int:
    """The width in a JPEG's SOF header, 0 if none."""
    i = 2
    while i + 9 < len(jpeg):
        if jpeg[i] != 0xFF:
            return 0
        marker, length = jpeg[i + 1], int.from_bytes(jpeg[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(jpeg[i + 7:i + 9], "big")
        i += 2 + length
    return 0


def client(host: str, port: int, path: str, seconds: float) -> None:
    """Reads an MJPEG stream for `seconds`; prints one JSON line a second:
    frames in it and the last frame's width."""
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    buf = buf.split(b"\r\n\r\n", 1)[1]
    end = time.time() + seconds
    tick, frames, width = time.time() + 1, 0, 0
    while time.time() < end:
        data = s.recv(262144)
        if not data:
            break
        buf += data
        while True:
            h = buf.find(b"Content-Length:")
            if h < 0:
                break
            eol = buf.find(b"\r\n", h)
            body = buf.find(b"\r\n\r\n", h)
            if eol < 0 or body < 0:
                break
            n = int(buf[h + 15:eol])
            if len(buf) < body + 4 + n:
                break
            width = jpeg_width(buf[body + 4:body + 4 + n])
            frames += 1
            buf = buf[body + 4 + n:]
        if time.time() >= tick:
            print(json.dumps({"frames": frames, "width": width}), flush=True)
            tick, frames = tick + 1, 0


# ---- 1. the 16-camera page ------------------------------------------------

def page(a, frames_dir):
    cams = [f"cam{i:02}" for i in range(16)]
    flags = [f for c in cams for f in ("--camera", f"name={c},source={frames_dir},size=1280x720,fps={FPS}")]
    rows = []
    for label, width in (("full pictures", None), ("renditions (tiles ask 320)", 320)):
        prod, ep = start_producer([*flags, "--renditions", "640,320"])
        gw, port = start_gateway([ep], ["--max-clients", "100000"])
        try:
            wait_until("16 cameras listed",
                       lambda: len(json.loads(get(port, "/api/streams"))["streams"]) == 16, timeout=30)
            time.sleep(2.0)  # the renditions announced, the full size known
            paths = ",".join(f"/stream/{c}" + (f"?width={width}" if width else "") for c in cams)
            load = start_load(["--addr", f"127.0.0.1:{port}", "--clients", 16, "--path", paths,
                               "--duration", a.duration + 4, "--warmup", 1])
            time.sleep(3.0)
            b0, c0, t0 = metric_sum(scrape(port), "gateway_bytes_out_total"), cpu_seconds(prod.pid), time.time()
            time.sleep(a.duration)
            b1, c1, t1 = metric_sum(scrape(port), "gateway_bytes_out_total"), cpu_seconds(prod.pid), time.time()
            rep = load_report(load, timeout=60, check=False)
            rows.append([label, (b1 - b0) / (t1 - t0) / 1e6, 100 * (c1 - c0) / (t1 - t0), rep.get("fps_p50"),
                         rep.get("fps_min")])
            print(f"page, {label}: {rows[-1][1]:.2f} MB/s, producer {rows[-1][2]:.0f}% CPU, "
                  f"fps p50 {rep.get('fps_p50')}", flush=True)
        finally:
            stop(gw)
            stop(prod)
    return rows


# ---- 2. the throttled viewer ----------------------------------------------

def sh(*args) -> bool:
    return subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def throttled(a, frames_dir):
    ns, host_if, ns_if = f"benchthr{os.getpid()}", f"bth{os.getpid() % 100000}", f"btn{os.getpid() % 100000}"
    if not sh("ip", "netns", "add", ns):
        print("throttled viewer: skipped (no ip netns: needs root)", flush=True)
        return []
    rows = []
    prod = gw = None
    try:
        ok = (sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
              and sh("ip", "link", "set", ns_if, "netns", ns)
              and sh("ip", "addr", "add", "10.232.0.1/30", "dev", host_if) and sh("ip", "link", "set", host_if, "up")
              and sh("ip", "-n", ns, "addr", "add", "10.232.0.2/30", "dev", ns_if)
              and sh("ip", "-n", ns, "link", "set", ns_if, "up"))
        rate = ["tc", "qdisc", "replace", "dev", host_if, "root", "tbf", "rate", "2mbit", "burst", "16kb",
                "latency", "100ms"]
        if not ok or not sh(*rate):
            print("throttled viewer: skipped (veth/tbf failed)", flush=True)
            return []
        prod, ep = start_producer(["--camera", f"name=cam0,source={frames_dir},size=1280x720,fps={FPS}",
                                   "--renditions", "640,320"])
        port = free_port()
        gw = start("stream-gateway", ["--producer", ep, "--listen", f"0.0.0.0:{port}", "--log-level", "warn"])
        time.sleep(3.0)

        def watch(path, seconds, lift_after=None):
            p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, "--client", "10.232.0.1",
                                  str(port), path, str(seconds)], stdout=subprocess.PIPE, text=True)
            lines = []
            for line in p.stdout:
                lines.append(json.loads(line))
                if lift_after is not None and len(lines) == lift_after:
                    sh("tc", "qdisc", "del", "dev", host_if, "root")
            p.wait()
            return lines

        def settled(lines, last=5):
            tail = lines[-last:]
            return sum(x["frames"] for x in tail) / max(1, len(tail)), tail[-1]["width"] if tail else 0

        full = watch("/stream/cam0", 10)
        fps_full, w_full = settled(full)
        rows.append(["full picture, 2 Mbit/s", w_full, fps_full, ""])
        auto = watch("/stream/cam0?width=auto", 40, lift_after=22)
        fps_a, w_a = settled(auto[:22])
        back = next((i - 22 for i, x in enumerate(auto) if i >= 22 and x["width"] == 1280), None)
        rows.append(["auto, 2 Mbit/s (settled)", w_a, fps_a, ""])
        fps_l, w_l = settled(auto)
        rows.append(["auto, limit lifted", w_l, fps_l, f"full again {back} s after lifting" if back is not None
                     else "not back to full"])
        for r in rows:
            print(f"throttled: {r}", flush=True)
    finally:
        if gw:
            stop(gw)
        if prod:
            stop(prod)
        sh("ip", "link", "del", host_if)
        sh("ip", "netns", "del", ns)
    return rows


# ---- 3. gateway CPU per delivered frame, spread vs one picture -----------

def spread(a, frames_dir):
    prod, ep = start_producer(["--camera", f"name=cam0,source={frames_dir},size=1280x720,fps={FPS}",
                               "--renditions", "640,320"])
    rows = []
    try:
        for label, paths in (("all on the full picture", "/stream/cam0"),
                             ("all on 640", "/stream/cam0?width=640"),
                             ("all on 320", "/stream/cam0?width=320"),
                             ("spread over 320, 640, full",
                              "/stream/cam0?width=320,/stream/cam0?width=640,/stream/cam0")):
            gw, port = start_gateway([ep], ["--threads", "1", "--max-clients", "100000"], cpus=0)
            try:
                time.sleep(3.0)
                r = mjpeg_load(["--addr", f"127.0.0.1:{port}", "--clients", a.viewers, "--path", paths,
                                "--duration", a.duration, "--warmup", 3, "--pid", gw.pid], cpus=1)
            finally:
                stop(gw)
            rows.append([label, a.viewers, r["server_cpu_percent"], r["server_cpu_us_per_frame"], r["fps_p50"],
                         r["fps_min"]])
            print(f"spread: {rows[-1]}", flush=True)
    finally:
        stop(prod)
    return rows


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--viewers", type=int, default=300)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "report.md"))
    a = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-renditions-"))
    try:
        camera_frames(tmp, "1280x720")
        pg = page(a, tmp)
        th = throttled(a, tmp)
        sp = spread(a, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write(pathlib.Path(a.out), pg, th, sp, a)
    return 0


def write(path, pg, th, sp, a):
    full = pg[0][1] if pg else 0
    lines = ["## Renditions: the page, a throttled viewer, the gateway's cost per frame", "",
             f"{report.stamp()} (`scripts/bench.sh --renditions`, binaries from {os.path.relpath(BIN, ROOT)}, load average {os.getloadavg()[0]:.1f} at the end); cameras 1280x720 at {FPS} fps, camera-like "
             "pictures of about 60 KB, renditions 640 and 320.", "",
             "The 16-camera page (16 viewers, one per camera, at the width a 1280-pixel page's tile asks; "
             "one producer of the 16 cameras; bytes are the gateway's bytes out):", "",
             *report.table(["page", "MB/s received", "vs full", "producer CPU %", "fps p50", "fps min"],
                           [[r[0], r[1], f"{full / r[1]:.1f}× less" if r[1] and r[1] != full else "", r[2], r[3], r[4]]
                            for r in pg], ["", ".2f", "", ".0f", ".2f", ".2f"]), ""]
    if th:
        lines += ["A viewer behind a 2 Mbit/s token bucket (network namespace, veth, `tc tbf`); fps over its "
                  "last 5 s in each phase:", "",
                  *report.table(["viewer", "width", "fps", ""], th, ["", "", ".1f", ""]), ""]
    else:
        lines += ["The throttled viewer was skipped (no network namespaces: needs root).", ""]
    single = [r[3] for r in sp[:3]]
    mean = sum(single) / len(single) if len(single) == 3 else None
    lines += [f"The gateway (one serving thread on core 0) with {a.viewers} viewers of one camera, mjpeg-load on "
              "core 1. A frame costs its write, which grows with its bytes: if nothing is done per viewer but the "
              "write, viewers spread over the three pictures cost about the mean of the first three rows "
              f"({mean:.2f} µs a frame); the last row is what they cost." if mean else "", "",
              *report.table(["viewers on", "viewers", "gateway CPU %", "µs / delivered frame", "fps p50",
                             "fps min"], sp, ["", "", ".1f", ".2f", ".2f", ".2f"])]
    report.write_section(path, BEGIN, END, lines)
    print(f"table: {path}")


if __name__ == "__main__":
    sys.exit(main())
