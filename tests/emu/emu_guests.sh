#!/bin/sh
# Every guest program under vtvmm on the emulated backend (--backend emu),
# on this host directly: no KVM, no lab. The same programs run under vtvmm
# on real KVM in the lab (tests/lab/vtvmm_guests.sh) and on QEMU's TCG
# (tests/conformance). Prints one line per check and the figures; exits
# non-zero on any failure.
# Usage: emu_guests.sh VTVMM GUEST_DIR
vtvmm=${1:?usage: emu_guests.sh VTVMM GUEST_DIR}
g=${2:?guest dir}
failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/vtvmm.out

# run NAME EXPECTED_STATUS VTVMM-ARGS...: the guest's output goes to $out,
# its wall time (ms) to $ms.
run() {
  name=$1 want=$2
  shift 2
  t0=$(date +%s%N)
  "$vtvmm" --backend emu --timeout 120 "$@" >"$out" 2>&1 </dev/null
  status=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  sed "s|^|  [$name] |" "$out"
  echo "FIGURE emu wall time $name: $ms ms"
  if [ "$status" -eq "$want" ]; then pass "$name (status $status)"; else fail "$name: status $status, expected $want"; fi
}
field() { sed -n "s/.*$1=\([0-9-]*\).*/\1/p" "$out" | head -n 1; }
no_fail_lines() {
  if grep -q '^not ok' "$out"; then fail "$1: a check failed: $(grep -m1 '^not ok' "$out")"; else pass "$1: no check failed"; fi
}

# --irqchip kernel is refused cleanly: there is no in-kernel GIC here.
"$vtvmm" --backend emu --irqchip kernel "$g/counters.elf" >"$out" 2>&1
status=$?
if [ "$status" -ne 0 ] && grep -q "no in-kernel GIC" "$out" && ! grep -qi "abort\|segmentation" "$out"; then
  pass "--irqchip kernel refused (status $status): $(cat "$out")"
else
  fail "--irqchip kernel on emu: status $status: $(cat "$out")"
fi
# A guest hypervisor: vtvmm --el2 starts the vCPU at EL2 with VHE. Its
# snapshot is refused (the EL2 registers are not saved on emu yet), and the
# guest runs on to its end.
run el2_idle 0 --el2 --snapshot "$tmp/el2.snap" --snapshot-after 500 "$g/el2_idle.elf"
grep -q "el2_idle: CurrentEL=2 e2h=1" "$out" &&
  pass "el2_idle: the guest found itself at EL2 with HCR_EL2.E2H = 1" ||
  fail "el2_idle: not at EL2 with E2H"
no_fail_lines el2_idle
if grep -q "snapshot failed: vCPU 0 is at vEL2" "$out" && [ ! -e "$tmp/el2.snap" ]; then
  pass "el2_idle: its snapshot was refused with the reason, no file left, the guest ran on"
else
  fail "el2_idle: the vEL2 snapshot was not refused cleanly"
fi
# A nested guest under it, through vtvmm's GICv3 and its virtualization
# interface: the EL2 timers, CNTVOFF_EL2, a list register (el2_nested); a
# guest hypervisor that lies in its counter probes, caught (el2_nested_lie);
# both levels watching their counters for 30 s (el2_watch).
run el2_nested 0 --el2 --stats "$g/el2_nested.elf"
no_fail_lines el2_nested
grep -q "ok - el2_nested: nested EL1 virtual timer IRQ (via ICH_LR0_EL2) exactly once" "$out" &&
  pass "el2_nested: the nested guest took its timer through ICH_LR0_EL2" ||
  fail "el2_nested: no nested timer interrupt through the list register"
[ "$(field probes_ahead)" = 0 ] && pass "el2_nested: no counter probe ahead of vtvmm's model" ||
  fail "el2_nested: probes_ahead '$(field probes_ahead)'"
run el2_nested_lie 0 --el2 --stats "$g/el2_nested_lie.elf"
[ "$(field counter_probes)" = 100 ] && [ "$(field probes_ahead)" = 50 ] &&
  pass "el2_nested_lie: vtvmm caught the 50 probes that lie ahead of its model" ||
  fail "el2_nested_lie: counter_probes '$(field counter_probes)' probes_ahead '$(field probes_ahead)'"
run el2_watch 0 --el2 "$g/el2_watch.elf"
no_fail_lines el2_watch

run counters 0 --guest-counter 1000 "$g/counters.elf"
first=$(field cntvct)
if [ -n "$first" ] && [ "$first" -ge 1000 ] && [ "$first" -lt 2000000000 ]; then
  pass "counters: the guest counter starts at the configured value (read $first)"
else
  fail "counters: first CNTVCT '$first' not in [1000, 2e9)"
