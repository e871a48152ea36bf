#!/usr/bin/env bash
# Fuzzes every parser that reads bytes from the network or from users with
# cargo-fuzz (libFuzzer): each target listed in fuzz/Cargo.toml runs for
# SECONDS (default 300; scripts/test.sh runs 20), starting from the committed
# seeds in fuzz/corpus/<target>/ plus what earlier runs found (fuzz/target/corpus/).
# Fails on the first crash; the input is left in fuzz/artifacts/<target>/ —
# turn it into a regression test next to the code it broke.
#
#   scripts/fuzz.sh            # 5 minutes per target
#   scripts/fuzz.sh 20         # the test command's short run
#   scripts/fuzz.sh 600 multipart   # one target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
shift || true

# cargo-fuzz passes -Z flags to rustc, which only nightly accepts; this
# project builds on stable, where RUSTC_BOOTSTRAP=1 lets them through (only
# for these instrumented builds in fuzz/target).
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz missing; run scripts/setup.sh" >&2; exit 1; }

targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
# Debug assertions on (overflow checks); no sanitizer: the code under test
# forbids unsafe, and ASan would double the build for the few dependencies
# that use it.
flags=(--fuzz-dir fuzz --sanitizer none --debug-assertions)
for t in "${targets[@]}"; do cargo fuzz build "${flags[@]}" "$t"; done
for t in "${targets[@]}"; do
  mkdir -p "fuzz/target/corpus/$t"
  echo "fuzz: $t for ${seconds}s"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or a
  # huge allocation; both count as failures.
  cargo fuzz run "${flags[@]}" "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    2>"fuzz/target/$t.log" || { tail -40 "fuzz/target/$t.log"; echo "fuzz: $t FAILED (input in fuzz/artifacts/$t/)" >&2; exit 1; }
  grep -E '^stat::number_of_executed_units|^Done' "fuzz/target/$t.log" | tr '\n' ' '; echo
done
