#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit tests and the
# end-to-end tests that start the real binaries on loopback. Everything is
# built with all features, so the camera sources (FFmpeg, V4L2) are tested too.
# Installs what it needs first (scripts/setup.sh), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings
# A plain `cargo build` (no camera features) must stay warning-free too.
cargo clippy -p frame-producer --all-targets --quiet -- -D warnings
echo "== build binaries (the end-to-end tests run them)"
cargo build --workspace --bins --all-features --quiet
echo "== cargo test"
cargo test --workspace --all-features --quiet -- --test-threads=2
echo "== benchmark smoke run (scripts/bench.sh --smoke)"
scripts/bench.sh --smoke
