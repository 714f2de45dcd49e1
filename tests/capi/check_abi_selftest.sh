#!/usr/bin/env bash
# Proves scripts/check-abi can fail: against altered copies of the committed
# symbol list it must refuse a library that exports a symbol the list lacks
# (an ABI addition), one that lacks a listed symbol (a removal), the wrong
# soname, and a header that declares a function the list lacks. A check that
# cannot fail proves nothing.
# Usage: check_abi_selftest.sh CHECK_ABI LIBRARY SYMBOL_LIST
set -euo pipefail
check=$1
lib=$2
list=$3
header=$(cd "$(dirname "$0")/../.." && pwd)/include/vtime/vtime.h
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

"$check" "$lib" "$list" "$header" >/dev/null || { echo "FAIL: the committed list is refused"; exit 1; }
echo "ok: the committed list matches"

expect_refused() {  # what, list, [header]
  if "$check" "$lib" "$2" "${3:-$header}" >"$scratch/out" 2>&1; then
    echo "FAIL: check-abi accepted $1"
    exit 1
  fi
  echo "ok: refused $1: $(grep -m1 '^  [-+?]' "$scratch/out" || head -1 "$scratch/out")"
}

# The library exports a function the list does not have, as it would after
# someone added one to the C API without listing it.
victim=$(grep -m1 '^vtime_.*@@' "$list")
grep -v -x -F "$victim" "$list" >"$scratch/one_less"
expect_refused "an exported symbol missing from the list ($victim)" "$scratch/one_less"

# The list names a symbol the library does not export (a removal).
{ cat "$list"; echo "vtime_not_a_function@@VTIME_0"; } >"$scratch/one_more"
expect_refused "a listed symbol the library lacks" "$scratch/one_more"

# The right name under another version node.
sed "s/^${victim%@@*}@@VTIME_0\$/${victim%@@*}@@VTIME_1/" "$list" >"$scratch/other_node"
expect_refused "a symbol bound to another version node" "$scratch/other_node"

# Another soname.
sed 's/^soname .*/soname libvtime.so.1/' "$list" >"$scratch/soname"
expect_refused "another soname" "$scratch/soname"

# The header declares a function nobody listed (nor built).
{ cat "$header"; echo 'VTIME_API int vtime_unlisted(void) VTIME_NOEXCEPT;'; } >"$scratch/vtime.h"
expect_refused "a declared function missing from the list" "$list" "$scratch/vtime.h"
