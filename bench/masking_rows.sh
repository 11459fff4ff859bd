#!/usr/bin/env bash
# 1,000,000-row SELECT of 7 columns (3 classified: full_name, email, phone) directly, through
# pgveil as admin (unmasked) and as support (masked), interleaved, median of REPS runs each.
# Uses a throwaway cluster on a free loopback port; Release build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${REPS:-3}
source "$ROOT/bench/lib.sh"
bench_setup
PORT=$PG
python3 "$ROOT/bench/bench_config.py" "$PORT" plain >"$DIR/pgveil.yaml"
start_pgveil "$DIR/pgveil.yaml" "$DIR/pgveil.log"
PROXY=$VEIL_PORT
SQL="SELECT p.id, p.full_name, p.email, p.phone, p.nationality, p.created_at, g FROM patients p CROSS JOIN generate_series(1, 5) g"
B="$ROOT/build-release/bench/rows_bench"
declare -A best
for round in $(seq "$REPS"); do
  for target in direct unmasked masked; do
    case $target in
      direct) info="host=127.0.0.1 port=$PORT dbname=clinic user=admin password=admin" ;;
      unmasked) info="host=127.0.0.1 port=$PROXY dbname=clinic user=admin password=admin" ;;
      masked) info="host=127.0.0.1 port=$PROXY dbname=clinic user=support password=support" ;;
    esac
    read -r rows rate < <("$B" "$info" "$SQL" 1)
    best[$target]="${best[$target]:-} $rate"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
d=$(echo "${best[direct]}" | median)
u=$(echo "${best[unmasked]}" | median)
m=$(echo "${best[masked]}" | median)
echo "1,000,000-row SELECT, 7 columns (3 classified), libpq client, $(nproc) cores, median of $REPS"
printf "%-10s %12s %8s\n" target rows/s ratio
printf "%-10s %12.0f %8s\n" direct "$d" 1.00
printf "%-10s %12.0f %8.2f\n" unmasked "$u" "$(echo "$u / $d" | bc -l)"
printf "%-10s %12.0f %8.2f\n" masked "$m" "$(echo "$m / $d" | bc -l)"
