#!/usr/bin/env bash
# Installs what antidote needs from Debian's packages (idempotent), configures and builds.
# Usage: scripts/setup.sh [build-dir] [--with-fuzz]
# --with-fuzz also installs clang and builds the libFuzzer targets (the test suite runs
# each for 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
FUZZ=OFF
[ "${2:-}" = "--with-fuzz" ] && FUZZ=ON
PACKAGES=(cmake g++ make ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-pthread
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libfmt-dev zlib1g-dev libpng-dev
  googletest libgtest-dev libbenchmark-dev
  dataset-fashion-mnist python3-torch chromium)
[ "$FUZZ" = ON ] && PACKAGES+=(clang libclang-rt-14-dev)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DANTIDOTE_FUZZ=$FUZZ >/dev/null
cmake --build "$BUILD" -j2
