#!/bin/sh
# Snapshots that cross backends: a guest saved on the emulated backend (this
# host, no KVM) resumes on KVM in the arm64 lab, and one saved on KVM in the
# lab resumes on the emulated backend here. Both use vtvmm's own GIC
# (--irqchip user, whose state the snapshot carries; the emulated backend
# has no in-kernel one). In each direction the guests check that:
#  - timer_migrate: a timer armed before the snapshot fires once after it
#    (each of the virtual and physical EL1 timers), not early, no storm;
#  - clockwatch: CNTVCT never goes backwards across the restore.
# Prints one line per check; exits non-zero on any failure.
# Usage: cross_backend.sh HOST_VTVMM ARM64_VTVMM GUEST_DIR LAB_RUN...
host_vtvmm=${1:?usage: cross_backend.sh HOST_VTVMM ARM64_VTVMM GUEST_DIR LAB_RUN...}
lab_vtvmm=${2:?arm64 vtvmm}
g=${3:?guest dir}
shift 3
failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The guests' verdicts on a restored run's output ($1: label, $2: program, $3: file).
judge() {
  sed "s|^|  [$1] |" "$3"
  grep -q '^vtguest: exit 0' "$3" || fail "$1: the guest did not end with status 0"
  if grep -q '^not ok' "$3"; then fail "$1: $(grep -m1 '^not ok' "$3")"; fi
  case $2 in
    timer_migrate)
      for t in vtimer ptimer; do
        grep -q "^ok - timer_migrate: $t fired exactly once: irqs=1" "$3" &&
          pass "$1: the $t armed before the snapshot fired once after it" ||
          fail "$1: the $t did not fire exactly once"
      done
      grep -q "^ok - timer_migrate: no unexpected interrupts" "$3" &&
        pass "$1: no unexpected interrupts" || fail "$1: unexpected interrupts" ;;
    clockwatch)
      b=$(sed -n 's/.*cntvct backwards=\([0-9]*\).*/\1/p' "$3" | head -n 1)
      [ "$b" = 0 ] && pass "$1: CNTVCT never went backwards" || fail "$1: CNTVCT backwards '$b'" ;;
  esac
}

# 0. The lab's counter frequency (62.5 MHz on its neoverse-n1, 1 GHz on
# -cpu max): a KVM guest's CNTFRQ is its host's, so the emulated backend
# saves at that frequency (a restore on it keeps the snapshot's).
freq=$("$@" --add "$lab_vtvmm:/bin/vtvmm" -- vtvmm --probe 2>&1 | tr -d '\r' |
  sed -n 's/^counter frequency: \([0-9]*\) Hz.*/\1/p')
if [ -n "$freq" ]; then pass "the lab's counter runs at $freq Hz"; else fail "no counter frequency from the lab"; freq=62500000; fi

# 1. On the emulated backend, here: each guest saved mid-run (its timers
# armed: timer_migrate arms them at about 0.35 s).
for prog in timer_migrate clockwatch; do
  "$host_vtvmm" --backend emu --counter-frequency "$freq" --memory 32 \
    --snapshot "$tmp/emu-$prog.snap" --snapshot-after 700 "$g/$prog.elf" >"$tmp/out" 2>&1 </dev/null
  grep -q "written to $tmp/emu-$prog.snap" "$tmp/out" && pass "emu: $prog saved" ||
    { fail "emu: $prog not saved"; cat "$tmp/out"; }
done

# 2. In the lab, on KVM: the emulated backend's snapshots resumed, and the
# same guests saved there, brought back here through the console (gzip,
# base64: the RAM is mostly zeros).
"$@" --add "$lab_vtvmm:/bin/vtvmm" --add "$g:/guests" \
  --add "$tmp/emu-timer_migrate.snap:/emu-timer_migrate.snap" \
  --add "$tmp/emu-clockwatch.snap:/emu-clockwatch.snap" -- sh -c '
  for p in timer_migrate clockwatch; do
    echo "BEGIN-RUN $p"; vtvmm --timeout 120 --restore /emu-$p.snap 2>&1; echo "END-RUN $p"
    vtvmm --timeout 120 --irqchip user --memory 32 --snapshot /kvm-$p.snap --snapshot-after 700 \
      /guests/$p.elf >/dev/null 2>&1 || echo "KVM-SAVE-FAILED $p"
    echo "BEGIN-SNAP $p"; gzip -c /kvm-$p.snap | base64; echo "END-SNAP $p"
  done' >"$tmp/lab.out" 2>&1
status=$?
[ "$status" = 0 ] || fail "the lab run ended with status $status"
grep "KVM-SAVE-FAILED" "$tmp/lab.out" | while read -r _ p; do echo "FAIL kvm: $p not saved"; done
grep -q "KVM-SAVE-FAILED" "$tmp/lab.out" && failures=$((failures + 1))
for prog in timer_migrate clockwatch; do
  sed -n "/^BEGIN-RUN $prog/,/^END-RUN $prog/p" "$tmp/lab.out" | tr -d '\r' >"$tmp/run"
  judge "emu -> kvm: $prog" "$prog" "$tmp/run"
  sed -n "/^BEGIN-SNAP $prog/,/^END-SNAP $prog/p" "$tmp/lab.out" | sed '1d;$d' | tr -d '\r' |
    base64 -d 2>/dev/null | gunzip >"$tmp/kvm-$prog.snap" 2>/dev/null
  [ -s "$tmp/kvm-$prog.snap" ] && pass "kvm: $prog saved and brought back" ||
    fail "kvm: no snapshot of $prog came back"
done

# 3. Here, on the emulated backend: KVM's snapshots resumed.
for prog in timer_migrate clockwatch; do
  "$host_vtvmm" --backend emu --timeout 120 --restore "$tmp/kvm-$prog.snap" >"$tmp/run" 2>&1 </dev/null
  judge "kvm -> emu: $prog" "$prog" "$tmp/run"
done

echo "cross_backend: $failures failures"
[ "$failures" -eq 0 ]
