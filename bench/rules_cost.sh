#!/usr/bin/env bash
# The cost of limits, exfiltration rules and canaries: pgbench -S through pgveil with the demo
# masking policy only ("plain") and with every limit, rule and canary checked ("rules"; none of
# them is reached by pgbench). Interleaved, repeated, medians; loopback only.
#   REPS=3 DURATION=10 CLIENTS=8 bench/rules_cost.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${REPS:-3}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-8}
MODES=${MODES:-"simple extended prepared"}

"$ROOT/scripts/install-deps.sh" --bench
"$ROOT/scripts/build.sh" release >/dev/null

DIR=$(mktemp -d /tmp/pgveil-rules.XXXXXX)
chmod 755 "$DIR"
PG=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
declare -A PIDS PORTS
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  "$ROOT/scripts/pg-cluster.sh" stop "$DIR"
  rm -rf "$DIR"
}
trap cleanup EXIT
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
"$ROOT/scripts/pg-cluster.sh" start "$DIR" "$PG"
"$ROOT/scripts/pg-cluster.sh" seed "$DIR" "$PG"
as_pg psql -X -q -h "$DIR" -p "$PG" -U postgres -d postgres -c "CREATE ROLE pgveil_trust LOGIN" -c "CREATE DATABASE bench OWNER pgveil_trust"
pgbench -q -i -s 10 -h 127.0.0.1 -p "$PG" -U pgveil_trust bench >/dev/null 2>&1
export PGVEIL_MASKING_KEY=${PGVEIL_MASKING_KEY:-bench-key-0123456789abcdef}
for cfg in plain rules; do
  python3 "$ROOT/bench/bench_config.py" "$PG" "$cfg" >"$DIR/$cfg.yaml"
  "$ROOT/build-release/pgveil" --config "$DIR/$cfg.yaml" 2>"$DIR/$cfg.log" &
  PIDS[$cfg]=$!
  for _ in $(seq 100); do grep -q "pgveil listening on" "$DIR/$cfg.log" 2>/dev/null && break; sleep 0.05; done
  PORTS[$cfg]=$(sed -n 's/.*pgveil listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$DIR/$cfg.log" | head -1)
done
echo "rules_cost: $(nproc) cores, $REPS repetitions of ${DURATION}s, $CLIENTS clients"
RAW="$DIR/raw.csv"
: >"$RAW"
for rep in $(seq "$REPS"); do
  for mode in $MODES; do
    for cfg in plain rules; do
      tps=$(pgbench -S -n -M "$mode" -c "$CLIENTS" -j 2 -T "$DURATION" -h 127.0.0.1 -p "${PORTS[$cfg]}" -U pgveil_trust bench 2>&1 |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p')
      echo "$mode,$cfg,$tps" >>"$RAW"
    done
  done
done
python3 - "$RAW" <<'PY'
import csv, statistics, sys, collections
d = collections.defaultdict(list)
for mode, cfg, tps in csv.reader(open(sys.argv[1])):
    d[(mode, cfg)].append(float(tps))
print(f"{'pgbench -S mode':16} {'plain TPS':>10} {'rules TPS':>10} {'rules/plain':>12}")
for mode in dict.fromkeys(m for m, _ in d):
    p, r = statistics.median(d[(mode, 'plain')]), statistics.median(d[(mode, 'rules')])
    print(f"{mode:16} {p:10.0f} {r:10.0f} {r / p:12.3f}")
PY
grep -c '"rule"' "$DIR/rules.log" >/dev/null && echo "rules_cost: alerts raised in the rules run (expected none):" && grep -o '"rule":"[a-z_.]*"' "$DIR/rules.log" | sort | uniq -c || true