fi
no_fail_lines counters
run timer 0 --counter-offset 0x100 "$g/timer.elf"
no_fail_lines timer
run timer/ppi-20-19 0 --vtimer-ppi 20 --ptimer-ppi 19 "$g/timer.elf"
grep -q "vtimer_intid=20 ptimer_intid=19 dtb=yes" "$out" &&
  pass "timer/ppi-20-19: the guest found its timers on INTIDs 20 and 19" ||
  fail "timer/ppi-20-19: the guest did not use INTIDs 20/19"
run smp 0 --cpus 2 --guest-counter 1000 "$g/smp.elf"
no_fail_lines smp
run clockwatch 0 "$g/clockwatch.elf"
b=$(sed -n 's/.*cntvct backwards=\([0-9]*\).*/\1/p' "$out")
[ "$b" = 0 ] && pass "clockwatch: CNTVCT never went backwards" || fail "clockwatch: backwards '$b'"
run reset 0 --guest-counter 0 "$g/reset.elf"
grep -q "ok - reset: counter continued across the reset" "$out" &&
  pass "reset: guest time continued across the reboot" || fail "reset: no second boot"
run pvtime 0 --pvtime on "$g/pvtime.elf"
no_fail_lines pvtime
run pvtime_scribble 0 --pvtime on "$g/pvtime_scribble.elf"
no_fail_lines pvtime_scribble
run trace_marker 0 --stats "$g/trace_marker.elf"
marks=$(field trace_marks)
[ -n "$marks" ] && [ "$marks" -gt 0 ] && pass "trace_marker: $marks marks counted" || fail "trace_marker: marks '$marks'"

# A timer storm: exactly the interrupts the guest programmed, none more.
run timer_storm 0 --stats "$g/timer_storm.elf"
irqs=$(field irqs)
[ "$irqs" = 1000 ] && pass "timer_storm: 1000 timer interrupts for 1000 programmed" ||
  fail "timer_storm: irqs '$irqs' for 1000 programmed"
run ipi_storm 0 --cpus 2 --stats "$g/ipi_storm.elf"
no_fail_lines ipi_storm

# Console input through the PL011's receive FIFO and its interrupt.
seq 1 300 >"$tmp/console.in"
want_bytes=$(wc -c <"$tmp/console.in")
want_sum=$(od -An -v -tu1 "$tmp/console.in" | awk '{ for (i = 1; i <= NF; i++) s += $i } END { print s }')
{ cat "$tmp/console.in"; printf '\004'; } |
  "$vtvmm" --backend emu --timeout 60 "$g/console_input.elf" >"$out" 2>&1
status=$?
got=$(sed -n 's/^console_input: bytes=\([0-9]*\) sum=\([0-9]*\).*/\1 \2/p' "$out")
if [ "$status" = 0 ] && [ "$got" = "$want_bytes $want_sum" ]; then
  pass "console_input: all $want_bytes piped bytes reached the guest by interrupt"
else
  fail "console_input: status $status, got '$got', wanted '$want_bytes $want_sum'"
fi

# Snapshot and restore on emu: the guest watching its counters never sees
# them go back, under either policy; one snapshot restored twice gives the
# same guest-visible timer state.
run snapshot 0 --memory 32 --snapshot "$tmp/s.snap" --snapshot-after 700 "$g/clockwatch.elf"
grep -q "written to $tmp/s.snap" "$out" && pass "snapshot: file written" || fail "snapshot: no file"
"$vtvmm" --backend emu --restore "$tmp/s.snap" --restore-check >"$tmp/r1" 2>&1
"$vtvmm" --backend emu --restore "$tmp/s.snap" --restore-check >"$tmp/r2" 2>&1
if [ -s "$tmp/r1" ] && cmp -s "$tmp/r1" "$tmp/r2"; then
  pass "restoring one snapshot twice gives identical guest-visible timer state"
else
  fail "two restores of one snapshot differ"
fi
for policy in freeze wallclock; do
  run "restore/$policy" 0 --restore "$tmp/s.snap" --policy "$policy"
  b=$(sed -n 's/.*cntvct backwards=\([0-9]*\).*/\1/p' "$out")
  [ "$b" = 0 ] && pass "restore/$policy: CNTVCT never went backwards" ||
    fail "restore/$policy: CNTVCT went backwards ($b)"
done
run timer_migrate/snapshot 0 --snapshot "$tmp/t.snap" --snapshot-after 300 "$g/timer_migrate.elf"
run timer_migrate/restore 0 --restore "$tmp/t.snap"
no_fail_lines timer_migrate/restore

echo "emu_guests: $failures failures"
[ "$failures" -eq 0 ]
