#!/usr/bin/env bash
# pgveil against PostgreSQL directly and against pgbouncer (session mode), on one machine:
#   - pgbench -S in simple, extended and prepared modes at 1, 8 and 32 clients
#   - a 1,000,000-row SELECT of the demo table, unmasked and masked, and COPY TO STDOUT of it
#   - connection set-up rate (connect, one query, disconnect)
# pgbench also runs through bench/bare_relay.cpp (one thread, epoll, read and write, nothing
# else): the yardstick for what any proxy costs on this machine.
# Targets are interleaved (A/B/C) and repeated; medians are reported. Everything runs on
# loopback against a throwaway cluster. Results: bench/results/results.csv and results.png.
#   REPS=3 DURATION=10 bench/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${REPS:-3}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-"1 8 32"}
MODES=${MODES:-"simple extended prepared"}
OUT="$ROOT/bench/results"
mkdir -p "$OUT"

B="$ROOT/build-release/bench/rows_bench"
source "$ROOT/bench/lib.sh"
bench_setup 10
BOUNCER=$(free_port)
BENCH_EXTRA_CLEANUP='[[ -f "$DIR/pgbouncer.pid" ]] && kill "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null || true'
echo "bench: cluster on 127.0.0.1:$PG"

# pgveil: the demo policy loaded; pgveil_trust has no role entry, so it is a masked role (the
# analyzer and the gate run on every statement) while pgbench's tables hold nothing classified.
# Limits and canaries are left out here (bench/rules_cost.sh measures them): the demo's limits
# would stop the 1M-row pulls.
python3 "$ROOT/bench/bench_config.py" "$PG" plain >"$DIR/pgveil.yaml"
start_pgveil "$DIR/pgveil.yaml" "$DIR/pgveil.log"
VEIL=$VEIL_PORT

cat >"$DIR/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PG
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER
auth_type = trust
auth_file = $DIR/userlist.txt
pool_mode = session
max_client_conn = 500
default_pool_size = 100
logfile = $DIR/pgbouncer.log
pidfile = $DIR/pgbouncer.pid
unix_socket_dir =
INI
# pgbouncer needs a user entry with a (dummy) password even for trust (pgbouncer issue 96).
printf '"pgveil_trust" "unused"\n"admin" "admin"\n"support" "support"\n' >"$DIR/userlist.txt"
[[ $(id -u) -eq 0 ]] && chown postgres: "$DIR/pgbouncer.ini" "$DIR/userlist.txt"
as_pg pgbouncer -d "$DIR/pgbouncer.ini"
for _ in $(seq 100); do [[ -f "$DIR/pgbouncer.pid" ]] && break; sleep 0.05; done
BOUNCER_PID=$(cat "$DIR/pgbouncer.pid")
RELAY=$(free_port)
"$ROOT/build-release/bench/bare_relay" "$RELAY" "$PG" 2>"$DIR/relay.log" &
BENCH_PIDS+=("$!")
for _ in $(seq 100); do grep -q listening "$DIR/relay.log" 2>/dev/null && break; sleep 0.05; done
echo "bench: pgveil on $VEIL, pgbouncer on $BOUNCER, bare relay on $RELAY; $(nproc) cores; $REPS repetitions of ${DURATION}s"

port_of() { case $1 in direct) echo "$PG" ;; pgbouncer) echo "$BOUNCER" ;; relay) echo "$RELAY" ;; pgveil) echo "$VEIL" ;; esac; }
RAW="$DIR/raw.csv"
: >"$RAW"

