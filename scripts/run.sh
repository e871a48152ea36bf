#!/usr/bin/env bash
# Builds and runs the system on this machine: one frame-producer (the test
# pattern) and one stream-gateway. Open the URL it prints; Ctrl-C stops both.
# Flags and environment variables of both binaries work as usual, e.g.
#   PRODUCER_FPS=30 GATEWAY_LISTEN=0.0.0.0:9000 scripts/run.sh
#   PRODUCER_SOURCE=rtsp://user:pass@camera/stream1 PRODUCER_SIZE=1280x720 scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --build-only
cargo build --release --quiet --features frame-producer/cameras -p frame-producer -p stream-gateway -p stream-director -p loadgen -p object-detector

target/release/frame-producer &
producer=$!
target/release/stream-gateway &
gateway=$!
trap 'kill $producer $gateway 2>/dev/null; wait' INT TERM EXIT

port=${GATEWAY_LISTEN:-0.0.0.0:8080}
echo
echo "  Viewer page:  http://localhost:${port##*:}/"
echo "  Stream:       http://localhost:${port##*:}/video_feed"
echo "  (from another device on the LAN use this machine's address)"
echo
wait -n $producer $gateway
