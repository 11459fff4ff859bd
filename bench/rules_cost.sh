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

source "$ROOT/bench/lib.sh"
bench_setup 10
declare -A PORTS
for cfg in plain rules; do
  python3 "$ROOT/bench/bench_config.py" "$PG" "$cfg" >"$DIR/$cfg.yaml"
  start_pgveil "$DIR/$cfg.yaml" "$DIR/$cfg.log"
  PORTS[$cfg]=$VEIL_PORT
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
