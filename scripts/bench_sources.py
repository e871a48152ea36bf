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
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

from benchkit import report, wire
from benchkit.procs import ROOT, cpu_ns, endpoint, free_port, scrape, start, stop, wait_until


def metrics(port):
    """The producer's counters, summed over labels other than reasons."""
    out = {}
    for name, labels, value in scrape(port):
        if name.startswith("producer_") and "reason" not in labels:
            out[name] = out.get(name, 0.0) + value
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
        self.sock.setsockopt(zmq.SUBSCRIBE, wire.subscription(wire.FRAME))
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
    port, bus = free_port(), endpoint()
    proc = start("frame-producer", ["--bind", bus, "--metrics-listen", f"127.0.0.1:{port}",
                                    "--log-level", "warn", *source_args], stderr=subprocess.PIPE, text=True)
    sub = Subscriber(bus)
    try:
        wait_until(f"{name}: frames published", lambda: proc.poll() is not None
                   or metrics(port).get("producer_frames_published_total", 0) > 0, timeout=15, every=0.1)
        if proc.poll() is not None:
            raise RuntimeError(f"{name}: the producer exited: {proc.stderr.read()[-2000:]}")
        time.sleep(0.5)  # past start-up
        m0, c0, t0 = metrics(port), cpu_ns(proc.pid), time.time()
        time.sleep(duration)
        m1, c1, t1 = metrics(port), cpu_ns(proc.pid), time.time()
    finally:
        sub.close()
        stop(proc)
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
        f"{report.stamp()}, release build, "
        f"{a.duration:g} s per source, JPEG quality 80, one decoder thread. CPU is the producer process's "
        "run time over the window divided by frames published; encode is the producer's own encode timer "
        "(JPEG encode, plus scaling for JPEG and V4L2 pictures); the remainder is demux + decode + publish, "
        "and for decoded video also swscale's conversion and scaling, done in one pass before encoding.",
        "",
        *report.table(["source", "fps", "CPU % of one core", "µs CPU / frame", "of which encode µs", "JPEG KB"],
                      [[r["source"], r["fps"], r["cpu_percent"], r["us_per_frame"], r["encode_us_per_frame"],
                        r["kb_per_frame"]] for r in rows],
                      ["", ".1f", ".1f", ".0f", ".0f", ".1f"]),
    ]
    (out / "sources.md").write_text("\n".join(lines) + "\n")
    print(f"report: {out / 'sources.md'}")
    bad = [r for r in rows if not r["fps"] > 0]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
