#!/usr/bin/env bash
# Long versions of the fault tests (the test command runs short ones):
# a gateway frozen for FAULT_SECONDS (default 300) while the producer
# publishes camera-sized 720p frames at 30 fps; 50 viewers beside a 1 KB/s
# reader (SLOW_READER_BPS) and one that stops reading; churn.
#   scripts/soak.sh                 # about 12 minutes
#   FAULT_SECONDS=600 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export FAULT_SECONDS=${FAULT_SECONDS:-300}
# A 1 KB/s viewer needs minutes to show that its frame age levels off.
export SLOW_READER_BPS=${SLOW_READER_BPS:-1000}
cargo build --workspace --bins --all-features --quiet
cargo test --all-features -p stream-gateway --test faults --test abuse --test streaming -- --test-threads=1 --nocapture 2>&1 \
  | grep -E "^test |test result|producer RSS|released|cycles|catch|FAILED|panicked"
