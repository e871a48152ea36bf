#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit tests and the
# end-to-end tests that start the real binaries on loopback. Everything is
# built with all features, so the camera sources (FFmpeg, V4L2) are tested too.
# Installs what it needs first (scripts/setup.sh), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

phase() { echo "== $1   (${SECONDS}s so far)"; }

scripts/setup.sh
# The compose test needs a Debian base image made with debootstrap (minutes,
# mostly download): make it in the background while the code compiles.
base_pid=""
if docker info >/dev/null 2>&1; then
  mkdir -p target
  scripts/docker-images.sh --base-only >target/docker-base.log 2>&1 &
  base_pid=$!
fi

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "no import rings between the modules of any crate (scripts/import_cycles.py)"
python3 scripts/import_cycles.py
phase "cargo clippy"
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings
# A plain `cargo build` (no camera features) must stay warning-free too.
cargo clippy -p frame-producer --all-targets --quiet -- -D warnings
phase "build binaries (the end-to-end tests run them)"
cargo build --workspace --bins --all-features --quiet
if [ -n "$base_pid" ]; then
  phase "waiting for the Docker base image"
  wait "$base_pid" || { cat target/docker-base.log; exit 1; }
fi
phase "Python: the benchmarks' wire module against bytes from the Rust encoder"
(cd scripts && python3 -m unittest -q benchkit.test_wire)
phase "cargo nextest (tests of every crate side by side; .config/nextest.toml)"
cargo nextest run --workspace --all-features --no-tests=warn
phase "doc tests"
cargo test --workspace --all-features --doc --quiet
phase "fuzz: every target in fuzz/ for 20 s (scripts/fuzz.sh)"
scripts/fuzz.sh 20
phase "benchmark smoke run (scripts/bench.sh --smoke)"
scripts/bench.sh --smoke
phase "all passed"