# pgbench: TPS and latency percentiles from a sampled per-transaction log.
run_pgbench() {  # target mode clients
  local port; port=$(port_of "$1")
  local prefix="$DIR/log-$1-$2-$3"
  rm -f "$prefix".*
  local outp
  outp=$(cd "$DIR" && pgbench -S -n -M "$2" -c "$3" -j "$(( $3 < 2 ? 1 : 2 ))" -T "$DURATION" -h 127.0.0.1 -p "$port" \
    -U pgveil_trust -l --log-prefix="$prefix" --sampling-rate=0.05 bench 2>&1) || { echo "$outp" >&2; return 1; }
  local tps; tps=$(echo "$outp" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  local p50 p99
  read -r p50 p99 < <(cat "$prefix".* 2>/dev/null | awk '{print $3}' | sort -n |
    awk '{a[NR]=$1} END {if (NR==0) {print "0 0"} else {print a[int(NR*0.5)+1]/1000, a[int(NR*0.99)+1]/1000}}')
  echo "pgbench-$2-c$3,$1,$tps,$p50,$p99" >>"$RAW"
}

SELECT_SQL="SELECT p.id, p.full_name, p.email, p.phone, p.nationality, p.created_at, g FROM patients p CROSS JOIN generate_series(1, 5) g"
run_rows() {  # target user label
  local port; port=$(port_of "$1")
  local rate
  read -r _ rate < <("$B" "host=127.0.0.1 port=$port dbname=clinic user=$2 password=$2" "$SELECT_SQL" 1)
  echo "$3,$1,$rate,," >>"$RAW"
}
run_copy() {  # target user
  local port; port=$(port_of "$1")
  local start end
  start=$(date +%s.%N)
  PGPASSWORD=$2 psql -X -q -h 127.0.0.1 -p "$port" -U "$2" -d clinic -c "COPY ($SELECT_SQL) TO STDOUT" >/dev/null
  end=$(date +%s.%N)
  echo "copy-1M-$2,$1,$(echo "1000000 / ($end - $start)" | bc -l),," >>"$RAW"
}
run_connect() {  # target: connections per second over DURATION/2 seconds
  local port; port=$(port_of "$1")
  local n=0 start end
  start=$(date +%s.%N)
  end=$(echo "$start + $DURATION / 2" | bc -l)
  while (( $(echo "$(date +%s.%N) < $end" | bc -l) )); do
    psql -X -q -h 127.0.0.1 -p "$port" -U pgveil_trust -d bench -c "SELECT 1" >/dev/null
    n=$((n + 1))
  done
  echo "connect-query-disconnect,$1,$(echo "$n / ($(date +%s.%N) - $start)" | bc -l),," >>"$RAW"
}

for rep in $(seq "$REPS"); do
  echo "bench: repetition $rep/$REPS"
  for mode in $MODES; do
    for c in $CLIENTS; do
      for target in direct pgbouncer relay pgveil; do run_pgbench "$target" "$mode" "$c"; done
    done
  done
  for target in direct pgbouncer pgveil; do run_rows "$target" admin select-1M-unmasked; done
  for target in direct pgveil; do run_rows "$target" support select-1M-masked; done
  for target in direct pgbouncer pgveil; do run_copy "$target" admin; done
  for target in direct pgbouncer pgveil; do run_connect "$target"; done
done

# Medians per (benchmark, target), ratios against direct and pgbouncer.
python3 - "$RAW" "$OUT" "$(nproc)" "$REPS" "$DURATION" <<'PY'
import csv, statistics, sys, collections
raw, out, cores, reps, duration = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
rows = collections.defaultdict(list)
for r in csv.reader(open(raw)):
    if len(r) < 3 or not r[2]:
        continue
    rows[(r[0], r[1])].append((float(r[2]), float(r[3]) if r[3] else None, float(r[4]) if r[4] else None))
def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None
bench_names = sorted({b for b, _ in rows}, key=lambda b: (b.split('-')[0], b))
table = []
for b in bench_names:
    res = {t: (med([x[0] for x in rows[(b, t)]]), med([x[1] for x in rows[(b, t)]]), med([x[2] for x in rows[(b, t)]]))
           for t in ("direct", "pgbouncer", "relay", "pgveil") if (b, t) in rows}
    d = res.get("direct", (None,))[0]
    pb = res.get("pgbouncer", (None,))[0]
    v = res.get("pgveil", (None,))[0]
    rl = res.get("relay", (None,))[0]
    table.append((b, res, (v / d) if v and d else None, (v / pb) if v and pb else None, (v / rl) if v and rl else None))
with open(f"{out}/results.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["benchmark", "target", "rate", "p50_ms", "p99_ms"])
    for b, res, _, _, _ in table:
        for t, (rate, p50, p99) in res.items():
            w.writerow([b, t, f"{rate:.1f}", "" if p50 is None else f"{p50:.3f}", "" if p99 is None else f"{p99:.3f}"])
print(f"\npgveil benchmarks: {cores} cores, median of {reps} interleaved repetitions, {duration}s per pgbench run")
print(f"{'benchmark':28} {'direct':>11} {'pgbouncer':>11} {'bare relay':>11} {'pgveil':>11} {'veil/direct':>11} "
      f"{'veil/bouncer':>12} {'veil/relay':>10}  p50/p99 ms (pgveil)")
for b, res, rd, rb, rr in table:
    cell = lambda t: f"{res[t][0]:11.0f}" if t in res and res[t][0] else f"{'-':>11}"
    lat = res.get("pgveil", (None, None, None))
    lats = f"{lat[1]:.3f}/{lat[2]:.3f}" if lat[1] is not None else ""
    print(f"{b:28} {cell('direct')} {cell('pgbouncer')} {cell('relay')} {cell('pgveil')} "
          f"{(f'{rd:.2f}' if rd else '-'):>11} {(f'{rb:.2f}' if rb else '-'):>12} {(f'{rr:.2f}' if rr else '-'):>10}  {lats}")
PY
if command -v gnuplot >/dev/null; then
  grep '^pgbench' "$OUT/results.csv" | awk -F, '{print $1","$2","$3}' >"$DIR/plot.csv"
  python3 - "$DIR/plot.csv" "$DIR/plot.dat" <<'PY'
import sys, collections
d = collections.OrderedDict()
for line in open(sys.argv[1]):
    b, t, r = line.strip().split(",")
    d.setdefault(b, {})[t] = r
with open(sys.argv[2], "w") as f:
    for b, v in d.items():
        f.write(f"{b} {v.get('direct', 0)} {v.get('pgbouncer', 0)} {v.get('relay', 0)} {v.get('pgveil', 0)}\n")
PY
  gnuplot <<GP
set terminal png size 1400,600
set output "$OUT/results.png"
set title "pgbench -S TPS: direct, pgbouncer (session), bare relay, pgveil ($(nproc) cores)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8
set xtics rotate by -30
set ylabel "TPS"
set yrange [0:*]
plot "$DIR/plot.dat" using 2:xtic(1) title "direct", "" using 3 title "pgbouncer", "" using 4 title "bare relay", "" using 5 title "pgveil"
GP
  echo "bench: wrote $OUT/results.csv and $OUT/results.png"
fi
