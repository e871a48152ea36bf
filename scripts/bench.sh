#!/usr/bin/env bash
# Fan-out benchmark: builds release binaries and runs scripts/bench.py.
#   scripts/bench.sh           full run (about 10 minutes), writes bench/report.md and bench/plot.svg
#   scripts/bench.sh --smoke   a few seconds, for CI; writes bench/tmp/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --build-only
cargo build --release --quiet --features frame-producer/cameras -p frame-producer -p stream-gateway -p loadgen
exec python3 scripts/bench.py "$@"
