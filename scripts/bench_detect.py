#!/usr/bin/env python3
"""The detection benchmark: what the object detector costs and how late its
news is.

1. The model alone (`bench_inference`, the detector's own modules): decode
   and prepare, inference, threshold + NMS, per frame, p50/p99, on one and
   two threads, on darknet's person.jpg (640x424).
2. The service live: a producer (person.jpg at 15 fps; then a 1280x720 test
   pattern at 30 fps, whose frames are DCT-decoded at 1/2), the detector at
   --detect-fps 5 on one inference thread, and a ZeroMQ subscriber here that
   reads every detections message: the detector's CPU (% of one core, from
   /proc), the rate it analyses at, and the delay from each frame's capture
   to its detections message arriving here.

    scripts/bench.sh --detect             # release build, 30 s per live run
    scripts/bench.sh --detect --duration 10

Writes its tables between the `detect` markers of bench/report.md
(`--smoke`: a few seconds with the debug build, into bench/tmp/).
"""
import argparse
import datetime
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile
import time

from bench import BIN, cpu_ticks, free_port, replace_section, stop, wait_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- detect: scripts/bench.sh --detect -->", "<!-- /detect -->"
PICTURES = pathlib.Path("/usr/share/darknet/data")
MODELS = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "mjpeg-fanout" / "models"
MODEL = MODELS / "ssdlite-mobilenet-v2-person.onnx"
TICKS = os.sysconf("SC_CLK_TCK")


def pct(values, p):
    v = sorted(values)
    return v[round(p / 100 * (len(v) - 1))] if v else float("nan")


def parse_header(head):
    """The frame-wire header (bincode legacy): version u8, seq u64,
    capture_ts_ns u64, width u32, height u32, producer_id u64, stream."""
    _version, seq, ts, _w, _h, _pid, n = struct.unpack_from("<BQQIIQQ", head)
    return seq, ts, head[41:41 + n].decode()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def microbench(runs):
    rows = []
    exe = BIN / "examples" / "bench_inference"
    if not exe.exists():
        print(f"{exe} not built: skipping the model-alone timings", flush=True)
        return rows
    for threads in (1, 2):
        out = subprocess.run([str(exe), "--model", str(MODEL), "--threads", str(threads), "--runs", str(runs),
                              str(PICTURES / "person.jpg")], capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"bench_inference failed: {out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"threads={threads} prepare p50={r['prepare_ms_p50']:.2f} ms inference p50={r['inference_ms_p50']:.2f} "
              f"p99={r['inference_ms_p99']:.2f} ms nms p50={r['postprocess_ms_p50']:.3f} ms people={r['people']}",
              flush=True)
        rows.append(r)
    return rows


