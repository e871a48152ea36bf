#!/usr/bin/env bash
# Benchmarks: builds release binaries and runs them.
#   scripts/bench.sh                    fan-out (about 10 minutes): bench/report.md, bench/plot.svg
#   scripts/bench.sh --sources          producer cost per frame by source (about 1 minute): bench/sources.md
#   scripts/bench.sh --multicore ...    gateway with K threads vs. K floor servers (scripts/bench_multicore.py --help)
#   scripts/bench.sh --wall             16 cameras: pages over one WebSocket vs. one MJPEG stream per camera
#   scripts/bench.sh --overlay          1000 pages asking for detections, detections flowing vs. not:
#                                       gateway CPU per frame (about 2 minutes): a section of bench/report.md
#   scripts/bench.sh --balanced         balancing tiers on Docker against straight to the gateways
#                                       (about 3 minutes): a section of bench/report.md
#   scripts/bench.sh --subscribe        one producer of 16 cameras, 4 gateways, viewers on 2 cameras:
#                                       bytes into each gateway and producer CPU, --subscribe all
#                                       vs. on-demand (about 1 minute): a section of bench/report.md
#   scripts/bench.sh --detect           the object detector: inference per frame p50/p99, its CPU at
#                                       5 fps, capture-to-detections delay (about 2 minutes):
#                                       a section of bench/report.md
#   scripts/bench.sh --record           16 cameras at 1280x720 recorded continuously: recorder CPU,
#                                       bytes per camera-hour, write p99, gateway CPU per frame
#                                       with and without it (about 1.5 minutes): a section of bench/report.md
#   scripts/bench.sh --h264             an H.264 camera's own stream recorded against the bus's JPEGs:
#                                       bytes per camera-hour and the producer's decode+encode CPU
#   scripts/bench.sh --ab DIR          this tree's gateway against DIR/stream-gateway (an earlier
#                                       build), fan-out and wall, alternating turns (about 4 minutes):
#                                       a section of bench/report.md
#   scripts/bench.sh --events           16 cameras, real detector at 5 fps each, event stage to
#                                       mosquitto and a webhook: person-on-camera to MQTT ON /
#                                       webhook p50/p99, event stage CPU (about 1.5 minutes):
#                                       a section of bench/report.md (scripts/bench_events.py)
#   scripts/bench.sh --renditions       16 cameras 1280x720: the page's bytes/s and producer CPU with
#                                       renditions vs. full pictures, a viewer behind 2 Mbit/s (tc tbf,
#                                       needs root) with width=auto, gateway CPU per frame spread over
#                                       three renditions vs. one (about 2 minutes): a section of bench/report.md
#   scripts/bench.sh --tls              1000 viewers over HTTP, over the gateway's own HTTPS (TLS 1.3
#                                       AES-128-GCM, ChaCha20) and through nginx terminating TLS:
#                                       server CPU per frame, fps, p99, RSS per viewer (about 3 minutes):
#                                       a section of bench/report.md (scripts/bench_tls.py)
#   scripts/bench.sh --smoke            a few seconds of each, for CI; writes bench/tmp/
# The smoke run only checks that the benchmarks work and their clients see
# every frame intact; it uses the debug binaries the test command built, so
# CI needs no release build. Its figures mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--smoke" ]; then
  scripts/setup.sh          # the ffmpeg tool makes the test videos
  cargo build --workspace --bins --all-features --quiet
  export BENCH_BIN_DIR=target/debug
  python3 scripts/bench.py --smoke
  python3 scripts/bench_multicore.py --smoke
  python3 scripts/bench_detect.py --smoke
  python3 scripts/bench_events.py --smoke
  python3 scripts/bench_record.py --smoke
  python3 scripts/bench_tls.py --smoke
  exec python3 scripts/bench_sources.py --smoke
fi
if [ "${1:-}" = "--sources" ] || [ "${1:-}" = "--detect" ] || [ "${1:-}" = "--events" ] || [ "${1:-}" = "--tls" ]; then
  scripts/setup.sh          # test videos; the detector's model and test pictures; mosquitto; nginx
else
  scripts/setup.sh --build-only
fi
cargo build --release --quiet --features frame-producer/cameras -p frame-producer -p stream-gateway -p stream-director -p loadgen -p object-detector -p frame-recorder -p event-stage
case "${1:-}" in
  --events) shift; exec python3 scripts/bench_events.py "$@" ;;
  --tls) shift; exec python3 scripts/bench_tls.py "$@" ;;
  --sources) shift; exec python3 scripts/bench_sources.py "$@" ;;
  --balanced) shift
    APP_IMAGE=mjpeg-fanout:bench scripts/docker-images.sh --bins target/release
    exec python3 scripts/bench_balanced.py "$@" ;;
  --multicore) shift; exec python3 scripts/bench_multicore.py "$@" ;;
  --wall) shift; exec python3 scripts/bench_wall.py "$@" ;;
  --renditions) shift; exec python3 scripts/bench_renditions.py "$@" ;;
  --ab) shift; exec python3 scripts/bench_ab.py "$@" ;;
  --overlay) shift; exec python3 scripts/bench_overlay.py "$@" ;;
  --subscribe) shift; exec python3 scripts/bench_subscribe.py "$@" ;;
  --record) shift; exec python3 scripts/bench_record.py "$@" ;;
  --h264) shift; exec python3 scripts/bench_h264.py "$@" ;;
  --detect) shift
    cargo build --release --quiet -p object-detector --example bench_inference
    exec python3 scripts/bench_detect.py "$@" ;;
  *) exec python3 scripts/bench.py "$@" ;;
esac
