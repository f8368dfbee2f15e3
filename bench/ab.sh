#!/usr/bin/env bash
# A quick before/after check of a hot-path change: reliable 1:1, 50 pairs,
# window 16, memory and SQLite FULL, this tree's release server against
# OLD_SERVER, twice, with Mosquitto QoS 1 beside them in the same run.
# Servers on core 0, the generator on core 1. About three minutes.
#
#   cargo build --release -p imkit-server -p imkit-bench
#   bench/ab.sh /path/to/older/imkit-server
set -u
cd "$(dirname "$0")/.."
OLD=${1:?usage: bench/ab.sh OLD_SERVER}
OUT=target/bench/ab.jsonl; mkdir -p target/bench; : > $OUT
W=$(mktemp -d)
BENCH="taskset -c 1 target/release/imkit-bench"
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
printf 'listener 18830 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\nmax_inflight_messages 0\nset_tcp_nodelay true\n' > $W/m.conf
taskset -c 0 mosquitto -c $W/m.conf >/dev/null 2>&1 & MQ=$!
wait_port 18830
for round in 1 2; do
for tag in new prev; do
  bin=target/release/imkit-server; [ $tag = prev ] && bin=$OLD
  for store in "memory" "sqlite --durability full"; do
    rm -f $W/i.db*
    taskset -c 0 $bin --tcp 127.0.0.1:18400 --ws 127.0.0.1:18401 --secret s --rate 1000000 --burst 1000000 --queue-len 4096 --db $W/i.db --store $store >/dev/null 2>&1 & P=$!
    wait_port 18400
    timeout 120 $BENCH reliable --system imkit-tcp --addr 127.0.0.1:18400 --pid $P --pairs 50 --window 16 --secs 8 --label "$tag $store r$round" --secret s --out $OUT >/dev/null 2>$W/err || tail -2 $W/err
    kill $P; wait $P 2>/dev/null
  done
done
timeout 120 $BENCH reliable --system mqtt --addr 127.0.0.1:18830 --pid $MQ --pairs 50 --window 16 --secs 8 --label "QoS 1 r$round" --out $OUT >/dev/null 2>$W/err || tail -2 $W/err
done
kill $MQ; rm -rf $W
python3 - <<'P'
import json
for l in open('target/bench/ab.jsonl'):
    r=json.loads(l)
    print(f"{r['label']:32} {r['per_second']:>9.0f}/s p99 {r['p99_us']:>8} µs  cpu {r['cpu_us_per_message']:.2f} µs/msg  srv {r['server_cpu_share']:.2f} gen {r['generator_cpu_share']:.2f}")
P