def live(name, producer_args, a):
    import zmq  # pyzmq (scripts/setup.sh installs it)
    zmq_p, zmq_d = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    metrics_d = free_port()
    producer = subprocess.Popen([str(BIN / "frame-producer"), "--bind", zmq_p, "--metrics-listen",
                                 f"127.0.0.1:{free_port()}", "--log-level", "warn"] + producer_args,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    detector = subprocess.Popen([str(BIN / "object-detector"), "--producer", zmq_p, "--bind", zmq_d,
                                 "--metrics-listen", f"127.0.0.1:{metrics_d}", "--model", str(MODEL),
                                 "--detect-fps", str(a.detect_fps), "--log-level", "warn"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        wait_port(metrics_d)
        sub.connect(zmq_d)
        sub.setsockopt(zmq.SUBSCRIBE, b"d/")
        sub.setsockopt(zmq.RCVTIMEO, 5000)
        first = time.time() + 10
        while True:  # the first detections message: everything is connected
            try:
                sub.recv_multipart()
                break
            except zmq.Again:
                if time.time() > first:
                    raise RuntimeError(f"no detections message within 10 s: {detector.stderr.read1()[-2000:]}")
        warm_end = time.time() + a.warmup
        while time.time() < warm_end:
            sub.recv_multipart()
        t0, c0 = time.time(), cpu_ticks(detector.pid)
        delays, seqs = [], []
        while time.time() - t0 < a.duration:
            parts = sub.recv_multipart()
            now = time.time_ns()
            seq, ts, _stream = parse_header(parts[1])
            delays.append((now - ts) / 1e6)
            seqs.append(seq)
        elapsed, c1 = time.time() - t0, cpu_ticks(detector.pid)
        rss_mb = rss_kib(detector.pid) / 1024
    finally:
        sub.close(linger=0)
        ctx.term()
        stop(detector)
        stop(producer)
    r = {"input": name, "messages_per_s": len(delays) / elapsed,
         "cpu_percent": (c1 - c0) / TICKS / elapsed * 100,
         "delay_ms_p50": pct(delays, 50), "delay_ms_p99": pct(delays, 99), "delay_ms_max": max(delays),
         "rss_mb": rss_mb, "in_order": all(b > a_ for a_, b in zip(seqs, seqs[1:]))}
    print(f"{name:34} {r['messages_per_s']:.2f} msg/s cpu={r['cpu_percent']:.1f}% delay p50={r['delay_ms_p50']:.1f} "
          f"p99={r['delay_ms_p99']:.1f} max={r['delay_ms_max']:.1f} ms", flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--detect-fps", type=float, default=5.0)
    ap.add_argument("--smoke", action="store_true", help="a few seconds with the debug build, into bench/tmp/")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.smoke:
        a.duration, a.warmup, a.runs = 3.0, 1.0, 20
    out = pathlib.Path(a.out or ROOT / "bench" / ("tmp/detect.md" if a.smoke else "report.md"))
    if not MODEL.exists():
        sys.exit(f"{MODEL} is missing: run scripts/model.sh")
    a.load = os.getloadavg()[0]
    micro = microbench(a.runs)
    pictures = pathlib.Path(tempfile.mkdtemp(prefix="bench-detect-"))
    try:
        shutil.copy(PICTURES / "person.jpg", pictures / "person.jpg")
        rows = [live("person.jpg 640x424, 15 fps", ["--source", str(pictures), "--fps", "15"], a),
                live("test pattern 1280x720, 30 fps", ["--size", "1280x720", "--fps", "30"], a)]
    finally:
        shutil.rmtree(pictures, ignore_errors=True)
    write(out, micro, rows, a)
    bad = [r for r in rows if not r["in_order"] or r["messages_per_s"] > a.detect_fps * 1.1]
    return 1 if bad else 0


def write(path, micro, rows, a):
    lines = [BEGIN, "## Detection: the object detector's cost and delay", "",
             f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
             f"(`scripts/bench.sh --detect`), SSDLite-MobileNetV2 (person) in ONNX Runtime 1.32 through `ort`, "
             f"{'debug' if a.smoke else 'release'} build; load average {a.load:.1f} at the start "
             "(other work shares these cores: compare within a run).", ""]
    if micro:
        lines += ["Per frame, darknet's person.jpg (640x424, DCT-decoded at 3/4 to 480x318), "
                  f"{micro[0]['runs']} runs (`bench_inference`):", "",
                  "| inference threads | decode + prepare p50 / p99 ms | inference p50 / p99 ms | threshold + NMS p50 ms | model load ms |",
                  "|---|---|---|---|---|"]
        for r in micro:
            lines.append(f"| {r['threads']} | {r['prepare_ms_p50']:.2f} / {r['prepare_ms_p99']:.2f} | "
                         f"{r['inference_ms_p50']:.2f} / {r['inference_ms_p99']:.2f} | "
                         f"{r['postprocess_ms_p50']:.3f} | {r['load_ms']:.0f} |")
        lines.append("")
    lines += [f"The service live, `--detect-fps {a.detect_fps:g}` (one inference thread), {a.duration:g} s after "
              f"{a.warmup:g} s of warm-up; CPU is the detector process's, in % of one core; delay is from the "
              "frame's capture (its header's timestamp) to its detections message arriving at a subscriber:", "",
              "| input | detections msg/s | detector CPU % | delay p50 ms | delay p99 ms | max ms | detector RSS MB |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['input']} | {r['messages_per_s']:.2f} | {r['cpu_percent']:.1f} | "
                     f"{r['delay_ms_p50']:.1f} | {r['delay_ms_p99']:.1f} | {r['delay_ms_max']:.1f} | {r['rss_mb']:.0f} |")
    lines.append(END)
    replace_section(path, BEGIN, END, "\n".join(lines))
    print(f"table: {path}")


if __name__ == "__main__":
    sys.exit(main())
