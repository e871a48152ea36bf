#!/usr/bin/env python3
"""The events benchmark: how late an event reaches Home Assistant (MQTT) and
a webhook, and what the event stage costs, with 16 cameras.

One producer carries 16 cameras from a cameras file, each playing a loop of
darknet's pictures: the person for 4 s, then the dog for 8 s (12 s a loop),
each camera's loop shifted by 1/16 of it so that appearances are spread.
The real detector analyses every camera at --detect-fps 5; the event stage
(--event-min-seconds 1, --event-end-after 2) publishes to Debian's mosquitto
and POSTs to a webhook receiver here.

Latency is measured from the capture time of the first frame showing the
person (this script reads the producer's frames and knows person.jpg's
bytes: the file source passes JPEGs through) to the MQTT `ON` of that camera
arriving here, to the start JSON on `<prefix>/events`, and to the webhook's
start arriving here. It includes the --event-min-seconds the stage waits
(the figure is also given without it) and the detector's sampling: at 5 fps
the first analysed frame showing the person is up to 0.2 s after the first
captured one, more when the detector cannot keep up. CPU: the event stage's
run time over the window (sum of its threads' schedstat), % of one core.

    scripts/bench.sh --events                 # release build, 60 s window
    python3 scripts/bench_events.py --smoke     # a few seconds, debug build, bench/tmp/

Writes its tables between the `events` markers of bench/report.md.
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
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
from benchkit import report, wire  # noqa: E402
from benchkit.procs import (BIN, ROOT, cpu_ns, endpoint, free_port, metric_sum, scrape, start, stop,  # noqa: E402
                            wait_port, wait_until)

BEGIN, END = "<!-- events: scripts/bench.sh --events -->", "<!-- /events -->"
PICTURES = pathlib.Path("/usr/share/darknet/data")
MODELS = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "mjpeg-fanout" / "models"
MODEL = MODELS / "ssdlite-mobilenet-v2-person.onnx"
PREFIX = "mjpeg-fanout"


def scene_dirs(root: pathlib.Path, cameras: int, fps: int, person_s: float, dog_s: float):
    """One directory per camera: the loop, shifted by camera/cameras of it.
    Hard links to one copy of each picture (the source plays name order)."""
    pictures = {}
    for name in ("person.jpg", "dog.jpg"):
        pictures[name] = root / name
        shutil.copy(PICTURES / name, pictures[name])
    loop = ["person.jpg"] * round(person_s * fps) + ["dog.jpg"] * round(dog_s * fps)
    dirs = []
    for c in range(cameras):
        d = root / f"cam{c:02}"
        d.mkdir()
        shift = c * len(loop) // cameras
        for i, name in enumerate(loop[shift:] + loop[:shift]):
            os.link(pictures[name], d / f"{i:04}-{name}")
        dirs.append(d)
    return dirs


class Frames(threading.Thread):
    """Reads the producer's full-size frames: for each camera, the capture
    time of every first frame of the person after a frame of the dog."""

    def __init__(self, producer: str, person: bytes):
        super().__init__(daemon=True)
        import zmq  # pyzmq (scripts/setup.sh installs it)
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 10000)
        self.sub.connect(producer)
        self.sub.setsockopt(zmq.SUBSCRIBE, wire.subscription(wire.FRAME))
        self.sub.setsockopt(zmq.RCVTIMEO, 500)
        self.person = person
        self.onsets: dict[str, list[int]] = {}
        self.frames = 0
        self.running = True

    def run(self):
        import zmq
        was_person: dict[str, bool] = {}
        while self.running:
            try:
                parts = self.sub.recv_multipart()
            except zmq.Again:
                continue
            try:
                kind, head, jpeg = wire.decode_message(parts)
            except wire.WireError:
                continue
            self.frames += 1
            person = len(jpeg) == len(self.person) and jpeg == self.person
            if person and was_person.get(head.stream) is False:
                self.onsets.setdefault(head.stream, []).append(head.capture_ts_ns)
            was_person[head.stream] = person

    def onset_before(self, stream: str, ts_ns: int, within_ns: int):
        """The latest onset of the person on `stream` at or before `ts_ns`."""
        best = None
        for o in self.onsets.get(stream, []):
            if o <= ts_ns and ts_ns - o <= within_ns:
                best = o
        return best


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_string(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


class Mqtt(threading.Thread):
    """A minimal MQTT 3.1.1 subscriber (QoS 0, no keep-alive): every PUBLISH
    under the prefix, with its arrival time."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        body = mqtt_string("MQTT") + bytes([4, 0x02, 0, 0]) + mqtt_string("bench-events")
        self.sock.sendall(bytes([0x10]) + remaining_length(len(body)) + body)
        body = (1).to_bytes(2, "big") + mqtt_string(f"{PREFIX}/#") + bytes([0])
        self.sock.sendall(bytes([0x82]) + remaining_length(len(body)) + body)
        self.seen: list[tuple[int, str, bytes]] = []
        self.file = self.sock.makefile("rb")

    def read(self, n: int) -> bytes:
        data = self.file.read(n)
        if len(data) < n:
            raise EOFError
        return data

    def run(self):
        try:
            while True:
                first = self.read(1)[0]
                length, mult = 0, 1
                while True:
                    b = self.read(1)[0]
                    length += (b & 0x7F) * mult
                    mult *= 128
                    if not b & 0x80:
                        break
                packet = self.read(length)
                if first >> 4 != 3:
                    continue
                now = time.time_ns()
                n = int.from_bytes(packet[:2], "big")
                topic = packet[2:2 + n].decode()
                rest = packet[2 + n:]
                if (first >> 1) & 3:
                    rest = rest[2:]
                if not topic.endswith("/snapshot"):
                    self.seen.append((now, topic, rest))
        except (EOFError, OSError):
            pass


