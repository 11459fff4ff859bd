#!/usr/bin/env bash
# Installs the Debian packages pgveil needs to build, test and run its demo.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

PKGS=(
  cmake ninja-build ccache g++ pkg-config
  libboost1.81-dev libssl-dev libpg-query-dev libsimdjson-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libre2-dev libpq-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  postgresql-15 postgresql-client-15 postgresql-contrib
  python3-psycopg curl procps
)
if [[ "${1:-}" == "--bench" ]]; then
  PKGS+=(pgbouncer gnuplot-nox heaptrack)
fi

# Node.js for the node-postgres test: only when the machine has none (an existing nodejs may
# bundle npm, and Debian's npm package would conflict with it).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PKGS+=(nodejs npm)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "pgveil: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
