#!/bin/sh
# Runs inside the arm64 lab: vtvmm --el2 (vCPUs created with
# KVM_ARM_VCPU_HAS_EL2, a guest hypervisor at vEL2) on whatever kernel the
# lab machine booted, the lab's kernel matrix (issue #12).
#   - Where KVM offers nested virtualization (KVM_CAP_ARM_EL2, a new kernel
#     booted with kvm-arm.mode=nested): a guest started with --el2 reads
#     CurrentEL = 2 itself (the project's runtime then stops with status 2,
#     "started at EL2, need EL1"), one started without it reads EL1 and
#     runs to "ok"; --el2 with the user irqchip is refused, saying why; a
#     guest hypervisor runs a nested guest (el2_nested), whose counters
#     match vtvmm's model through the counter probes (and el2_nested_lie's
#     wrong probes are caught); a vEL2 VM with a nested guest (el2_watch)
#     is snapshotted and restored, with both levels' counters never going
#     back and each armed timer firing once (its live migrations are
#     lab.pair_el2's, between two machines).
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
    "a guest hypervisor runs a nested guest, all checks ok" \
    "nested counters equal the model (VM offset + CNTVOFF_EL2)" "the timeline carries the nested offset" \
    "wrong probes are caught" "a vEL2 VM with a nested guest is snapshotted and restored" \
    "a vEL2 VM with a nested guest migrates live A <-> B ten times (lab.pair_el2, run on the newest kernel)"; do
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
  # The guest hypervisor and its nested guest (el2_nested): the nested
  # counters against the composition (in the guest) and against vtvmm's
  # model of the VM offset plus the vCPU's CNTVOFF_EL2 (the counter probes),
  # the EL2 timers' and the nested EL1 timer's interrupts. The lateness is
  # printed as a figure: the nested timers' is the lab's (see the README).
  rm -f /tmp/el2.tl
  run "el2/nested" --el2 --stats --guest-counter 0x200000000 --timeline /tmp/el2.tl "$g/el2_nested.elf"
  if [ "$status" = 0 ] && ! grep -q "^not ok" "$out" && grep -q "ok - el2_nested: the nested guest runs at EL1" "$out"; then
    pass "el2: a guest hypervisor ran its nested guest at EL1; every check of both levels ok"
  else
    fail "el2: el2_nested: status $status"
  fi
  probes=$(grep "vtvmm: probes:" "$out")
  max_us=$(echo "$probes" | sed -n 's/.*probe_window_us=[0-9]*\.\.\([0-9]*\).*/\1/p')
  echo "FIGURE el2 nested probes:${probes#vtvmm: probes:}"
  grep -E "late_us=|l1_late_us=" "$out" | sed 's/^/FIGURE el2 nested timer: /'
  if echo "$probes" | grep -q "counter_probes=100 probes_ahead=0 " && [ -n "$max_us" ] && [ "$max_us" -lt 100000 ]; then
    pass "el2: 100 nested counter reads equal vtvmm's model (VM offset + CNTVOFF_EL2) within the read window (max $max_us us)"
  else
    fail "el2: nested counter probes against the model: '$probes'"
  fi
  # The offset timeline carries the guest hypervisor's CNTVOFF_EL2 as vtvmm
  # saw it (at the first exit after the write), so the nested guest's first
  # CNTVCT and the CNTPCT it read just before map to the same host moment,
  # within the read window.
  vtime-trace timeline /tmp/el2.tl >/tmp/el2.tlout 2>&1
  sed "s|^|  [el2/timeline] |" /tmp/el2.tlout
  first_v=$(sed -n 's/^el2_nested: nested cntvct=\([0-9]*\) cntpct=.*/\1/p' "$out")
  first_p=$(sed -n 's/^el2_nested: nested cntvct=[0-9]* cntpct=\([0-9]*\) .*/\1/p' "$out")
  hv=$(vtime-trace map /tmp/el2.tl --vcpu 0 --virtual "${first_v:-0}" 2>&1 | sed -n 's/^host=0 count=//p')
  hp=$(vtime-trace map /tmp/el2.tl --vcpu 0 --physical "${first_p:-0}" 2>&1 | sed -n 's/^host=0 count=//p')
  echo "  [el2/timeline] nested cntvct $first_v -> host $hv, cntpct $first_p -> host $hp"
  voff=$(sed -n 's/^el2_nested: nested cntvct=.* cntvoff_el2=\([0-9]*\) .*/\1/p' "$out")
  if [ -n "$voff" ] && grep -q "nested-offset host=0 count=[0-9]* vcpu=0 cntvoff=$voff\b" /tmp/el2.tlout &&
    [ -n "$hv" ] && [ -n "$hp" ] && [ $((hv - hp)) -ge 0 ] && [ $((hv - hp)) -lt 62500 ]; then
    pass "el2: the timeline has the nested offset; the nested CNTVCT and CNTPCT map to one host moment ($((hv - hp)) ticks apart)"
  else
    fail "el2: the timeline's nested offset: '$(grep nested-offset /tmp/el2.tlout)' (the guest set '$voff'), $hv vs $hp"
  fi
  run "el2/nested-lie" --el2 --stats --guest-counter 0x200000000 "$g/el2_nested_lie.elf"
  if grep -q "vtvmm: probes: counter_probes=100 probes_ahead=50 " "$out"; then
    pass "el2: probes that add CNTVOFF_EL2 once too often are all found ahead of the model (50 of 50)"
  else
    fail "el2: el2_nested_lie's wrong probes were not caught: '$(grep "vtvmm: probes:" "$out")'"
  fi
  # A vEL2 VM with a nested guest (el2_watch: both levels watch their
  # counters and keep a timer armed, 30 s of guest time) snapshotted after
  # 5 s and restored.
  rm -f /tmp/el2.snap
  run "el2/snapshot" --el2 --memory 32 --snapshot /tmp/el2.snap --snapshot-after 5000 "$g/el2_watch.elf"
  snap_status=$status
  run "el2/restore" --restore /tmp/el2.snap --policy freeze
  if [ "$snap_status" = 0 ] && [ "$status" = 0 ] && ! grep -q "^not ok" "$out" &&
    grep -q "ok - el2_watch: l2 cntv: one IRQ per arming" "$out" &&
    grep -q "restore: vcpu0 .* cntvoff_el2=.* cnthctl_el2=.* cnthp_ctl=1 .* cnthv_cval=" "$out"; then
    pass "el2: a vEL2 VM with a nested guest snapshotted and restored: both levels' counters never back, each armed timer fired once"
  else
    fail "el2: snapshot/restore of a vEL2 VM with a nested guest: statuses $snap_status/$status"
  fi
  grep "^el2_watch: l[12] " "$out" | sed 's/^/FIGURE el2 snapshot: /'
  rm -f /tmp/el2.snap
  # Its live migrations (ten, between two machines) are lab.pair_el2's.
fi
echo "el2 on $kernel: $failures failed, $not_here not on this kernel"
[ "$failures" = 0 ]
