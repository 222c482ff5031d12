#!/usr/bin/env bash
# Direct vs through-Airlock comparison in one run, on loopback. Usage:
#   scripts/bench.sh [extra airlock-bench flags, e.g. --connections 64 --duration 20 --http2]
# Modes (airlock-bench flags, passed through):
#   --new-conn [--connections 1 --requests N]   every request on a fresh connection (TCP,
#       CONNECT, TLS, one request), to a known host; prints where the setup time goes.
#   --new-conn --new-hosts   ... every request to a host never seen before (bench.sh makes
#       BENCH_HOSTS names n<k>.bench.local known to Airlock; default 2000).
#   --stream-bytes N (BENCH_ROUNDS=R)   one N-byte download per round over one connection (MB/s);
#       Airlock's peak RSS is printed at the end.
# BENCH_MODE=tunnel measures Airlock as a blind CONNECT tunnel instead of intercepting: the
# floor any proxy pays here (a second TCP hop), without TLS termination or rules.
# BENCH_PIN=1 gives Airlock CPU 0 and the load tool and its upstream the other CPUs (taskset),
# in both the direct and the proxied runs, so the proxy does not take the load generator's CPU.
# BENCH_ROUNDS=N alternates direct and proxied runs N times and prints the median ratio.
# BENCH_MITM=1 also runs the same load through mitmdump (if installed) as an anchor, pinned as
# Airlock is under BENCH_PIN=1. mitmdump has no resolve override: the anchor names the upstream
# `localhost` and needs UP_PORT=443 (root).
# AIRLOCK_BIN=path runs another airlock binary (e.g. an older build) against the same load.
# BENCH_LOG=level sets Airlock's AIRLOCK_LOG (default info, as deployed: an access-log line per
# request, stderr to a file); BENCH_LOG=warn measures it without the access log.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin airlock --bin airlock-bench
bin=${CARGO_TARGET_DIR:-target}/release
AIRLOCK_BIN=${AIRLOCK_BIN:-$bin/airlock}
work=$(mktemp -d)
MITM_PID=
trap 'kill $AIRLOCK_PID ${MITM_PID} 2>/dev/null || true; rm -rf "$work"' EXIT
UP_PORT=${UP_PORT:-19443}
PROXY_PORT=${PROXY_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-18081}
MITM_PORT=${MITM_PORT:-18090}
"$bin/airlock-bench" --init-upstream-ca "$work/up" >/dev/null
cfg="$work/airlock.toml"; echo '[proxy]' >"$cfg"
# BENCH_WORKERS=N sets proxy.workers (0: connections share the main runtime; unset: one per core).
[ -n "${BENCH_WORKERS:-}" ] && echo "workers = $BENCH_WORKERS" >>"$cfg"
inspect=(--inspect-host bench.local); agent_ca="$work/certs/ca.pem"
if [ "${BENCH_MODE:-intercept}" = tunnel ]; then
  echo 'unknown_hosts = "tunnel"' >>"$cfg"
  inspect=(); agent_ca="$work/up/upstream-ca.pem"
fi
if [[ " $* " == *" --new-hosts "* ]]; then
  n=${BENCH_HOSTS:-2000}
  { echo "inspect_hosts = [$(seq -f '"n%g.bench.local"' -s, 0 $((n - 1)))]"
    echo '[upstream.resolve]'
    seq -f "\"n%g.bench.local\" = \"127.0.0.1:$UP_PORT\"" 0 $((n - 1)); } >>"$cfg"
fi
TOKEN=$("$AIRLOCK_BIN" --config "$cfg" agents add bench 2>/dev/null)
pin_airlock=(); pin_load=()
if [ "${BENCH_PIN:-0}" = 1 ]; then
  last=$(( $(nproc) - 1 ))
  [ "$last" -ge 1 ] || { echo "BENCH_PIN needs at least 2 CPUs" >&2; exit 2; }
  pin_airlock=(taskset -c 0); pin_load=(taskset -c "1-$last")
