#!/usr/bin/env bash
# Scale-out run on PostgreSQL (a benchmark, not a test); `scripts/scale.sh --store postgres [N]`
# runs this. N holds per round (default 20000); APPROVALS (default 2000), CONNECTIONS
# (concurrent agents holding, default 64), INSTANCES (default "1 2 3"), SCALE_DIR (kept).
#
# Starts a throwaway PostgreSQL cluster (initdb/pg_ctl on the work directory, fsync on, as the
# `postgres` user when run as root), a local TLS upstream, and for each round a fresh database
# and that many release `airlock serve` processes sharing it (one CA directory and data
# directory, as "Scaling out" in the README asks). A baseline round on redb (one instance) is
# measured in the same run. Each round:
#  1. N holds (DELETE /repos/..., 24 h expiry) spread evenly over the instances, one load tool
#     per instance at once: holds/s of all together, p50/p99 of each hold;
#  2. APPROVALS approvals through the admin APIs, connections spread over the instances:
#     approvals/s (each sends upstream once, exactly once across instances);
#  3. every instance must count exactly APPROVALS executed reviews (the run fails otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
APPROVALS=${APPROVALS:-2000}
CONNECTIONS=${CONNECTIONS:-64}
INSTANCES=${INSTANCES:-"1 2 3"}
cargo build --release --quiet --bin airlock --bin airlock-bench
work=${SCALE_DIR:-$(mktemp -d /tmp/airlock-scale-pg.XXXXXX)}
mkdir -p "$work"
chmod 755 "$work"
bin=target/release
UP_PORT=${UP_PORT:-19643}; BASE_PORT=${BASE_PORT:-18280}; PG_PORT=${PG_PORT:-18299}
PIDS=(); UP_PID=; PG_CTL=; PG_DATA="$work/pg/data"; RUN_AS=()

