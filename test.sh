#!/usr/bin/env bash
# Installs what is missing, builds the tests (AddressSanitizer + UBSan) and runs every test:
# unit, fuzz replay and integration against a throwaway PostgreSQL on a free loopback port.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
cd "$ROOT"

./scripts/install-deps.sh
# node-postgres for the driver tests, into an ignored folder (npm registry; bounded in time).
if [[ ! -d tests/node/node_modules/pg ]]; then
  (cd tests/node && timeout 300 npm install --no-audit --no-fund --silent) || echo "test.sh: npm install of pg failed; the node-postgres test will fail"
fi
./scripts/build.sh test
cd build-test
# halt_on_error: a sanitizer finding fails the test that triggered it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --output-on-failure -j2 --timeout 600
