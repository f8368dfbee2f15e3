#!/usr/bin/env bash
# Cluster mode against one node: reliable 1:1 (50 pairs, window 16) and a
# broadcast to 5,000 online members (100 msg/s), on
#   - one node on SQLite (FULL durability), and
#   - two nodes with the record in PostgreSQL (synchronous_commit as the
#     server has it: on) and presence and wake-ups in Redis, senders on one
#     node and receivers on the other, so every message crosses nodes.
# Servers, PostgreSQL and Redis on core 0, the generator on core 1. The
# machine's PostgreSQL (127.0.0.1:5432, database test, a schema of the
# run's own) and Redis (127.0.0.1:6379, a namespace of the run's own) are
# used and pinned to core 0 for the run. About four minutes.
#
#   cargo build --release -p imkit-server -p imkit-bench
#   bench/cluster.sh [members]
set -u
cd "$(dirname "$0")/.."
MEMBERS=${1:-5000}
OUT=target/bench/cluster.jsonl; mkdir -p target/bench; : > $OUT
W=$(mktemp -d)
BENCH="taskset -c 1 target/release/imkit-bench"
BIN=target/release/imkit-server
PG=postgres://postgres@127.0.0.1:5432/test
SCHEMA=imkit_bench_$$
NS="imkit-bench-$$:"
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
pin() { for p in $(pgrep -x "$1"; pgrep -f "$2"); do taskset -a -p -c "$3" "$p" >/dev/null 2>&1; done; }
ALL="0-$(($(nproc) - 1))"
pin postgres "postgres:" 0; pin redis-server "redis-server" 0
cleanup() {
  kill ${P1:-} ${P2:-} 2>/dev/null
  pin postgres "postgres:" "$ALL"; pin redis-server "redis-server" "$ALL"
  psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" 2>/dev/null
  redis-cli --scan --pattern "$NS*" | xargs -r redis-cli del >/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
COMMON="--secret s --rate 1000000 --burst 1000000 --queue-len 4096"

run() {  # label, scenario, then its arguments
  local label=$1; shift
  timeout 300 $BENCH --out $OUT "$@" --secret s --label "$label" >/dev/null 2>$W/err || { echo "$label failed:"; tail -3 $W/err; }
}

# One node on SQLite.
start_sqlite() {
  rm -f $W/i.db*
  taskset -c 0 $BIN --tcp 127.0.0.1:18400 --ws off $COMMON --db $W/i.db --store sqlite --durability full >$W/n1.log 2>&1 & P1=$!
  wait_port 18400
}
start_sqlite
run "sqlite, 1 node" reliable --system imkit-tcp --addr 127.0.0.1:18400 --pid $P1 --pairs 50 --window 16 --secs 8
kill $P1; wait $P1 2>/dev/null
start_sqlite
timeout 300 $BENCH --out $OUT broadcast --system imkit-tcp --addr 127.0.0.1:18400 --pid $P1 --secret s --members $MEMBERS --rate 100 --secs 5 >/dev/null 2>$W/err || tail -3 $W/err
kill $P1; wait $P1 2>/dev/null

# Two nodes: PostgreSQL record, Redis presence and bus.
start_pg() {
  for n in 1 2; do
    taskset -c 0 $BIN --tcp 127.0.0.1:1840$((n * 2)) --ws off $COMMON --node "n$n" \
      --store postgres --postgres-url "$PG" --postgres-schema $SCHEMA --presence redis \
      --redis-namespace "$NS" >$W/pg$n.log 2>&1 &
    eval "P$n=$!"
    wait_port 1840$((n * 2)) || { echo "node $n did not start"; tail -5 $W/pg$n.log; exit 1; }
  done
}
start_pg
run "postgres, 2 nodes" reliable --system imkit-tcp --addr 127.0.0.1:18402 --receivers-addr 127.0.0.1:18404 --pid $P1 --pairs 50 --window 16 --secs 8
kill $P1 $P2; wait $P1 $P2 2>/dev/null
start_pg
timeout 300 $BENCH --out $OUT broadcast --system imkit-tcp --addr 127.0.0.1:18402 --receivers-addr 127.0.0.1:18404 --pid $P1 --secret s --members $MEMBERS --rate 100 --secs 5 >/dev/null 2>$W/err || tail -3 $W/err
python3 - <<'P'
import json
for l in open('target/bench/cluster.jsonl'):
    r=json.loads(l)
    keys=[k for k in ('per_second','p50_us','p99_us','server_cpu_share','generator_cpu_share','cpu_us_per_message') if k in r]
    print(r.get('label') or r.get('scenario'), {k: r[k] for k in keys})
P
