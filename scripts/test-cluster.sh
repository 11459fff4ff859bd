#!/usr/bin/env bash
# ctest fixture: a throwaway PostgreSQL 15 on a free loopback port, seeded with the demo data.
#   test-cluster.sh setup ENVFILE    start, seed, write PGVEIL_TEST_* variables to ENVFILE
#   test-cluster.sh cleanup ENVFILE  stop and remove
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?setup|cleanup}
envfile=${2:?ENVFILE}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case "$cmd" in
  setup)
    if [[ -f "$envfile" ]]; then "$0" cleanup "$envfile"; fi
    dir=$(mktemp -d /tmp/pgveil-test.XXXXXX)
    chmod 755 "$dir"
    port=$(free_port)
    "$ROOT/scripts/pg-cluster.sh" start "$dir" "$port"
    "$ROOT/scripts/pg-cluster.sh" seed "$dir" "$port"
    psql=(psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres)
    [[ $(id -u) -eq 0 ]] && psql=(runuser -u postgres -- "${psql[@]}")
    "${psql[@]}" -d postgres <<'SQL'
CREATE ROLE pgveil_test LOGIN SUPERUSER PASSWORD 'pgveil_test';
CREATE ROLE pgveil_trust LOGIN;
CREATE ROLE pgveil_password LOGIN PASSWORD 'pgveil_password';
SET password_encryption = 'md5';
CREATE ROLE pgveil_md5 LOGIN PASSWORD 'pgveil_md5';
GRANT CONNECT ON DATABASE clinic TO pgveil_trust, pgveil_password, pgveil_md5;
CREATE DATABASE bench;
-- A member of the support group: support's masking policy applies to it.
CREATE ROLE support_member LOGIN PASSWORD 'support_member' IN ROLE support;
SQL
    "${psql[@]}" -d clinic -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgveil_trust, pgveil_password, pgveil_md5"
    # Extra relations for the analyzer checks: quoted names, a second "patients", views.
    "${psql[@]}" -d clinic <<'SQL'
CREATE SCHEMA crm;
CREATE TABLE crm."Users" ("ID" bigint, "EMAIL" text, "nick name" text);
CREATE TABLE crm.patients (id bigint, email text);
CREATE VIEW public.patient_contacts AS SELECT id, email AS contact, full_name AS name FROM public.patients;
CREATE VIEW public.doctors_view AS SELECT doctor, count(*) AS visits FROM public.appointments GROUP BY doctor;
GRANT USAGE ON SCHEMA crm TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA crm TO PUBLIC;
GRANT SELECT ON public.patient_contacts, public.doctors_view TO PUBLIC;
SQL
    pgb=(pgbench -q -i -s 1 -h "$dir" -p "$port" -U postgres bench)
    [[ $(id -u) -eq 0 ]] && pgb=(runuser -u postgres -- "${pgb[@]}")
    "${pgb[@]}" >/dev/null 2>&1
    "${psql[@]}" -d bench -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO admin"
    # A certificate for pgveil's own client-facing TLS, readable by the tests.
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -keyout "$dir/pgveil.key" -out "$dir/pgveil.crt" >/dev/null 2>&1
    cp "$dir/data/server.crt" "$dir/upstream-ca.crt"
    # A client CA and a client certificate (CN ops.example.com) for identity mapping tests.
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pgveil-test-client-ca" \
      -keyout "$dir/client-ca.key" -out "$dir/client-ca.crt" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=ops.example.com" \
      -keyout "$dir/client.key" -out "$dir/client.csr" >/dev/null 2>&1
    openssl x509 -req -in "$dir/client.csr" -CA "$dir/client-ca.crt" -CAkey "$dir/client-ca.key" \
      -CAcreateserial -days 3650 -out "$dir/client.crt" >/dev/null 2>&1
    chmod 600 "$dir/client.key"
    chmod 644 "$dir/upstream-ca.crt" "$dir/pgveil.crt"
    # Upstream client certificates: role pgveil_cert logs in only with a certificate (CN
    # pgveil_cert) from that client CA, which the server now trusts.
    openssl req -newkey rsa:2048 -nodes -subj "/CN=pgveil_cert" \
      -keyout "$dir/upstream-client.key" -out "$dir/upstream-client.csr" >/dev/null 2>&1
    openssl x509 -req -in "$dir/upstream-client.csr" -CA "$dir/client-ca.crt" -CAkey "$dir/client-ca.key" \
      -CAcreateserial -days 3650 -out "$dir/upstream-client.crt" >/dev/null 2>&1
    chmod 600 "$dir/upstream-client.key"
    chmod 644 "$dir/client-ca.crt"
    "${psql[@]}" -d postgres -c "CREATE ROLE pgveil_cert LOGIN" -c "GRANT CONNECT ON DATABASE clinic TO pgveil_cert"
    sed -i "1i hostssl all pgveil_cert 127.0.0.1/32 cert" "$dir/data/pg_hba.conf"
    echo "ssl_ca_file = '$dir/client-ca.crt'" >>"$dir/data/postgresql.conf"
    "${psql[@]}" -d postgres -c "SELECT pg_reload_conf()" >/dev/null
    for i in $(seq 101); do
      [[ $("${psql[@]}" -d postgres -tAc "SHOW ssl_ca_file") == "$dir/client-ca.crt" ]] && break
      [[ $i -eq 101 ]] && { echo "test-cluster.sh: the server did not load ssl_ca_file" >&2; exit 1; }
      sleep 0.1
    done
    cat >"$envfile" <<ENV
PGVEIL_TEST_PGDIR=$dir
PGVEIL_TEST_PGPORT=$port
ENV
    echo "test cluster on 127.0.0.1:$port in $dir"
    ;;
  cleanup)
    [[ -f "$envfile" ]] || exit 0
    dir=$(sed -n 's/^PGVEIL_TEST_PGDIR=//p' "$envfile")
    if [[ -n "$dir" && -d "$dir" ]]; then
      "$ROOT/scripts/pg-cluster.sh" stop "$dir"
      rm -rf "$dir"
    fi
    rm -f "$envfile"
    ;;
esac
