# Shared by the bench scripts (sourced): a throwaway PostgreSQL cluster on a free loopback port,
# run as its own user, seeded with the demo and a pgbench database, and pgveil processes.
# The caller sets ROOT and calls bench_setup first; bench_cleanup runs on exit.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

BENCH_PIDS=()
bench_cleanup() {
  local p
  for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  [[ -n "${BENCH_EXTRA_CLEANUP:-}" ]] && eval "$BENCH_EXTRA_CLEANUP"
  "$ROOT/scripts/pg-cluster.sh" stop "$DIR"
  [[ -n "${KEEP:-}" ]] || rm -rf "$DIR"
}

# bench_setup [pgbench scale]: installs, builds Release, starts and seeds the cluster (clinic
# demo; role pgveil_trust with database bench when a scale is given). Sets DIR and PG.
bench_setup() {
  "$ROOT/scripts/install-deps.sh" --bench
  "$ROOT/scripts/build.sh" release >/dev/null
  DIR=$(mktemp -d /tmp/pgveil-bench.XXXXXX)
  chmod 755 "$DIR"
  PG=$(free_port)
  trap bench_cleanup EXIT
  "$ROOT/scripts/pg-cluster.sh" start "$DIR" "$PG"
  "$ROOT/scripts/pg-cluster.sh" seed "$DIR" "$PG"
  if [[ -n "${1:-}" ]]; then
    as_pg psql -X -q -h "$DIR" -p "$PG" -U postgres -d postgres -c "CREATE ROLE pgveil_trust LOGIN" \
      -c "CREATE DATABASE bench OWNER pgveil_trust"
    as_pg psql -X -q -h "$DIR" -p "$PG" -U postgres -d clinic -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgveil_trust"
    pgbench -q -i -s "$1" -h 127.0.0.1 -p "$PG" -U pgveil_trust bench >/dev/null 2>&1
  fi
  export PGVEIL_MASKING_KEY=${PGVEIL_MASKING_KEY:-bench-key-0123456789abcdef}
}

# start_pgveil CONFIG LOG: starts a Release pgveil; sets VEIL_PID and VEIL_PORT.
start_pgveil() {
  "$ROOT/build-release/pgveil" --config "$1" 2>"$2" &
  VEIL_PID=$!
  BENCH_PIDS+=("$VEIL_PID")
  local _
  for _ in $(seq 100); do grep -q "pgveil listening on" "$2" 2>/dev/null && break; sleep 0.05; done
  VEIL_PORT=$(sed -n 's/.*pgveil listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$2" | head -1)
  [[ -n "$VEIL_PORT" ]] || { echo "pgveil did not start:" >&2; cat "$2" >&2; return 1; }
}
