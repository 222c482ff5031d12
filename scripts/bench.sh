#!/usr/bin/env bash
# Direct vs through-Airlock comparison in one run, on loopback. Usage:
#   scripts/bench.sh [extra airlock-bench flags, e.g. --connections 64 --duration 20 --http2]
# BENCH_MODE=tunnel measures Airlock as a blind CONNECT tunnel instead of intercepting: the
# floor any proxy pays here (a second TCP hop), without TLS termination or rules.
# BENCH_PIN=1 gives Airlock CPU 0 and the load tool and its upstream the other CPUs (taskset),
# in both the direct and the proxied runs, so the proxy does not take the load generator's CPU.
# BENCH_ROUNDS=N alternates direct and proxied runs N times and prints the median ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin airlock --bin airlock-bench
work=$(mktemp -d)
trap 'kill $AIRLOCK_PID 2>/dev/null || true; rm -rf "$work"' EXIT
UP_PORT=${UP_PORT:-19443}
PROXY_PORT=${PROXY_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-18081}
target/release/airlock-bench --init-upstream-ca "$work/up" >/dev/null
cfg="$work/airlock.toml"; echo '[proxy]' >"$cfg"
# BENCH_WORKERS=N sets proxy.workers (0: connections share the main runtime; unset: one per core).
[ -n "${BENCH_WORKERS:-}" ] && echo "workers = $BENCH_WORKERS" >>"$cfg"
inspect=(--inspect-host bench.local); agent_ca="$work/certs/ca.pem"
if [ "${BENCH_MODE:-intercept}" = tunnel ]; then
  echo 'unknown_hosts = "tunnel"' >>"$cfg"
  inspect=(); agent_ca="$work/up/upstream-ca.pem"
fi
TOKEN=$(target/release/airlock --config "$cfg" agents add bench 2>/dev/null)
pin_airlock=(); pin_load=()
if [ "${BENCH_PIN:-0}" = 1 ]; then
  last=$(( $(nproc) - 1 ))
  [ "$last" -ge 1 ] || { echo "BENCH_PIN needs at least 2 CPUs" >&2; exit 2; }
  pin_airlock=(taskset -c 0); pin_load=(taskset -c "1-$last")
fi
AIRLOCK_LOG=warn "${pin_airlock[@]}" target/release/airlock --config "$cfg" serve \
  --listen 127.0.0.1:$PROXY_PORT --admin-listen 127.0.0.1:$ADMIN_PORT \
  --ca-dir "$work/certs" --data-dir "$work/data" \
  --resolve bench.local=127.0.0.1:$UP_PORT --upstream-ca "$work/up/upstream-ca.pem" \
  "${inspect[@]}" >"$work/airlock.out" 2>"$work/airlock.err" &
AIRLOCK_PID=$!
for _ in $(seq 50); do grep -q "proxy listening" "$work/airlock.out" 2>/dev/null && break; sleep 0.1; done
"${pin_load[@]}" target/release/airlock-bench --upstream-ca-dir "$work/up" --upstream-port $UP_PORT \
  --proxy http://127.0.0.1:$PROXY_PORT --proxy-auth "bench:$TOKEN" --ca "$agent_ca" --compare \
  --rounds "${BENCH_ROUNDS:-1}" --proxy-pid $AIRLOCK_PID "$@"
echo "airlock peak RSS: $(grep VmHWM /proc/$AIRLOCK_PID/status | awk '{print $2, $3}')"