pg_bin() {
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}
PGBIN=$(pg_bin)
[ -x "$PGBIN/initdb" ] || { echo "no initdb: install PostgreSQL (Debian: apt-get install postgresql)" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then
  if id postgres >/dev/null 2>&1; then RUN_AS=(runuser -u postgres --); else RUN_AS=(runuser -u nobody --); fi
fi
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_all
  [ -n "$UP_PID" ] && kill "$UP_PID" 2>/dev/null || true
  [ -n "$PG_CTL" ] && "${RUN_AS[@]}" "$PG_CTL" stop -m fast -D "$PG_DATA" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== PostgreSQL cluster ($("$PGBIN/postgres" --version)) on 127.0.0.1:$PG_PORT, fsync on"
mkdir -p "$work/pg"
[ ${#RUN_AS[@]} -gt 0 ] && chown "${RUN_AS[2]}" "$work/pg"
"${RUN_AS[@]}" "$PGBIN/initdb" -A trust -U postgres -E UTF8 -D "$PG_DATA" >"$work/pg/initdb.log"
PG_CTL="$PGBIN/pg_ctl"
"${RUN_AS[@]}" "$PG_CTL" start -w -t 60 -D "$PG_DATA" -l "$work/pg/log" \
  -o "-p $PG_PORT -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200 ${PG_EXTRA:-}" >/dev/null
psql_do() { psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "$1"; }

$bin/airlock-bench --init-upstream-ca "$work/up" >/dev/null
$bin/airlock-bench --serve-upstream --upstream-ca-dir "$work/up" --upstream-port "$UP_PORT" \
  --host api.github.com >"$work/upstream.out" &
UP_PID=$!

write_config() { # $1: round, $2: instance, $3: store section
  local proxy=$((BASE_PORT + 2 * $2)) admin=$((BASE_PORT + 2 * $2 + 1))
  cat >"$work/$1/airlock-$2.toml" <<EOF
[proxy]
listen = "127.0.0.1:$proxy"
[admin]
listen = "127.0.0.1:$admin"
[tls]
ca_dir = "$work/$1/certs"
[store]
path = "$work/$1/data"
$3
[gate]
max_pending_per_agent = 0
review_expiry = "24h"
[upstream]
extra_ca_files = ["$work/up/upstream-ca.pem"]
resolve = { "api.github.com" = "127.0.0.1:$UP_PORT" }
EOF
}
start() { # $1: round, $2: instance; waits for /readyz
  local admin=127.0.0.1:$((BASE_PORT + 2 * $2 + 1))
  NO_COLOR=1 AIRLOCK_LOG=warn $bin/airlock --config "$work/$1/airlock-$2.toml" serve \
    >>"$work/$1/airlock-$2.out" 2>>"$work/$1/airlock-$2.err" &
  local pid=$!
  PIDS+=("$pid")
  until curl -fsS -o /dev/null "http://$admin/readyz" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "airlock exited; see $work/$1/airlock-$2.err" >&2; exit 1; }
    sleep 0.05
  done
}
executed() { # $1: round, $2: instance; the executed count that instance reports
  curl -fsS -H "authorization: Bearer $(cat "$work/$1/data/admin-token")" \
    "http://127.0.0.1:$((BASE_PORT + 2 * $2 + 1))/v1/reviews?limit=1" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["totals"].get("executed", 0))'
}

round() { # $1: name, $2: instances, $3: store section
  local name=$1 k=$2 store=$3 i
  mkdir -p "$work/$name"
  for ((i = 0; i < k; i++)); do write_config "$name" "$i" "$store"; done
  local token
  token=$($bin/airlock --config "$work/$name/airlock-0.toml" agents add scale-agent 2>/dev/null)
  for ((i = 0; i < k; i++)); do start "$name" "$i"; done
  local per=$((N / k)) loads=()
  for ((i = 0; i < k; i++)); do
    $bin/airlock-bench --upstream-port 0 --host api.github.com --requests "$per" \
      --method DELETE --path "/repos/scale/$name-$i-{n}" --expect-status 423 \
      --proxy "http://127.0.0.1:$((BASE_PORT + 2 * i))" --proxy-auth "scale-agent:$token" \
      --ca "$work/$name/certs/ca.pem" --connections $((CONNECTIONS / k)) --json \
      >"$work/$name/hold-$i.json" 2>"$work/$name/hold-$i.err" &
    loads+=($!)
  done
  wait "${loads[@]}" || { echo "$name: a load tool failed; see $work/$name/hold-*.err" >&2; exit 1; }
  python3 - "$work/$name" "$k" "$name" <<'PY'
import glob, json, sys
d, k, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
reports = [json.load(open(f))[0] for f in sorted(glob.glob(d + "/hold-*.json"))]
if len(reports) != k:
    sys.exit(f"{name}: {len(reports)} of {k} load reports; see {d}/hold-*.err")
n = sum(r["requests"] for r in reports)
errors = sum(r["errors"] for r in reports)
secs = max(r["requests"] / r["rps"] for r in reports)
p50 = sorted(r["p50_us"] for r in reports)[len(reports) // 2] / 1e3
p99 = max(r["p99_us"] for r in reports) / 1e3
print(f"   {name}: held {n} ({errors} errors): {n / secs:.0f} holds/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
PY
  local admins=""
  for ((i = 0; i < k; i++)); do admins+="${admins:+,}127.0.0.1:$((BASE_PORT + 2 * i + 1))"; done
  $bin/airlock-bench --approve "$APPROVALS" --admin "$admins" \
    --admin-token-file "$work/$name/data/admin-token" --connections 16 | sed "s/^/   $name: /"
  for ((i = 0; i < k; i++)); do
    local done_here
    done_here=$(executed "$name" "$i")
    [ "$done_here" -eq "$APPROVALS" ] ||
      { echo "   $name: instance $i counts $done_here executed for $APPROVALS approvals" >&2; exit 1; }
  done
  echo "   $name: every instance counts $APPROVALS executed"
  stop_all
}

echo "== redb, 1 instance (baseline, same run)"
round redb 1 'backend = "redb"'
for k in $INSTANCES; do
  echo "== postgres, $k instance(s) on one database"
  psql_do "CREATE DATABASE scale_$k"
  round "pg$k" "$k" "backend = \"postgres\"
url = \"postgres://postgres@127.0.0.1:$PG_PORT/scale_$k\""
done
echo "work directory (kept): $work"
