#!/usr/bin/env bash
# Bounded soak (not CI): a release `airlock serve` under mixed traffic (reads, 1 MiB streams,
# held deletes, a reviewer approving/rejecting) for N seconds (default 180); prints the server's
# RSS and open fds every 10 s and checks exactly-once and no fd leak at the end.
#   scripts/soak.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
AIRLOCK_SOAK_SECS=${1:-180} cargo test --release --locked --test soak -- --ignored --nocapture
