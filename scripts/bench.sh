#!/usr/bin/env bash
# Direct vs through-Airlock comparison in one run, on loopback. Usage:
#   scripts/bench.sh [extra airlock-bench flags, e.g. --connections 64 --duration 20 --http2]
# BENCH_MODE=tunnel measures Airlock as a blind CONNECT tunnel instead of intercepting: the
# floor any proxy pays here (a second TCP hop), without TLS termination or rules.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin airlock --bin airlock-bench
work=$(mktemp -d)
trap 'kill $AIRLOCK_PID 2>/dev/null || true; rm -rf "$work"' EXIT
UP_PORT=${UP_PORT:-19443}
PROXY_PORT=${PROXY_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-18081}
target/release/airlock-bench --init-upstream-ca "$work/up" >/dev/null
cfg="$work/airlock.toml"; : >"$cfg"
inspect=(--inspect-host bench.local); agent_ca="$work/certs/ca.pem"
if [ "${BENCH_MODE:-intercept}" = tunnel ]; then
  printf '[proxy]\nunknown_hosts = "tunnel"\n' >"$cfg"
  inspect=(); agent_ca="$work/up/upstream-ca.pem"
fi
TOKEN=$(target/release/airlock --config "$cfg" agents add bench 2>/dev/null)
AIRLOCK_LOG=warn target/release/airlock --config "$cfg" serve \
  --listen 127.0.0.1:$PROXY_PORT --admin-listen 127.0.0.1:$ADMIN_PORT \
  --ca-dir "$work/certs" --data-dir "$work/data" \
  --resolve bench.local=127.0.0.1:$UP_PORT --upstream-ca "$work/up/upstream-ca.pem" \
  "${inspect[@]}" >"$work/airlock.out" 2>"$work/airlock.err" &
AIRLOCK_PID=$!
for _ in $(seq 50); do grep -q "proxy listening" "$work/airlock.out" 2>/dev/null && break; sleep 0.1; done
target/release/airlock-bench --upstream-ca-dir "$work/up" --upstream-port $UP_PORT \
  --proxy http://127.0.0.1:$PROXY_PORT --proxy-auth "bench:$TOKEN" --ca "$agent_ca" --compare "$@"
echo "airlock peak RSS: $(grep VmHWM /proc/$AIRLOCK_PID/status | awk '{print $2, $3}')"
