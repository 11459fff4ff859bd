#!/usr/bin/env bash
# Starts, seeds and stops a PostgreSQL 15 cluster on a loopback port, for the demo and the tests.
#   pg-cluster.sh start DIR PORT   initdb (first time) and start; as root, runs as user postgres
#   pg-cluster.sh seed  DIR PORT   load the demo roles and database clinic (examples/demo.sql)
#   pg-cluster.sh stop  DIR        fast shutdown
# The cluster has SSL on (self-signed certificate in DIR/data) and a socket in DIR.
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?usage: pg-cluster.sh start|seed|stop DIR [PORT]}
dir=${2:?DIR}
port=${3:-}

as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
  start)
    [[ -n "$port" ]] || { echo "pg-cluster.sh: PORT missing" >&2; exit 2; }
    mkdir -p "$dir"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$dir"
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
      as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
      as_pg openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/data/server.key" -out "$dir/data/server.crt" >/dev/null 2>&1
      chmod 600 "$dir/data/server.key"
      cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = ${PGVEIL_PG_MAX_CONNECTIONS:-300}
shared_buffers = 128MB
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF
      # md5 also accepts SCRAM secrets; the test-only roles cover trust and cleartext password.
      cat >"$dir/data/pg_hba.conf" <<HBA
local all all trust
host  all pgveil_trust    127.0.0.1/32 trust
host  all pgveil_password 127.0.0.1/32 password
host  all all             127.0.0.1/32 md5
HBA
    fi
    sed -i "s/^port = .*//" "$dir/data/postgresql.conf"
    echo "port = $port" >>"$dir/data/postgresql.conf"
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null \
      || { tail -20 "$dir/postgres.log" >&2; exit 1; }
    ;;
  seed)
    [[ -n "$port" ]] || { echo "pg-cluster.sh: PORT missing" >&2; exit 2; }
    psql=(as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres)
    "${psql[@]}" -d postgres <"$ROOT/examples/demo-roles.sql"
    if ! "${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'clinic'" | grep -q 1; then
      "${psql[@]}" -d postgres -c "CREATE DATABASE clinic"
    fi
    # demo.sql is read through stdin: user postgres may not be able to open files under $ROOT.
    "${psql[@]}" -d clinic <"$ROOT/examples/demo.sql"
    ;;
  stop)
    if [[ -f "$dir/data/postmaster.pid" ]]; then
      as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
    fi
    ;;
  *)
    echo "pg-cluster.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
