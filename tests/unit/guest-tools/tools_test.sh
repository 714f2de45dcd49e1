#!/bin/sh
# The guest tools on the build host: vtime-clockwatch watches the host's
# clocks (and says it has no CNTVCT unless the host is arm64), vtime-ptp
# fails clearly on a missing device and on a device that is no PTP clock,
# and both refuse a bad command line with status 2.
# Usage: tools_test.sh DIR_WITH_THE_TOOLS
set -u
dir=$1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

"$dir/vtime-clockwatch" --duration 1 --threshold-us 100000 >"$out" 2>&1
status=$?
cat "$out"
[ "$status" -eq 0 ] || fail "vtime-clockwatch exited $status"
for clock in CLOCK_MONOTONIC CLOCK_REALTIME CLOCK_BOOTTIME; do
    grep -qx "ok - vtime-clockwatch: $clock never went backwards" "$out" ||
        fail "no ok line for $clock"
    grep -Eq "^vtime-clockwatch: summary clock=$clock samples=[0-9]+ max_forward_ns=[0-9]+ backwards=0 " "$out" ||
        fail "no summary line for $clock"
done
case $(uname -m) in
    aarch64|arm64)
        grep -qx "ok - vtime-clockwatch: CNTVCT never went backwards" "$out" ||
            fail "no ok line for CNTVCT on arm64" ;;
    *)
        grep -qx "vtime-clockwatch: no CNTVCT on this architecture" "$out" ||
            fail "no 'no CNTVCT' line"
        ! grep -q "clock=CNTVCT" "$out" || fail "CNTVCT watched where there is none" ;;
esac
grep -qx "vtime-clockwatch: exit 0" "$out" || fail "no exit line"

# A POSIX timer due 1 s in: it fires once, not before 1 s, and on time
# (within half a second on a loaded machine).
"$dir/vtime-clockwatch" --duration 2 --interval-us 1000 --timer-s 1 >"$out" 2>&1
mono=$(sed -n 's/^vtime-clockwatch: timer armed_s=1 fired=1 mono_after_ns=\([0-9]*\) .*/\1/p' "$out")
[ -n "$mono" ] && [ "$mono" -ge 1000000000 ] && [ "$mono" -lt 1500000000 ] ||
    fail "the --timer-s 1 timer: $(grep 'timer armed' "$out")"

"$dir/vtime-clockwatch" --threshold-us x >"$out" 2>&1
status=$?
[ "$status" -eq 2 ] || fail "vtime-clockwatch with a bad option exited $status, not 2"
grep -q "threshold-us needs a number" "$out" || fail "no message for a bad --threshold-us"

"$dir/vtime-ptp" --device /nonexistent/ptp0 >"$out" 2>&1
status=$?
cat "$out"
[ "$status" -eq 1 ] || fail "vtime-ptp without a device exited $status, not 1"
grep -q "^vtime-ptp: cannot open /nonexistent/ptp0: this machine has no PTP clock there" "$out" ||
    fail "no clear message for a missing device"

"$dir/vtime-ptp" --device /dev/null >"$out" 2>&1
status=$?
cat "$out"
[ "$status" -eq 1 ] || fail "vtime-ptp on /dev/null exited $status, not 1"
grep -q "not a PTP clock" "$out" || fail "no clear message for a device that is no PTP clock"

"$dir/vtime-ptp" --samples 26 >"$out" 2>&1
status=$?
[ "$status" -eq 2 ] || fail "vtime-ptp --samples 26 exited $status, not 2"

for bad in 0 x 3600000001; do
  "$dir/vtime-ptp" --step-over-us "$bad" >"$out" 2>&1
  status=$?
  [ "$status" -eq 2 ] && grep -q "step-over-us needs a number from 1" "$out" ||
    fail "vtime-ptp --step-over-us $bad exited $status: $(cat "$out")"
done

[ "$failures" -eq 0 ] && echo "PASS" || exit 1
