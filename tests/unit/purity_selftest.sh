#!/usr/bin/env bash
# Plants violations in a scratch copy of a pure layer and expects
# check-purity to refuse each one; a check that cannot fail proves nothing.
set -euo pipefail
check=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/src/arch"
printf '#include <cstdint>\nint ok();\n' >"$scratch/src/arch/clean.cc"
"$check" "$scratch" >/dev/null || { echo "FAIL: clean tree refused"; exit 1; }

expect_refused() {
  printf '%b' "$2" >"$scratch/src/arch/bad.cc"
  if "$check" "$scratch" >/dev/null 2>&1; then
    echo "FAIL: check-purity accepted $1"
    exit 1
  fi
  echo "ok: refused $1"
}
expect_refused "an OS header" '#include <sys/ioctl.h>\n'
expect_refused "unistd.h" '#include <unistd.h>\n'
expect_refused "<chrono> clocks" '#include <chrono>\nauto t = std::chrono::steady_clock::now();\n'
expect_refused "clock_gettime" 'void f() { clock_gettime(0, nullptr); }\n'
expect_refused "stdio" '#include <cstdio>\n'
expect_refused "reading the counter directly" 'void f() { asm volatile("mrs x0, cntvct_el0"); }\n'

# The PV-time model is pure; only its host source (src/pvtime/host) may reach the OS.
rm -f "$scratch/src/arch/bad.cc"
mkdir -p "$scratch/src/pvtime/host"
printf '#include <unistd.h>\n' >"$scratch/src/pvtime/bad.cc"
if "$check" "$scratch" >/dev/null 2>&1; then
  echo "FAIL: check-purity accepted an OS header in src/pvtime"
  exit 1
fi
echo "ok: refused an OS header in src/pvtime"
rm -f "$scratch/src/pvtime/bad.cc"
printf '#include <unistd.h>\nint run_delay();\n' >"$scratch/src/pvtime/host/schedstat.cc"
"$check" "$scratch" >/dev/null || { echo "FAIL: the host source in src/pvtime/host refused"; exit 1; }
echo "ok: src/pvtime/host may read the host"
