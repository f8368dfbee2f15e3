#!/bin/bash
# Usage: cargo build --release -p imkit-server -p imkit-bench && bench/webhooks.sh
# Servers on core 0; the generator and the Python sink on core 1. About two minutes.
# Reliable 1:1 on SQLite FULL with webhooks (message events) posting to a
# local sink, against the same without webhooks.
cd "$(dirname "$0")/.."
W=$(mktemp -d); OUT=target/bench/wh.jsonl; mkdir -p target/bench; : > $OUT
BENCH="taskset -c 1 target/release/imkit-bench"
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
taskset -c 1 python3 bench/webhook_sink.py 18900 > $W/sink.log 2>&1 & S=$!
wait_port 18900
for round in 1 2; do
for mode in off on; do
  rm -f $W/i.db*
  extra=""; [ $mode = on ] && extra="--webhook-url http://127.0.0.1:18900/events --webhook-secret s --webhook-events message"
  taskset -c 0 target/release/imkit-server --tcp 127.0.0.1:18400 --ws off --secret s --rate 1000000 --burst 1000000 --queue-len 4096 --db $W/i.db --store sqlite --durability full $extra >/dev/null 2>&1 & P=$!
  wait_port 18400
  before=$(tail -1 $W/sink.log | awk '{print $2}')
  timeout 120 $BENCH reliable --system imkit-tcp --addr 127.0.0.1:18400 --pid $P --pairs 50 --window 16 --secs 8 --label "webhooks $mode r$round" --secret s --out $OUT >/dev/null 2>$W/err || tail -2 $W/err
  sleep 3
  after=$(tail -1 $W/sink.log | awk '{print $2}')
  echo "webhooks $mode r$round: sink got $((after - before)) events; journal rows left: $(sqlite3 $W/i.db 'select count(*) from journal' 2>/dev/null)"
  kill $P; wait $P 2>/dev/null
done
done
kill $S
python3 - <<'P'
import json
for l in open('target/bench/wh.jsonl'):
    r=json.loads(l)
    print(f"{r['label']:24} {r['per_second']:>9.0f}/s p99 {r['p99_us']:>8} µs  cpu {r['cpu_us_per_message']:.2f} µs/msg  srv {r['server_cpu_share']:.2f} gen {r['generator_cpu_share']:.2f}")
P
rm -rf $W
