#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), one after another, on one
# core. New inputs go to fuzz/corpus/<target>/ (minimise with `cargo +nightly fuzz cmin`), crashes
# to fuzz/artifacts/<target>/. Needs a nightly toolchain and `cargo install cargo-fuzz`.
# An input taking over 10 s or 2 GB counts as a crash. Extra libFuzzer flags: FUZZ_ARGS.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (see docs/fuzzing.md)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
failed=()
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s"
  mkdir -p "corpus/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  # shellcheck disable=SC2086 # FUZZ_ARGS is split into flags on purpose
  if ! cargo +nightly fuzz run "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ${FUZZ_ARGS:-}; then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/; reproduce with cargo +nightly fuzz run TARGET FILE)" >&2
  exit 1
fi
