#!/usr/bin/env bash
# Builds and runs the system on this machine: one frame-producer (the test
# pattern), one stream-gateway and a frame-recorder (./recordings, playback
# on 127.0.0.1:8090, docs/recording.md). Open the URL it prints; Ctrl-C stops both.
# Flags and environment variables of both binaries work as usual, e.g.
#   PRODUCER_FPS=30 GATEWAY_LISTEN=0.0.0.0:9000 scripts/run.sh
#   PRODUCER_SOURCE=rtsp://user:pass@camera/stream1 PRODUCER_SIZE=1280x720 scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --build-only
cargo build --release --quiet --features frame-producer/cameras -p frame-producer -p stream-gateway -p stream-director -p loadgen -p object-detector -p frame-recorder

target/release/frame-producer &
producer=$!
target/release/stream-gateway &
gateway=$!
# The page (on the gateway's port) reads the recorder's API across origins.
RECORDER_ALLOW_ORIGIN=${RECORDER_ALLOW_ORIGIN:-*} target/release/frame-recorder &
recorder=$!
trap 'kill $producer $gateway $recorder 2>/dev/null; wait' INT TERM EXIT

port=${GATEWAY_LISTEN:-0.0.0.0:8080}
RECORDER_LISTEN=${RECORDER_LISTEN:-127.0.0.1:8090}
echo
echo "  Viewer page:  http://localhost:${port##*:}/"
echo "  Stream:       http://localhost:${port##*:}/video_feed"
echo "  With the recordings' timeline: http://localhost:${port##*:}/?recorder=http://localhost:${RECORDER_LISTEN##*:}"
echo "  Recordings:   http://127.0.0.1:${RECORDER_LISTEN##*:}/api/recordings  (files in ${RECORDER_DIR:-./recordings})"
echo "  (from another device on the LAN use this machine's address)"
echo
wait -n $producer $gateway $recorder
