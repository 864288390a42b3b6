#!/usr/bin/env bash
# Set-up (packages, configure, build) and the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build --with-fuzz
cd build && ctest --output-on-failure -j1 --timeout 1200
