#!/usr/bin/env bash
# Hold-queue scale run (a benchmark, not a test). Usage:
#   scripts/scale.sh [N]          N pending reviews (default 100000)
#   scripts/scale.sh --store postgres [N]   holds/s and approvals/s with 1, 2 and 3 instances
#                                 on one PostgreSQL database, against redb in the same run
#                                 (scripts/scale-postgres.sh; N holds per round, default 20000)
# Environment: SWEEP (overdue reviews expired in one measured sweep, default N), TOTAL (reviews
# ever held, default N + SWEEP; the rest is held and expired first, unmeasured), APPROVALS
# (default 2000), CONNECTIONS (concurrent agents holding, default 64), SCALE_DIR (work
# directory; kept), STOP_AFTER_HISTORY=1 (stop Airlock once the SWEEP overdue reviews are held,
# before they are swept: copy "$SCALE_DIR/data" to time the sweep again and again),
# AIRLOCK_BIN_DIR (run the airlock and airlock-bench binaries there instead of building).
#
# Phases, each against a release `airlock serve` on loopback with the shipped catalog:
#  1. history: TOTAL - N - SWEEP reviews held with a 5 s expiry, then SWEEP more; each batch is
#     swept at the next restart (holds/s of both, sweep time of the second: SWEEP overdue);
#  2. restart: time to /readyz, and the sweep of SWEEP overdue reviews (its time is logged);
#  3. hold N pending reviews (24 h expiry): holds/s;
#  4. at rest: RSS and idle CPU over 10 s;
#  5. first page of the API, the CLI and the dashboard (median of 5), and peak RSS while two
#     `reviews list --all` run at once;
#  6. kill -9 and restart at once: time to /readyz (the lock wait included);
#  7. APPROVALS approvals through the admin API: approvals/s (each sends upstream once).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--store" ]; then
  case "${2:-}" in
    postgres) shift 2; exec scripts/scale-postgres.sh "$@" ;;
    redb) shift 2 ;;
    *) echo "--store postgres|redb" >&2; exit 2 ;;
  esac
fi
N=${1:-100000}
SWEEP=${SWEEP:-$N}
TOTAL=${TOTAL:-$((N + SWEEP))}
EARLIER=$((TOTAL - N - SWEEP)); [ "$EARLIER" -lt 0 ] && EARLIER=0
APPROVALS=${APPROVALS:-2000}
CONNECTIONS=${CONNECTIONS:-64}
# AIRLOCK_BIN_DIR: run these already built binaries (airlock, airlock-bench), e.g. to compare two
# builds on copies of one store; default: build target/release.
bin=${AIRLOCK_BIN_DIR:-target/release}
[ -n "${AIRLOCK_BIN_DIR:-}" ] || cargo build --release --quiet --bin airlock --bin airlock-bench
work=${SCALE_DIR:-$(mktemp -d /tmp/airlock-scale.XXXXXX)}
mkdir -p "$work"
UP_PORT=${UP_PORT:-19543}; PROXY_PORT=${PROXY_PORT:-18180}; ADMIN_PORT=${ADMIN_PORT:-18181}
ADMIN=127.0.0.1:$ADMIN_PORT
AIRLOCK_PID=; UP_PID=
cleanup() { kill "$AIRLOCK_PID" "$UP_PID" 2>/dev/null || true; }
trap cleanup EXIT
$bin/airlock-bench --init-upstream-ca "$work/up" >/dev/null
$bin/airlock-bench --serve-upstream --upstream-ca-dir "$work/up" --upstream-port "$UP_PORT" \
  --host api.github.com >"$work/upstream.out" &
