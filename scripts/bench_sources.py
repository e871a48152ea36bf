#!/usr/bin/env python3
"""Producer cost per frame by source: what a camera costs before any viewer.

Runs the release frame-producer on each source in turn, side by side in one
run, and reads its CPU time (sum of its threads' schedstat, ns resolution)
over the window, divided by the frames it published. The H.264 inputs are
camera-like files (Main profile, no B-frames, one keyframe a second, camera
bitrates) that ffmpeg makes for the run; the producer plays them in real
time, as it would a camera. The JPEG encode share comes from the producer's
own producer_encode_seconds histogram; the rest is demux + decode (+ swscale).

    scripts/bench.sh --sources          # writes bench/sources.md
    scripts/bench.sh --sources --smoke  # 1 s per source, bench/tmp/
"""
import argparse
import glob
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(os.environ.get("BENCH_BIN_DIR", ROOT / "target" / "release")) / "frame-producer"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ns(pid):
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(producer_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m and 'reason=' not in (m.group(2) or ""):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


def make(path, args):
    if not path.exists():
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, str(path)], check=True)
    return str(path)


class Subscriber:
    """A SUB socket that wants every stream's full-rate frames and reads
    them: the producer encodes only what someone subscribes to."""

    def __init__(self, endpoint):
        import zmq  # pyzmq, installed by scripts/setup.sh

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"f/")
        self.sock.setsockopt(zmq.RCVTIMEO, 100)
        self.sock.connect(endpoint)
        self.running = True
        self.thread = threading.Thread(target=self.drain, daemon=True)
        self.thread.start()

    def drain(self):
        import zmq

        while self.running:
            try:
                self.sock.recv_multipart()
            except zmq.Again:
                pass

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close(linger=0)
        self.ctx.term()


def measure(name, source_args, duration):
    port = free_port()
    bus = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [str(BIN), "--bind", bus, "--metrics-listen", f"127.0.0.1:{port}",
         "--log-level", "warn", *source_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sub = Subscriber(bus)
    try:
        deadline = time.time() + 15
        while True:
            try:
                if metrics(port).get("producer_frames_published_total", 0) > 0:
                    break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name}: no frames published")
            time.sleep(0.1)
        time.sleep(0.5)  # past start-up
        m0, c0, t0 = metrics(port), cpu_ns(proc.pid), time.time()
        time.sleep(duration)
        m1, c1, t1 = metrics(port), cpu_ns(proc.pid), time.time()
    finally:
        sub.close()
        proc.terminate()
        proc.wait(timeout=5)
    frames = m1["producer_frames_published_total"] - m0["producer_frames_published_total"]
    enc_s = m1.get("producer_encode_seconds_sum", 0) - m0.get("producer_encode_seconds_sum", 0)
    cpu = (c1 - c0) / 1e9
    return {
        "source": name,
        "fps": frames / (t1 - t0),
        "cpu_percent": cpu / (t1 - t0) * 100,
        "us_per_frame": cpu / frames * 1e6 if frames else float("nan"),
        "encode_us_per_frame": enc_s / frames * 1e6 if frames else float("nan"),
        "kb_per_frame": (m1.get("producer_frame_bytes_sum", 0) - m0.get("producer_frame_bytes_sum", 0))
        / max(frames, 1) / 1000,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench"))
    a = ap.parse_args()
    if a.smoke:
        a.duration, a.out = 1.0, str(ROOT / "bench" / "tmp")
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.gettempdir()) / "mjpeg-bench-sources"
    work.mkdir(exist_ok=True)
    secs = "2" if a.smoke else "10"
    h264 = ["-c:v", "libx264", "-profile:v", "main", "-bf", "0", "-g", "30", "-pix_fmt", "yuv420p"]
    f720 = make(work / f"720p-{secs}.mp4",
                ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", secs, *h264, "-b:v", "4M"])
    f1080 = make(work / f"1080p-{secs}.mp4",
                 ["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", secs, *h264, "-b:v", "6M"])
    mjpeg = make(work / f"720p-mjpeg-{secs}.avi",
                 ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", secs, "-c:v", "mjpeg", "-q:v", "4"])
    cases = [
        ("test pattern 1280x720 (draw + encode from RGB)", ["--size", "1280x720", "--fps", "30"]),
        ("720p H.264 file -> JPEG 720p (decode + encode from YUV)", ["--source", f720]),
        ("720p H.264 file -> JPEG 640x360 (decode + scale + encode)", ["--source", f720, "--size", "640x360"]),
        ("1080p H.264 file -> JPEG 720p (decode + scale + encode)", ["--source", f1080, "--size", "1280x720"]),
        ("720p MJPEG file, passed through (demux only)", ["--source", mjpeg]),
    ]
    rows = []
    for name, args in cases:
        r = measure(name, args, a.duration)
        rows.append(r)
        print(f"{name:60} {r['fps']:5.1f} fps  cpu {r['cpu_percent']:5.1f} %  "
              f"{r['us_per_frame']:7.0f} us/frame (encode {r['encode_us_per_frame']:5.0f})  "
              f"{r['kb_per_frame']:5.1f} KB", flush=True)
    lines = [
        "# Producer cost per frame, by source",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC on {os.cpu_count()} cores, release build, "
        f"{a.duration:g} s per source, JPEG quality 80, one decoder thread. CPU is the producer process's "
        "run time over the window divided by frames published; encode is the producer's own encode timer "
        "(JPEG encode, plus scaling for JPEG and V4L2 pictures); the remainder is demux + decode + publish, "
        "and for decoded video also swscale's conversion and scaling, done in one pass before encoding.",
        "",
        "| source | fps | CPU % of one core | µs CPU / frame | of which encode µs | JPEG KB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['source']} | {r['fps']:.1f} | {r['cpu_percent']:.1f} | {r['us_per_frame']:.0f} | "
                     f"{r['encode_us_per_frame']:.0f} | {r['kb_per_frame']:.1f} |")
    (out / "sources.md").write_text("\n".join(lines) + "\n")
    print(f"report: {out / 'sources.md'}")
    bad = [r for r in rows if not r["fps"] > 0]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
