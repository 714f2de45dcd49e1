#!/bin/sh
# Lab test: the C API's KVM path on real KVM, through the arm64 Debian
# packages. On the host it builds libvtime0/libvtime-dev for arm64
# (scripts/package arm64), unpacks them, and builds against what they
# install, with pkg-config and the cross compiler: the C API's own KVM test
# (tests/capi/kvm_test.c, a C program that plays the VMM) and the adoption
# example (examples/kvm-time/vmm.c). In the lab, with the packaged
# libvtime.so.0 and the C and C++ runtimes in /lib, it runs the test, then
# the example: a bare-metal guest (guests/clockwatch, which counts any read
# of either counter lower than the one before) paused after 1.5 s and saved,
# shown, and restored twice, under freeze and under wallclock. Each restore
# must resume the counters at or after the pause and the guest must finish
# with both counters never having gone backwards.
# Usage (host): capi_kvm.sh host GUEST_DIR [LAB/RUN OPTIONS...]
#        (lab):  capi_kvm.sh lab
set -u
mode=${1:?usage: capi_kvm.sh host GUEST_DIR [LAB/RUN OPTIONS...] | lab}
shift
if [ "$mode" = host ]; then
  guests=${1:?usage: capi_kvm.sh host GUEST_DIR [LAB/RUN OPTIONS...]}
  shift
  here=$(cd "$(dirname "$0")" && pwd)
  root=$(cd "$here/../.." && pwd)
  work=$(mktemp -d -t capi_kvm.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  "$root/scripts/package" arm64 >"$work/package.log" 2>&1 ||
    { tail -n 20 "$work/package.log"; echo "FAIL: scripts/package arm64"; exit 1; }
  for deb in "$root"/build-deb-arm64/libvtime*_arm64.deb; do
    dpkg-deb -x "$deb" "$work/root" || { echo "FAIL: dpkg-deb -x $deb"; exit 1; }
  done
  lib=$work/root/usr/lib/aarch64-linux-gnu
  [ -f "$lib/pkgconfig/vtime.pc" ] || { echo "FAIL: the arm64 package has no vtime.pc"; exit 1; }
  # What the packages installed, found as a user finds it: pkg-config.
  flags=$(PKG_CONFIG_LIBDIR=$lib/pkgconfig pkg-config --cflags --libs vtime) ||
    { echo "FAIL: pkg-config does not find vtime in the arm64 package"; exit 1; }
  echo "pkg-config: $flags" | sed "s|$work|<unpacked>|g"
  for prog in tests/capi/kvm_test.c:capi_kvm_test examples/kvm-time/vmm.c:vtime-example-vmm; do
    src=${prog%%:*} bin=${prog#*:}
    # shellcheck disable=SC2086
    aarch64-linux-gnu-gcc -std=c11 -O2 -Wall -Wextra -Werror -o "$work/$bin" "$root/$src" $flags ||
      { echo "FAIL: $src does not build against the arm64 package"; exit 1; }
  done
  rt=/usr/aarch64-linux-gnu/lib
  exec "$root/lab/run" "$@" \
    --add "$work/capi_kvm_test:/bin/capi_kvm_test" \
    --add "$work/vtime-example-vmm:/bin/vtime-example-vmm" \
    --add "$lib/libvtime.so.0:/lib/libvtime.so.0" \
    --add "$rt/ld-linux-aarch64.so.1:/lib/ld-linux-aarch64.so.1" \
    --add "$rt/libc.so.6:/lib/libc.so.6" --add "$rt/libm.so.6:/lib/libm.so.6" \
    --add "$rt/libstdc++.so.6:/lib/libstdc++.so.6" --add "$rt/libgcc_s.so.1:/lib/libgcc_s.so.1" \
    --add "$guests/clockwatch.bin:/guests/clockwatch.bin" \
    --add "$here/capi_kvm.sh:/bin/capi_kvm.sh" \
    -- sh /bin/capi_kvm.sh lab
fi

failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
out=/tmp/capi_kvm.out

capi_kvm_test >"$out" 2>&1
status=$?
sed 's/^/  [capi.kvm] /' "$out"
[ "$status" = 0 ] && pass "the C API's KVM test on real KVM (the packaged libvtime.so.0)" ||
  fail "the C API's KVM test: status $status"

# example CMD...: runs the example, its output in $out and shown.
example() {
  vtime-example-vmm "$@" >"$out" 2>&1
  status=$?
  # (clockwatch's step log and the JSON's per-vCPU detail left out)
  grep -v "^cws " "$out" | sed -n '/"vcpus"/,/^  \]/!p' | sed "s/^/  [example $1] /"
}
example run /guests/clockwatch.bin --snapshot /tmp/guest.snap --after 1500
paused=$(sed -n 's/^vmm: paused at guest CNTVCT \([0-9]*\);.*/\1/p' "$out")
if [ "$status" = 0 ] && [ -n "$paused" ] && [ -s /tmp/guest.snap ]; then
  pass "the example paused the guest at CNTVCT $paused and saved it ($(wc -c </tmp/guest.snap) bytes)"
else
  fail "the example did not pause and save the guest (status $status)"
fi
example show /tmp/guest.snap
[ "$status" = 0 ] && grep -q '"offset_api_name": "VM offset"' "$out" &&
  pass "the saved guest time reads back: offsets from the VM offset vtime set" ||
  fail "show: status $status, no vm_offset in the JSON"

for policy in freeze wallclock; do
  example restore /tmp/guest.snap --policy "$policy"
  line=$(grep "^vmm: restored" "$out")
  planned=$(echo "$line" | sed -n 's/.*planned to resume at \([0-9]*\),.*/\1/p')
  reads=$(echo "$line" | sed -n 's/.* reads \([0-9]*\) now.*/\1/p')
  if [ -n "$planned" ] && [ -n "$reads" ] && [ -n "$paused" ] && [ "$reads" -ge "$paused" ]; then
    pass "restore/$policy: CNTVCT paused at $paused, planned $planned, reads $reads after the restore"
  else
    fail "restore/$policy: no resume at or after the pause: '$line'"
  fi
  case $policy in
    freeze) [ "$planned" = "$paused" ] && pass "restore/freeze resumes at the paused count exactly" ||
      fail "restore/freeze planned $planned, not the paused $paused" ;;
    wallclock) [ -n "$planned" ] && [ "$planned" -gt "$paused" ] &&
      pass "restore/wallclock moves the counters on by the time away ($((planned - paused)) ticks)" ||
      fail "restore/wallclock planned $planned, not after the paused $paused" ;;
  esac
  if [ "$status" = 0 ] && grep -q "^ok - clockwatch: cntvct never went backwards" "$out" &&
    grep -q "^ok - clockwatch: cntpct never went backwards" "$out"; then
    pass "restore/$policy: the guest ran on to its end and saw neither counter go backwards"
  else
    fail "restore/$policy: status $status; no clockwatch verdict that both counters kept forward"
  fi
done
echo "capi_kvm: $failures failure(s)"
[ "$failures" -eq 0 ]
