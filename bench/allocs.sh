#!/usr/bin/env bash
# Heap allocations per transaction in pgveil's steady state, for pgbench -S in simple, extended
# and prepared modes, and for a transaction block in extended mode (BEGIN, two of -S's SELECTs,
# END) (8 clients, the demo policy: every statement goes through the analyzer).
# pgveil runs under heaptrack twice per mode, with two transaction counts; the difference in
# allocation calls over the difference in transactions leaves out start-up and connections.
#   bench/allocs.sh                 # MODES="simple extended prepared block" TX="300 1500" per client
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODES=${MODES:-simple extended prepared block}
read -r TX_LOW TX_HIGH <<<"${TX:-300 1500}"
CLIENTS=8
source "$ROOT/bench/lib.sh"
command -v heaptrack >/dev/null || { echo "allocs.sh: needs heaptrack (apt-get install -y heaptrack)" >&2; exit 1; }
bench_setup 1
python3 "$ROOT/bench/bench_config.py" "$PG" plain >"$DIR/pgveil.yaml"
cat >"$DIR/block.sql" <<'SQL'
\set aid random(1, 100000 * :scale)
BEGIN;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid + 1;
END;
SQL

calls() {  # mode transactions-per-client: allocation calls of a whole pgveil run
  local log="$DIR/veil-$1-$2.log" out="$DIR/heaptrack-$1-$2"
  heaptrack -o "$out" "$ROOT/build-release/pgveil" --config "$DIR/pgveil.yaml" >"$log.ht" 2>"$log" &
  local hp=$! port="" _
  for _ in $(seq 200); do
    port=$(sed -n 's/.*pgveil listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    [[ -n "$port" ]] && break
    sleep 0.1
  done
  [[ -n "$port" ]] || { echo "allocs.sh: pgveil did not start" >&2; cat "$log" >&2; exit 1; }
  local script=(-S -M "$1")
  [[ "$1" == block ]] && script=(-f "$DIR/block.sql" -M extended)
  timeout 300 pgbench "${script[@]}" -n -c "$CLIENTS" -j 2 -t "$2" -h 127.0.0.1 -p "$port" -U pgveil_trust bench \
    >"$DIR/pgbench-$1-$2.log" 2>&1 || { echo "allocs.sh: pgbench failed" >&2; tail -5 "$DIR/pgbench-$1-$2.log" >&2; }
  pkill -INT -f "build-release/pgveil --config $DIR/pgveil.yaml" || true
  wait "$hp" || true
  heaptrack_print -f "$out".*zst 2>/dev/null | sed -n 's/^calls to allocation functions: \([0-9]*\).*/\1/p'
}

printf '%-9s %14s %14s %18s\n' mode "calls (${TX_LOW}/client)" "calls (${TX_HIGH}/client)" "allocations per tx"
for mode in $MODES; do
  low=$(calls "$mode" "$TX_LOW")
  high=$(calls "$mode" "$TX_HIGH")
  per=$(echo "($high - $low) / (($TX_HIGH - $TX_LOW) * $CLIENTS)" | bc -l)
  printf '%-9s %14s %14s %18.2f\n' "$mode" "$low" "$high" "$per"
done
