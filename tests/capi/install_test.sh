#!/usr/bin/env bash
# Installs the C API from a build tree into a scratch prefix (cmake --install,
# the runtime and dev components) and builds a small C program against it
# twice, through find_package(vtime) and through pkg-config, then runs both.
# Checks that only vtime.h is installed as a header and that the programs
# need libvtime.so.0 by its soname.
# Usage: install_test.sh BUILD_DIR C_COMPILER
set -euo pipefail
build=$1
cc=$2
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
prefix=$scratch/usr

for component in runtime dev; do
  cmake --install "$build" --prefix "$prefix" --component "$component" >/dev/null
done

headers=$(cd "$prefix/include" && find . -type f | sort)
if [ "$headers" != "./vtime/vtime.h" ]; then
  echo "FAIL: installed headers are not exactly vtime/vtime.h:"; echo "$headers"; exit 1
fi
pcdir=$(dirname "$(find "$prefix" -name vtime.pc)")
libdir=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=libdir vtime)
for f in libvtime.so libvtime.so.0; do
  [ -e "$libdir/$f" ] || { echo "FAIL: $libdir/$f is not installed"; exit 1; }
done
[ -f "$libdir/cmake/vtime/vtimeConfig.cmake" ] || { echo "FAIL: no CMake package"; exit 1; }
echo "ok: installed under $prefix: $(cd "$prefix" && find . -type f -o -type l | sort | tr '\n' ' ')"

check_program() {  # how, binary
  local dynamic
  dynamic=$(readelf -d "$2")  # not piped into grep -q, which could fail it under pipefail
  if ! grep -q 'NEEDED.*\[libvtime\.so\.0\]' <<<"$dynamic"; then
    echo "FAIL: the $1 build does not need libvtime.so.0"; exit 1
  fi
  LD_LIBRARY_PATH=$libdir "$2" >"$scratch/out" || { echo "FAIL: the $1 build failed to run"; exit 1; }
  echo "ok: $1: $(cat "$scratch/out")"
}

cmake -S "$here/install" -B "$scratch/find_package" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_PREFIX_PATH="$prefix" >"$scratch/log" 2>&1 || { cat "$scratch/log"; exit 1; }
cmake --build "$scratch/find_package" >"$scratch/log" 2>&1 || { cat "$scratch/log"; exit 1; }
check_program find_package "$scratch/find_package/consumer"

# shellcheck disable=SC2046  # pkg-config's words are separate arguments
"$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror "$here/install/consumer.c" -o "$scratch/consumer" \
  $(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs vtime)
check_program pkg-config "$scratch/consumer"
