#!/usr/bin/env bash
# pgveil's resident memory with N idle client connections (default 1000), each with its
# upstream connection, for a masked role (the inspecting flow) and for an unmasked one (the
# byte relay), with the upstream over TLS (the demo's `tls: prefer`) and without. Loopback
# only; the idle clients are pgbench clients sleeping in a script.
#   N=1000 bench/idle_rss.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-1000}
source "$ROOT/bench/lib.sh"
ulimit -n "$(ulimit -Hn)"
export PGVEIL_PG_MAX_CONNECTIONS=$((N + 100))
bench_setup 1
python3 "$ROOT/bench/bench_config.py" "$PG" plain | sed 's/max_clients: 1000/max_clients: 100000/' >"$DIR/pgveil.yaml"
# pgveil_trust has no role entry: the default (masked) policy; a second run makes it unmasked.
printf '\\sleep 20 s\n' >"$DIR/idle.sql"
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
measure() {  # label config
  start_pgveil "$2" "$DIR/pgveil.log"
  local port=$VEIL_PORT
  # One session first, so that catalogs and caches are loaded before the baseline.
  psql -X -q -h 127.0.0.1 -p "$port" -U pgveil_trust -d bench -c "SELECT 1" >/dev/null
  local before; before=$(rss_kb "$VEIL_PID")
  pgbench -n -c "$N" -j 2 -T 25 -f "$DIR/idle.sql" -h 127.0.0.1 -p "$port" -U pgveil_trust bench >"$DIR/pgbench.log" 2>&1 &
  local bench=$!
  local open=0
  for _ in $(seq 600); do
    open=$(curl -s "http://127.0.0.1:$(sed -n 's/.*admin endpoint listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$DIR/pgveil.log")/metrics" |
      awk '/^pgveil_connections_active / {print $2}')
    [[ "${open:-0}" -ge "$N" ]] && break
    sleep 0.1
  done
  sleep 2
  local during; during=$(rss_kb "$VEIL_PID")
  wait "$bench" || { echo "pgbench failed:"; tail -5 "$DIR/pgbench.log"; }
  printf '%-10s %6s idle sessions: RSS %6.1f MB (%6.1f MB before), %5.1f KB per session\n' "$1" "$open" \
    "$(echo "$during / 1024" | bc -l)" "$(echo "$before / 1024" | bc -l)" "$(echo "($during - $before) / $N" | bc -l)"
  kill "$VEIL_PID"; wait "$VEIL_PID" 2>/dev/null || true
}
sed -e 's/^  admin:$/  pgveil_trust:\n    unmasked: true\n  admin:/' -e 's/exempt: \[admin\]/exempt: [admin, pgveil_trust]/' "$DIR/pgveil.yaml" >"$DIR/unmasked.yaml"
# bench_config.py turns upstream TLS off (as pgbouncer's default); the TLS runs turn it back on.
sed 's/^  tls: disable /  tls: require /' "$DIR/pgveil.yaml" >"$DIR/masked-tls.yaml"
sed 's/^  tls: disable /  tls: require /' "$DIR/unmasked.yaml" >"$DIR/unmasked-tls.yaml"
grep -q "tls: require" "$DIR/masked-tls.yaml" || { echo "idle_rss: could not enable upstream TLS" >&2; exit 1; }
echo "upstream over TLS:"
measure masked "$DIR/masked-tls.yaml"
measure unmasked "$DIR/unmasked-tls.yaml"
echo "upstream without TLS:"
measure masked "$DIR/pgveil.yaml"
measure unmasked "$DIR/unmasked.yaml"