class Hooks:
    """A webhook receiver: every POST's JSON with its arrival time."""

    def __init__(self):
        self.seen: list[tuple[int, dict]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                now = time.time_ns()
                try:
                    hooks.seen.append((now, json.loads(body)))
                except ValueError:
                    pass
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=16)
    ap.add_argument("--fps", type=int, default=10, help="each camera's frame rate")
    ap.add_argument("--detect-fps", default="5", help="the detector's rate per camera")
    ap.add_argument("--min-seconds", type=float, default=1.0, help="the stage's --event-min-seconds")
    ap.add_argument("--end-after", type=float, default=2.0, help="the stage's --event-end-after")
    ap.add_argument("--duration", type=float, default=60, help="seconds measured")
    ap.add_argument("--warmup", type=float, default=15, help="seconds before measuring")
    ap.add_argument("--smoke", action="store_true", help="a few seconds with the debug build, into bench/tmp/")
    ap.add_argument("--out", help="report file (default bench/report.md)")
    a = ap.parse_args()
    if a.smoke:
        a.cameras, a.duration, a.warmup = 4, 15, 5
    out = pathlib.Path(a.out or ROOT / "bench" / ("tmp/events.md" if a.smoke else "report.md"))
    person_s, dog_s = 4.0, 8.0
    loop_ns = int((person_s + dog_s) * 1e9)
    load = os.getloadavg()[0]
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-events-"))
    procs = []
    try:
        dirs = scene_dirs(tmp, a.cameras, a.fps, person_s, dog_s)
        cameras = tmp / "cameras.toml"
        cameras.write_text("".join(f'[[camera]]\nname = "{d.name}"\nsource = "{d}"\nfps = {a.fps}\n\n'
                                   for d in dirs))
        broker_port = free_port()
        broker = subprocess.Popen(["/usr/sbin/mosquitto", "-p", str(broker_port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(broker)
        wait_port(broker_port)
        mqtt = Mqtt(broker_port)
        mqtt.start()
        hooks = Hooks()
        zmq_p, metrics_p = endpoint(), free_port()
        procs.append(start("frame-producer", ["--cameras", cameras, "--bind", zmq_p,
                                              "--metrics-listen", f"127.0.0.1:{metrics_p}", "--log-level", "warn"]))
        frames = Frames(zmq_p, (PICTURES / "person.jpg").read_bytes())
        frames.start()
        zmq_d, metrics_d = endpoint(), free_port()
        detector = start("object-detector", ["--producer", zmq_p, "--bind", zmq_d, "--metrics-listen",
                                             f"127.0.0.1:{metrics_d}", "--model", MODEL, "--detect-fps", a.detect_fps,
                                             "--log-level", "warn"])
        procs.append(detector)
        metrics_s = free_port()
        stage = start("event-stage", ["--detector", zmq_d, "--producer", zmq_p, "--bind", endpoint(),
                                      "--metrics-listen", f"127.0.0.1:{metrics_s}",
                                      "--mqtt", f"mqtt://127.0.0.1:{broker_port}",
                                      "--webhook", f"http://127.0.0.1:{hooks.port}/hook",
                                      "--event-min-seconds", a.min_seconds, "--event-end-after", a.end_after,
                                      "--log-level", "warn"])
        procs.append(stage)
        for port in (metrics_p, metrics_d, metrics_s):
            wait_port(port, timeout=60)
        wait_until("the first event at the webhook", lambda: hooks.seen, timeout=120)
        time.sleep(a.warmup)

        def counters():
            d = scrape(metrics_d)
            return (time.time_ns(), cpu_ns(stage.pid), cpu_ns(detector.pid),
                    metric_sum(d, "detector_frames_analysed_total"), metric_sum(d, "detector_frames_skipped_total"))

        t0, stage0, det0, analysed0, skipped0 = counters()
        time.sleep(a.duration)
        t1, stage1, det1, analysed1, skipped1 = counters()
        # Events that started in the window get time to arrive everywhere.
        time.sleep(a.min_seconds + 5)
        s = scrape(metrics_s)
        wall = (t1 - t0) / 1e9
        stage_cpu = (stage1 - stage0) / 1e9 / wall * 100
        det_cpu = (det1 - det0) / 1e9 / wall * 100
        analysed = (analysed1 - analysed0) / wall
        skipped = (skipped1 - skipped0) / wall
        frames.running = False

        def in_window(onset):
            return onset is not None and t0 <= onset <= t1

        # MQTT: the start JSON, then the camera's ON.
        via_json, via_on, detected_at = [], [], []
        pending: dict[str, int] = {}
        for at, topic, payload in list(mqtt.seen):
            if topic == f"{PREFIX}/events":
                v = json.loads(payload)
                e = v["event"]
                if v["type"] != "start" or e["label"] != "person":
                    continue
                onset = frames.onset_before(e["stream"], e["start_ts_ns"], loop_ns)
                if in_window(onset):
                    via_json.append((at - onset) / 1e6)
                    detected_at.append((e["start_ts_ns"] - onset) / 1e6)
                    pending[e["stream"]] = onset
            elif topic.endswith("/person") and payload == b"ON":
                stream = topic.split("/")[1]
                onset = pending.pop(stream, None)
                if onset is not None:
                    via_on.append((at - onset) / 1e6)
        via_hook = []
        for at, v in list(hooks.seen):
            e = v.get("event", {})
            if v.get("type") == "start" and e.get("label") == "person":
                onset = frames.onset_before(e["stream"], e["start_ts_ns"], loop_ns)
                if in_window(onset):
                    via_hook.append((at - onset) / 1e6)
        appearances = sum(1 for os_ in frames.onsets.values() for o in os_ if t0 <= o <= t1)
        mqtt_dropped = metric_sum(s, "events_mqtt_dropped_total")
        hook_dropped = metric_sum(s, "events_webhook_dropped_total")
        min_ms = a.min_seconds * 1000
        rows = []
        for name, values in (("MQTT `ON` (state topic)", via_on), ("MQTT start JSON (`events`)", via_json),
                             ("webhook start", via_hook)):
            rows.append((name, len(values), report.pct(values, 50), report.pct(values, 99), max(values, default=None),
                         report.pct(values, 50) - min_ms, report.pct(values, 99) - min_ms))
        lines = [
            "## Events: from the person on camera to Home Assistant and a webhook",
            "",
            f"{report.stamp()} (`scripts/bench.sh --events`, {'debug' if a.smoke else 'release'} build; load average "
            f"{load:.1f} at the start, other work on the machine included): one producer, {a.cameras} cameras from a "
            f"cameras file at {a.fps} fps, each looping darknet's person.jpg for {person_s:.0f} s then dog.jpg for "
            f"{dog_s:.0f} s, shifted 1/{a.cameras} of the loop apart; the detector at --detect-fps {a.detect_fps} "
            f"per camera (one inference thread); the event stage with --event-min-seconds {a.min_seconds:g} and "
            f"--event-end-after {a.end_after:g}, to mosquitto and one webhook receiver. {wall:.0f} s window after "
            f"{a.warmup:.0f} s warm-up; nothing pinned.",
            "",
            "Latency: from the capture time of the first frame showing the person (read off the producer's frames) "
            "to the message arriving at a subscriber / the webhook receiver here; it includes the "
            f"{min_ms:.0f} ms the stage waits before an object is an event (last two columns: without it) and the "
            "detector's sampling and backlog.",
            "",
            *report.table(["arrival", "events", "p50 ms", "p99 ms", "max ms", "p50 − min ms", "p99 − min ms"], rows,
                          ["", "", ".0f", ".0f", ".0f", ".0f", ".0f"]),
            "",
            *report.table(["measure", "value"], [
                ("person appearances in the window (all cameras)", appearances),
                ("events started for them (webhook)", len(via_hook)),
                ("first analysed frame with the person, after the first captured: p50 / p99 ms",
                 f"{report.pct(detected_at, 50):.0f} / {report.pct(detected_at, 99):.0f}"),
                ("frames analysed per second (all cameras; asked for)",
                 f"{analysed:.1f} ({a.cameras * float(a.detect_fps):.0f})"),
                ("frames received but not analysed per second (the rate cap, or the model busy)", f"{skipped:.1f}"),
                ("event stage CPU, % of one core", f"{stage_cpu:.1f}"),
                ("detector CPU, % of one core", f"{det_cpu:.1f}"),
                ("MQTT / webhook messages dropped (queue full)", f"{mqtt_dropped:.0f} / {hook_dropped:.0f}"),
                ("producer frames read here", frames.frames),
            ]),
        ]
        text = report.write_section(out, BEGIN, END, lines)
        print(text)
        if not via_hook or not via_on:
            raise SystemExit("no events measured")
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
