#!/usr/bin/env python3
"""What an H.264 camera would gain if the recorder kept the camera's own
stream instead of the bus's JPEGs: bytes on disk, and the producer CPU that
decoding and JPEG-encoding costs.

The stand-in IP camera (scripts/rtsp_camera.py: GStreamer, x264 ultrafast,
zerolatency, a key frame a second) serves SIZE at FPS. Two recordings of
the same seconds, side by side:
  - the camera's stream as it is: `ffmpeg -c copy` into Matroska;
  - what the system keeps today: frame-producer reads the camera (decode,
    scale, JPEG at quality 80) and a frame-recorder writes the JPEGs.
Reported: bytes per camera-hour of each and their ratio, and the producer's
CPU (% of a core) spent turning the camera's H.264 into JPEGs.

    scripts/bench.sh --h264                 # 1280x720 at 15 fps, 30 s
    python3 scripts/bench_h264.py --smoke   # 640x360, 5 s (debug binaries)

The test picture (a ball on a still pattern) compresses far better in H.264
than a real scene would: the ratio here is an upper bound of the gain, the
JPEG side is not (JPEG's size barely depends on motion).
Writes its table between the `h264` markers of bench/report.md.
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from benchkit import report
from benchkit.procs import (ROOT, cpu_seconds, free_port, scrape, start, start_producer, stop, wait_http,
                            wait_port, wait_until)

BEGIN, END = "<!-- h264: scripts/bench.sh --h264 -->", "<!-- /h264 -->"


def disk_bytes(path):
    return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.smoke:
        a.size, a.duration = "640x360", 5.0
    out = a.out or str(ROOT / "bench" / ("tmp/h264.md" if a.smoke else "report.md"))
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-h264-"))
    rtsp_port = free_port()
    url = f"rtsp://127.0.0.1:{rtsp_port}/cam"
    camera = subprocess.Popen(["/usr/bin/python3", str(ROOT / "scripts/rtsp_camera.py"), "--port", str(rtsp_port),
                               "--size", a.size, "--fps", str(a.fps)], stdout=subprocess.DEVNULL)
    producer = recorder = copy = None
    try:
        wait_port(rtsp_port)
        producer, bus = start_producer(["--source", url, "--size", a.size, "--fps", str(a.fps)])
        rec_port = free_port()
        recorder = start("frame-recorder", ["--producer", bus, "--dir", work / "rec", "--listen",
                                            f"127.0.0.1:{rec_port}", "--log-level", "warn"])
        wait_http(rec_port, "/metrics")
        written = lambda: sum(v for m, _, v in scrape(rec_port) if m == "recorder_frames_written_total")
        wait_until("the recorder to write frames", lambda: written() > 0, timeout=60)
        # Both recordings over the same seconds.
        bytes0, frames0, cpu0, t0 = disk_bytes(work / "rec"), written(), cpu_seconds(producer.pid), time.monotonic()
        copy = subprocess.run(["ffmpeg", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url, "-c", "copy",
                               "-t", str(a.duration), "-y", str(work / "camera.mkv")], timeout=a.duration + 60)
        bytes1, frames1, cpu1, t1 = disk_bytes(work / "rec"), written(), cpu_seconds(producer.pid), time.monotonic()
        copied = (work / "camera.mkv").stat().st_size
    finally:
        for p in (recorder, producer):
            if p:
                stop(p)
        camera.terminate()
        camera.wait(timeout=10)
    shutil.rmtree(work, ignore_errors=True)
    if copy.returncode != 0:
        print("FAILED: ffmpeg could not copy the camera's stream", file=sys.stderr)
        return 1
    secs = t1 - t0
    jpeg_hour = (bytes1 - bytes0) / secs * 3600
    h264_hour = copied / a.duration * 3600
    fps = (frames1 - frames0) / secs
    cpu = 100.0 * (cpu1 - cpu0) / secs
    print(f"H.264 as the camera sends it: {h264_hour / 1e9:.3f} GB/h; JPEGs: {jpeg_hour / 1e9:.3f} GB/h "
          f"({jpeg_hour / h264_hour:.1f}x); producer {cpu:.1f}% of a core at {fps:.1f} fps", flush=True)
    text = report.write_section(out, BEGIN, END, [
        "## Recording an H.264 camera: its own stream against the bus's JPEGs",
        "",
        f"{report.stamp()}: the stand-in IP camera (scripts/rtsp_camera.py, x264 ultrafast zerolatency, "
        f"{a.size} at {a.fps} fps, a key frame a second) recorded for {a.duration:g} s two ways at once: "
        "`ffmpeg -c copy` of its RTSP stream, and frame-producer (decode, JPEG q80) into a frame-recorder.",
        "",
        *report.table(
            ["recording", "GB / camera-hour", "GB / camera-day", "producer CPU % of a core", "fps recorded"],
            [["camera's H.264 (copied)", h264_hour / 1e9, h264_hour * 24 / 1e9, None, None],
             ["bus JPEGs (today)", jpeg_hour / 1e9, jpeg_hour * 24 / 1e9, cpu, fps]],
            ["", ".3f", ".2f", ".1f", ".1f"]),
        "",
        f"JPEGs take {jpeg_hour / h264_hour:.1f}x the bytes of the camera's own stream here. The test picture is "
        "mostly still, which H.264 compresses best; a real scene narrows the gap. The producer's CPU is the "
        "decode and encode an H.264 camera costs for live viewing anyway; recording its stream as it is would "
        "add no encode, only a second reader of the camera (or a copy of its packets).",
    ])
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
