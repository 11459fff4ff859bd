#!/usr/bin/env bash
# The demo: PostgreSQL 15 on 127.0.0.1:54320 seeded with fake patient data (database clinic),
# pgveil in front of it on 127.0.0.1:6432 with examples/pgveil.yaml. Ctrl-C stops both.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
cd "$ROOT"

./scripts/install-deps.sh
./scripts/build.sh release

DEMO_DIR=${PGVEIL_DEMO_DIR:-/var/tmp/pgveil-demo}
PG_PORT=54320

cleanup() {
  trap - INT TERM EXIT
  echo
  echo "pgveil demo: stopping"
  [[ -n "${PGVEIL_PID:-}" ]] && kill -TERM "$PGVEIL_PID" 2>/dev/null && wait "$PGVEIL_PID" 2>/dev/null || true
  ./scripts/pg-cluster.sh stop "$DEMO_DIR"
}
trap cleanup INT TERM EXIT

./scripts/pg-cluster.sh stop "$DEMO_DIR"
./scripts/pg-cluster.sh start "$DEMO_DIR" "$PG_PORT"
if [[ ! -f "$DEMO_DIR/seeded-$(sha1sum examples/demo.sql | cut -c1-12)" ]]; then
  echo "pgveil demo: seeding database clinic (200,000 patients)..."
  ./scripts/pg-cluster.sh seed "$DEMO_DIR" "$PG_PORT"
  rm -f "$DEMO_DIR"/seeded-*
  touch "$DEMO_DIR/seeded-$(sha1sum examples/demo.sql | cut -c1-12)"
fi

cat <<TXT

pgveil demo is up.
  PostgreSQL (direct): 127.0.0.1:$PG_PORT   pgveil: 127.0.0.1:6432   database: clinic
  Connect through pgveil as each demo role (password = role name):
    psql "host=127.0.0.1 port=6432 dbname=clinic user=admin    password=admin"
    psql "host=127.0.0.1 port=6432 dbname=clinic user=support  password=support"
    psql "host=127.0.0.1 port=6432 dbname=clinic user=analyst  password=analyst"
    psql "host=127.0.0.1 port=6432 dbname=clinic user=intern   password=intern"
    psql "host=127.0.0.1 port=6432 dbname=clinic user=app      password=app"
  Try: SELECT full_name, email, phone FROM patients LIMIT 5;
  Limits: as intern, SELECT id FROM patients LIMIT 5000 is cut at 1,000 rows (with a warning).
  Canary: patient 4242 is the planted record; reading it (SELECT * FROM patients WHERE id = 4242)
  ends the session and locks the role out for 5 minutes.
  Admin endpoint: curl http://127.0.0.1:9930/metrics   (also /healthz, /sessions)
  Reload the configuration: kill -HUP \$(pgrep -f 'pgveil --config examples/pgveil.yaml')
  Press Ctrl-C to stop.

TXT

if [[ -z "${PGVEIL_MASKING_KEY:-}" ]]; then
  echo "pgveil demo: PGVEIL_MASKING_KEY is not set; using a demo key (set your own in production)"
  export PGVEIL_MASKING_KEY="pgveil-demo-key-not-for-production"
fi
./build-release/pgveil --config examples/pgveil.yaml &
PGVEIL_PID=$!
wait "$PGVEIL_PID"