UP_PID=$!
cfg="$work/airlock.toml"
write_config() { # $1: review expiry
  cat >"$cfg" <<EOF
[proxy]
listen = "127.0.0.1:$PROXY_PORT"
[admin]
listen = "$ADMIN"
[tls]
ca_dir = "$work/certs"
[store]
path = "$work/data"
[gate]
max_pending_per_agent = 0
review_expiry = "$1"
sweep_interval = "1h"
[upstream]
extra_ca_files = ["$work/up/upstream-ca.pem"]
resolve = { "api.github.com" = "127.0.0.1:$UP_PORT" }
EOF
}
write_config 5s
TOKEN=$($bin/airlock --config "$cfg" agents add scale-agent 2>/dev/null)
now_ms() { date +%s%3N; }
start_airlock() { # waits for /readyz; sets READY_MS (start to ready) and AIRLOCK_PID
  local t0; t0=$(now_ms)
  NO_COLOR=1 AIRLOCK_LOG=info $bin/airlock --config "$cfg" serve >>"$work/airlock.out" 2>>"$work/airlock.err" &
  AIRLOCK_PID=$!
  until curl -fsS -o /dev/null "http://$ADMIN/readyz" 2>/dev/null; do
    kill -0 "$AIRLOCK_PID" 2>/dev/null || { echo "airlock exited; see $work/airlock.err" >&2; exit 1; }
    sleep 0.02
  done
  READY_MS=$(( $(now_ms) - t0 ))
}
hold() { # $1: how many, $2: first number; prints the load tool's report line
  $bin/airlock-bench --upstream-port 0 --host api.github.com --requests "$1" \
    --method DELETE --path "/repos/scale/r{n}-$2" --expect-status 423 \
    --proxy "http://127.0.0.1:$PROXY_PORT" --proxy-auth "scale-agent:$TOKEN" \
    --ca "$work/certs/ca.pem" --connections "$CONNECTIONS" --json 2>/dev/null
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$AIRLOCK_PID/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$AIRLOCK_PID/stat"; }
held_line() { # the load tool's JSON report, in one line
  python3 -c 'import json, sys
r = json.load(sys.stdin)[0]
print("   held %d (%d errors): %.0f holds/s, p50 %.1f ms, p99 %.1f ms"
      % (r["requests"], r["errors"], r["rps"], r["p50_us"] / 1e3, r["p99_us"] / 1e3))'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

restart() { # stops Airlock, waits for the 5 s expiry to pass, starts it again
  kill "$AIRLOCK_PID"; wait "$AIRLOCK_PID" 2>/dev/null || true
  sleep 6
  start_airlock
}
swept() { # waits for the Nth "expired reviews" log line; prints it
  until [ "$(grep -c "expired reviews" "$work/airlock.err")" -ge "$1" ]; do sleep 0.2; done
  grep "expired reviews" "$work/airlock.err" | sed -n "$1p" | sed 's/^/   /'
}
echo "== 1. history: $EARLIER then $SWEEP reviews with a 5 s expiry"
start_airlock
sweeps=0
if [ "$EARLIER" -gt 0 ]; then
  hold "$EARLIER" e | held_line
  restart
  sweeps=$((sweeps + 1)); swept $sweeps
fi
hold "$SWEEP" h | held_line
if [ "${STOP_AFTER_HISTORY:-0}" = 1 ]; then
  kill "$AIRLOCK_PID"; wait "$AIRLOCK_PID" 2>/dev/null || true
  echo "stopped before the sweep; work directory (kept): $work"
  exit 0
fi

echo "== 2. restart with $SWEEP overdue ($((EARLIER + SWEEP)) reviews in all); the first sweep expires them"
sed -i 's/^review_expiry = .*/review_expiry = "24h"/' "$cfg"   # for what is held from now on
restart
echo "   restart to ready: $READY_MS ms"
sweeps=$((sweeps + 1)); swept $sweeps

echo "== 3. hold $N pending"
hold "$N" p | held_line

echo "== 4. at rest"
sleep 2
c0=$(cpu_ticks); sleep 10; c1=$(cpu_ticks)
hz=$(getconf CLK_TCK)
echo "   RSS at rest: $(( $(rss_kb) / 1024 )) MB; idle CPU: $(python3 -c "print(f'{($c1-$c0)/$hz/10*100:.2f}')") %"
du -sh "$work/data" | awk '{print "   store on disk: " $1}'

echo "== 5. first page (median of 5)"
api=$(for _ in 1 2 3 4 5; do curl -sS -o /dev/null -w '%{time_total}\n' \
  -H "authorization: Bearer $(cat "$work/data/admin-token")" \
  "http://$ADMIN/v1/reviews?state=pending"; done | median)
echo "   API  GET /v1/reviews?state=pending: $(python3 -c "print(f'{$api*1000:.1f}')") ms"
cli=$(for _ in 1 2 3 4 5; do t0=$(date +%s%N)
  $bin/airlock --config "$cfg" reviews list --state pending >/dev/null 2>&1
  echo $(( ($(date +%s%N) - t0) / 1000 )); done | median)
echo "   CLI  airlock reviews list --state pending: $(python3 -c "print(f'{$cli/1000:.1f}')") ms (process start included)"
jar="$work/cookies"
csrf=$(curl -sS -c "$jar" "http://$ADMIN/ui/login" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p')
curl -sS -b "$jar" -c "$jar" -o /dev/null -H "origin: http://$ADMIN" \
  --data-urlencode "csrf=$csrf" --data-urlencode "token=$(cat "$work/data/admin-token")" \
  "http://$ADMIN/ui/login"
ui=$(for _ in 1 2 3 4 5; do curl -sS -b "$jar" -o "$work/ui.html" -w '%{time_total}\n' \
  "http://$ADMIN/ui"; done | median)
grep -q 'id="total"' "$work/ui.html" || { echo "dashboard sign-in failed" >&2; exit 1; }
echo "   dashboard /ui (pending, soonest expiry first): $(python3 -c "print(f'{$ui*1000:.1f}')") ms; $(sed -n 's/.*id="total">\([^<]*\)<.*/\1/p' "$work/ui.html")"
echo 5 >"/proc/$AIRLOCK_PID/clear_refs" 2>/dev/null || true
t0=$(now_ms)
$bin/airlock --config "$cfg" reviews list --all --state pending 2>/dev/null | wc -l >"$work/listed.1" &
l1=$!
$bin/airlock --config "$cfg" reviews list --all 2>/dev/null | wc -l >"$work/listed.2" &
l2=$!
wait $l1 $l2
echo "   two full listings at once ($(cat "$work/listed.1") pending, $(cat "$work/listed.2") all): $(( $(now_ms) - t0 )) ms; Airlock peak RSS meanwhile: $(( $(awk '/VmHWM/ {print $2}' "/proc/$AIRLOCK_PID/status") / 1024 )) MB"

echo "== 6. kill -9, restart at once"
kill -9 "$AIRLOCK_PID"; wait "$AIRLOCK_PID" 2>/dev/null || true
start_airlock
echo "   restart to ready: $READY_MS ms"

echo "== 7. $APPROVALS approvals"
$bin/airlock-bench --approve "$APPROVALS" --admin "$ADMIN" \
  --admin-token-file "$work/data/admin-token" --connections 16 | sed 's/^/   /'
echo "   RSS after: $(( $(rss_kb) / 1024 )) MB"
echo "work directory (kept): $work"