fi
AIRLOCK_LOG=${BENCH_LOG:-info} "${pin_airlock[@]}" "$AIRLOCK_BIN" --config "$cfg" serve \
  --listen 127.0.0.1:$PROXY_PORT --admin-listen 127.0.0.1:$ADMIN_PORT \
  --ca-dir "$work/certs" --data-dir "$work/data" \
  --resolve bench.local=127.0.0.1:$UP_PORT --upstream-ca "$work/up/upstream-ca.pem" \
  "${inspect[@]}" >"$work/airlock.out" 2>"$work/airlock.err" &
AIRLOCK_PID=$!
for _ in $(seq 600); do grep -q "proxy listening" "$work/airlock.out" 2>/dev/null && break; sleep 0.1; done
"${pin_load[@]}" "$bin/airlock-bench" --upstream-ca-dir "$work/up" --upstream-port $UP_PORT \
  --proxy http://127.0.0.1:$PROXY_PORT --proxy-auth "bench:$TOKEN" --ca "$agent_ca" --compare \
  --rounds "${BENCH_ROUNDS:-1}" --proxy-pid $AIRLOCK_PID "$@" | tee "$work/airlock-run.txt"
echo "airlock peak RSS: $(grep VmHWM /proc/$AIRLOCK_PID/status | awk '{print $2, $3}')"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min), $(nproc) CPUs"
if [ "${BENCH_MITM:-0}" = 1 ]; then
  if ! command -v mitmdump >/dev/null; then
    echo "mitmdump anchor: mitmdump is not installed; skipped"
    exit 0
  fi
  [ "$UP_PORT" = 443 ] || { echo "mitmdump anchor: needs UP_PORT=443; skipped"; exit 0; }
  # mitmdump trusts the bench upstream's CA; the load tool trusts mitmproxy's CA.
  "${pin_airlock[@]}" mitmdump --listen-host 127.0.0.1 --listen-port $MITM_PORT --set confdir="$work/mitm" \
    --set ssl_verify_upstream_trusted_ca="$work/up/upstream-ca.pem" \
    --set connection_strategy=lazy -q >"$work/mitm.out" 2>&1 &
  MITM_PID=$!
  for _ in $(seq 100); do [ -f "$work/mitm/mitmproxy-ca-cert.pem" ] && break; sleep 0.1; done
  sleep 1
  echo "--- the same load through mitmdump (anchor)"
  "${pin_load[@]}" "$bin/airlock-bench" --host localhost --upstream-ca-dir "$work/up" --upstream-port $UP_PORT \
    --proxy http://127.0.0.1:$MITM_PORT --ca "$work/mitm/mitmproxy-ca-cert.pem" --compare \
    --rounds "${BENCH_ROUNDS:-1}" --proxy-pid $MITM_PID "$@" | tee "$work/mitm-run.txt" || true
  # Each proxy against its own direct runs: the median ratio (or the one round's) and the median
  # CPU quotient, then Airlock's lead.
  ratio_of() { grep -oP '(median of \d+ rounds: \S+( \S+)? |proxy/direct = )\K[0-9.]+(?=x)' "$1" | tail -1; }
  cost_of() { grep -oP 'client\+upstream CPU per request: \K[0-9.]+' "$1" | tail -1; }
  ra=$(ratio_of "$work/airlock-run.txt"); rm=$(ratio_of "$work/mitm-run.txt")
  ca=$(cost_of "$work/airlock-run.txt"); cm=$(cost_of "$work/mitm-run.txt")
  if [ -n "$ra" ] && [ -n "$rm" ] && [ -n "$ca" ] && [ -n "$cm" ]; then
    python3 -c "print('lead over mitmdump: throughput %.1fx, CPU per request %.1fx' % ($ra / max($rm, 1e-9), $cm / max($ca, 1e-9)))"
  fi
fi
