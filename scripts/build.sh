#!/usr/bin/env bash
# Configures (first time) and builds one build tree with Ninja and ccache.
#   scripts/build.sh test     build-test/: Debug + AddressSanitizer + UBSan, with tests
#   scripts/build.sh release  build-release/: Release, no tests (run.sh, bench)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
kind=${1:-test}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/pgveil-ccache}
case "$kind" in
  test)
    dir="$ROOT/build-test"
    flags=(-DCMAKE_BUILD_TYPE=Debug -DPGVEIL_SANITIZE=ON -DPGVEIL_BUILD_TESTS=ON -DPGVEIL_BUILD_BENCH=OFF)
    ;;
  release)
    dir="$ROOT/build-release"
    flags=(-DCMAKE_BUILD_TYPE=Release -DPGVEIL_SANITIZE=OFF -DPGVEIL_BUILD_TESTS=OFF -DPGVEIL_BUILD_BENCH=ON)
    ;;
  *) echo "build.sh: test or release" >&2; exit 2 ;;
esac
if [[ ! -f "$dir/build.ninja" ]]; then
  cmake -S "$ROOT" -B "$dir" -G Ninja "${flags[@]}" >/dev/null
fi
# Two cores: two compile jobs, never two builds at once.
cmake --build "$dir" -j 2
