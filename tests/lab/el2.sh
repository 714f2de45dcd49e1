#!/bin/sh
# Runs inside the arm64 lab: vtvmm --el2 (vCPUs created with
# KVM_ARM_VCPU_HAS_EL2, a guest hypervisor at vEL2) on whatever kernel the
# lab machine booted, the lab's kernel matrix (issue #12).
#   - Where KVM offers nested virtualization (KVM_CAP_ARM_EL2, a new kernel
#     booted with kvm-arm.mode=nested): a guest started with --el2 reads
#     CurrentEL = 2 itself (the project's runtime then stops with status 2,
#     "started at EL2, need EL1"), one started without it reads EL1 and
#     runs to "ok"; --el2 with the user irqchip, with --snapshot, and a
#     monitor "migrate" of such a guest are refused, saying why, and the
#     refused migration leaves the guest running here.
#   - Where it does not (Linux 6.12): --el2 is refused with "no nested
#     virtualization on this kernel", and the checks above are reported as
#     NOT-ON-KERNEL lines and counted, never as passes.
# Usage: el2.sh GUEST_DIR [EXPECT]   (vtvmm on PATH). EXPECT "nested" or
# "none" makes a kernel that does not behave as expected a failure (so a
# matrix entry cannot quietly turn into the other one).
g=${1:?usage: el2.sh GUEST_DIR [nested|none]}
expect=${2:-}
failures=0 not_here=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
out=/tmp/el2.out
kernel=$(uname -r)

vtvmm --probe >"$out" 2>&1
sed "s|^|  [probe] |" "$out"
if grep -q "nested virtualization (EL2): yes" "$out"; then have=nested; else have=none; fi
echo "kernel $kernel, command line: $(cat /proc/cmdline)"
echo "KVM_CAP_ARM_EL2: $have"
if [ -n "$expect" ] && [ "$expect" != "$have" ]; then
  fail "expected nested virtualization '$expect' on $kernel, KVM says '$have'"
fi

# run NAME VTVMM-ARGS...: the output in $out, the status in $status.
run() {
  name=$1
  shift
  vtvmm --timeout 60 "$@" >"$out" 2>&1
  status=$?
  sed "s|^|  [$name] |" "$out"
}

if [ "$have" = none ]; then
  run "el2/refused" --el2 "$g/counters.elf"
  if [ "$status" != 0 ] && grep -q "no nested virtualization on this kernel" "$out"; then
    pass "el2: --el2 refused on $kernel, saying there is no nested virtualization (status $status)"
  else
    fail "el2: --el2 on a kernel without KVM_CAP_ARM_EL2: status $status, no clear refusal"
  fi
  for what in "a guest starts at vEL2" "--el2 with the user irqchip is refused" \
    "--el2 with --snapshot is refused" "a vEL2 guest's migration is refused, the guest keeps running"; do
    echo "NOT-ON-KERNEL el2: $what: no nested virtualization on $kernel"
    not_here=$((not_here + 1))
  done
else
  run "el2/at-el2" --el2 --stats "$g/counters.elf"
  if [ "$status" = 2 ] && grep -q "started at EL2" "$out"; then
    pass "el2: with --el2 the guest starts at vEL2 (it read CurrentEL = 2)"
  else
    fail "el2: with --el2: status $status, the guest did not report EL2"
  fi
  run "el2/at-el1" --guest-counter 1000 "$g/counters.elf"
  [ "$status" = 0 ] && pass "el2: without --el2 the same guest runs at EL1 to ok on $kernel" ||
    fail "el2: without --el2: status $status"
  run "el2/user-irqchip" --el2 --irqchip user "$g/counters.elf"
  [ "$status" != 0 ] && grep -q "needs --irqchip kernel" "$out" &&
    pass "el2: --el2 with the user irqchip is refused, saying why" ||
    fail "el2: --el2 --irqchip user: status $status, no clear refusal"
  run "el2/snapshot" --el2 --snapshot /tmp/el2.snap "$g/counters.elf"
  [ "$status" != 0 ] && grep -q "cannot be saved or restored yet" "$out" && [ ! -e /tmp/el2.snap ] &&
    pass "el2: --el2 with --snapshot is refused, saying why, and writes no file" ||
    fail "el2: --el2 --snapshot: status $status, no clear refusal"
  # A running vEL2 guest (el2_idle spins for 20 s) and a monitor
  # "migrate": refused before any connection, the guest still here.
  vtvmm --timeout 60 --el2 --monitor /tmp/el2.sock "$g/el2_idle.elf" >/tmp/el2.run 2>&1 &
  vm=$!
  reply=''
  for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    sleep 0.5
    reply=$(vtvmm monitor /tmp/el2.sock "migrate 127.0.0.1:4999" 2>&1) && break
  done
  echo "  [el2/migrate] reply: $reply"
  sleep 0.5
  if kill -0 "$vm" 2>/dev/null; then alive=yes; else alive=no; fi
  kill "$vm" 2>/dev/null
  wait "$vm" 2>/dev/null
  sed "s|^|  [el2/migrate] |" /tmp/el2.run
  if grep -q "el2_idle: CurrentEL=2" /tmp/el2.run; then
    pass "el2: a guest allowed EL2 runs there ($(sed -n 's/.*el2_idle: //p' /tmp/el2.run | head -n 1))"
  else
    fail "el2: el2_idle under --el2 did not report CurrentEL=2"
  fi
  if echo "$reply" | grep -q "cannot be migrated yet" && [ "$alive" = yes ]; then
    pass "el2: a vEL2 guest's migration is refused, saying why, and the guest keeps running"
  else
    fail "el2: monitor migrate of a vEL2 guest: '$reply'"
  fi
fi
echo "el2 on $kernel: $failures failed, $not_here not on this kernel"
[ "$failures" = 0 ]
