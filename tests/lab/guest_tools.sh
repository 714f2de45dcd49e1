#!/bin/sh
# The guest tools on a Linux arm64 machine: in the lab, that is the lab
# machine itself (a QEMU TCG guest running Linux).
#
# vtime-clockwatch watches CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_BOOTTIME
# and CNTVCT for 3 s: each must have its "never went backwards" ok line and
# a summary with a plausible sample count, and the tool must exit 0. Then,
# as root, a second run with the wall clock set back must say not ok.
#
# vtime-clocksample writes the trace clock conversion and counter samples,
# which vtime-trace samples must find consistent.
#
# vtime-ptp: PTP=absent asserts that there is no /dev/ptp0 and that the tool
# says so and exits 1. That is the lab's case: its kernel has
# CONFIG_PTP_1588_CLOCK_KVM=y, but QEMU TCG is not KVM and offers no KVM PTP
# hypercall, so the driver registers no clock (checked 2026-12-01: no
# /dev/ptp*, /sys/class/ptp empty). PTP=present asserts a measurement (a
# KVM guest: its clock must be "KVM virtual PTP"); PTP=auto picks by
# whether /dev/ptp0 exists (native arm64 hosts, where either can hold).
# Usage: guest_tools.sh absent|present|auto
set -u
expect=${1:-auto}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
out=/tmp/guest_tools.out

vtime-clockwatch --duration 3 --max-log 200 >"$out" 2>&1
status=$?
cat "$out"
[ "$status" -eq 0 ] || fail "vtime-clockwatch exited $status"
for clock in CLOCK_MONOTONIC CLOCK_REALTIME CLOCK_BOOTTIME CNTVCT; do
    grep -qx "ok - vtime-clockwatch: $clock never went backwards" "$out" ||
        fail "no ok line for $clock"
    # A busy loop over four clock reads does well over 1000 iterations in
    # 3 s even under TCG; far fewer would mean the loop is broken.
    samples=$(sed -n "s/^vtime-clockwatch: summary clock=$clock samples=\([0-9]*\) .*/\1/p" "$out")
    [ -n "$samples" ] && [ "$samples" -gt 1000 ] || fail "$clock: samples='$samples'"
done
grep -Eq "^vtime-clockwatch: duration_s=3 .* cntfrq=[1-9][0-9]*$" "$out" || fail "no cntfrq"
grep -qx "vtime-clockwatch: exit 0" "$out" || fail "no exit line"

# The failing path end to end: CLOCK_REALTIME set back by 10 s during a run
# must give one loud BACKWARDS line, its not ok line and exit status 1,
# while CLOCK_MONOTONIC stays ok. Only where we may set the clock (root, as
# in the lab).
if [ "$(id -u)" -eq 0 ]; then
    vtime-clockwatch --duration 2 --threshold-us 100000 >"$out" 2>&1 &
    pid=$!
    sleep 1
    date -s "@$(($(date +%s) - 10))" >/dev/null || fail "date -s failed"
    wait "$pid"
    status=$?
    date -s "@$(($(date +%s) + 10))" >/dev/null
    cat "$out"
    [ "$status" -eq 1 ] || fail "vtime-clockwatch with the wall clock set back exited $status, not 1"
    grep -Eq "^vtime-clockwatch: BACKWARDS step clock=CLOCK_REALTIME .* size_ns=-[0-9]+$" "$out" ||
        fail "no BACKWARDS line for CLOCK_REALTIME"
    grep -qx "not ok - vtime-clockwatch: CLOCK_REALTIME never went backwards: backwards=1" "$out" ||
        fail "no not ok line for CLOCK_REALTIME"
    grep -qx "ok - vtime-clockwatch: CLOCK_MONOTONIC never went backwards" "$out" ||
        fail "CLOCK_MONOTONIC not ok after a wall-clock step"
fi

# vtime-clocksample: the kernel's counter-to-trace-clock conversion from the
# perf page, and 20 counter readings around CLOCK_MONOTONIC over 1 s; the
# conversion must put CLOCK_MONOTONIC at one offset from the trace clock in
# every sample (vtime-trace samples), which a wrong multiplier, shift or
# zero would not.
vtime-clocksample --samples 20 --interval-ms 50 --machine lab --output /tmp/samples.txt >"$out" 2>&1
status=$?
cat "$out"
[ "$status" -eq 0 ] || fail "vtime-clocksample exited $status"
head -n 4 /tmp/samples.txt
vtime-trace samples /tmp/samples.txt >"$out" 2>&1 || fail "vtime-trace samples refused the lab's samples"
cat "$out"
grep -q "^ok: CLOCK_MONOTONIC - trace clock = " "$out" || fail "no ok line from vtime-trace samples"
[ "$(grep -c '^sample ' /tmp/samples.txt)" = 20 ] || fail "not 20 samples"

if [ "$expect" = auto ]; then
    if [ -e /dev/ptp0 ]; then expect=present; else expect=absent; fi
fi
vtime-ptp --count 3 --interval-ms 100 >"$out" 2>&1
status=$?
cat "$out"
case $expect in
    absent)
        [ ! -e /dev/ptp0 ] || fail "/dev/ptp0 exists where none was expected"
        [ "$status" -eq 1 ] || fail "vtime-ptp exited $status, not 1"
        grep -q "^vtime-ptp: cannot open /dev/ptp0: this machine has no PTP clock there" "$out" ||
            fail "no clear message for the missing /dev/ptp0" ;;
    present)
        [ "$status" -eq 0 ] || fail "vtime-ptp exited $status"
        grep -q '^vtime-ptp: device=/dev/ptp0 clock_name="KVM virtual PTP" kvm=yes' "$out" ||
            fail "/dev/ptp0 is not KVM's PTP clock"
        n=$(grep -Ec '^vtime-ptp: measurement=[1-3] method=[a-z-]+ offset_ns=-?[0-9]+ uncertainty_ns=[0-9]+' "$out")
        [ "$n" -eq 3 ] || fail "$n measurements, not 3" ;;
    *)
        fail "unknown expectation '$expect'" ;;
esac

[ "$failures" -eq 0 ] && echo "PASS" || exit 1
