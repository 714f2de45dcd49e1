#!/bin/sh
# Lab test (runs on the host): a vEL2 VM with a nested guest moved between
# two lab machines that boot Debian's newest kernel with nested
# virtualization (issue #12). el2_watch_long (a guest hypervisor and its
# nested guest taking turns, each watching its counters and keeping one
# timer armed, for 60 s of guest time) is migrated live A -> B -> A ... ten times under freeze, then
# snapshotted to a file on A and restored from it, and finishes on A.
# Neither level may see a counter go back, and every armed timer must fire
# exactly once (a move always lands while one is armed at each level).
# Usage: pair_el2.sh VTVMM GUEST_DIR [LAB/PAIR OPTIONS...]
set -u
vtvmm=${1:?usage: pair_el2.sh VTVMM GUEST_DIR [OPTIONS...]}
guests=${2:?usage: pair_el2.sh VTVMM GUEST_DIR [OPTIONS...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -t pair_el2.XXXXXX)
psk_dir=
trap 'rm -f "$out"; rm -rf "$psk_dir"' EXIT
. "$here/pair_common.sh"
make_psk
hops=10
every=500   # ms the guest runs on a host before it moves on
link="--tls-psk $guest_psk"
common="--timeout 150 --memory 32 --policy freeze $link"

a="vtvmm --timeout 150 --el2 --memory 32 $link --migrate-to 10.0.0.2:4444 --migrate-after $every \
  /guests/el2_watch_long.elf || exit 1"
h=2
while [ $h -le $hops ]; do
  if [ $h -eq $hops ]; then
    a="$a; vtvmm $common --incoming 10.0.0.1:4444 --snapshot /tmp/final.snap --snapshot-after $every || exit 1"
    a="$a; vtvmm --timeout 150 --policy freeze --restore /tmp/final.snap || exit 1"
  else
    a="$a; vtvmm $common --incoming 10.0.0.1:4444 --migrate-to 10.0.0.2:4444 --migrate-after $every || exit 1"
  fi
  h=$((h + 2))
done
b="true"
h=1
while [ $h -lt $hops ]; do
  b="$b; vtvmm $common --incoming 10.0.0.2:4444 --migrate-to 10.0.0.1:4444 --migrate-after $every || exit 1"
  h=$((h + 2))
done

run_pair "$out" --kernel newest --append kvm-arm.mode=nested --cpu neoverse-v1 "$@" \
  --add "$vtvmm:/bin/vtvmm" --add "$psk:$guest_psk" --add "$guests:/guests" --a "$a" --b "$b"
grep -vE "migration: (sent|received) [0-9.]+ of" "$out"
[ "$status" != 125 ] || { echo "FAIL: the lab failed"; exit 125; }

[ "$status" = 0 ] && pass "every vtvmm on both machines succeeded" || fail "status $status"
grep -q "no nested virtualization on this kernel" "$out" && fail "a lab machine has no nested virtualization"
moved=$(grep -c "vtvmm: migrated to" "$out")
[ "$moved" = "$hops" ] && pass "the vEL2 VM moved $hops times" || fail "it moved $moved times"
resumed=$(grep -c "vtvmm: resumed (policy freeze)" "$out")
[ "$resumed" = $((hops + 1)) ] && pass "$hops migrations and one restore from a file resumed it" ||
  fail "$resumed resumes, expected $((hops + 1))"
grep -E "^\[[AB]\] el2_watch: l[12] " "$out" | sed 's/^\[[AB]\] /FIGURE pair_el2: /'
for what in "l1 cntpct and cntvct never went backwards" "l2 cntvct and cntpct never went backwards" \
  "l2 cntvct = cntpct - cntvoff_el2 within the read window" "l1 cnthp: one IRQ per arming" \
  "l1 cnthp: none before cval" "l2 cntv: one IRQ per arming" "l2 cntv: none before cval" \
  "l1 cnthp: none later than" "l2 cntv: none later than" "no other interrupts"; do
  if grep -q "ok - el2_watch: $what" "$out" && ! grep -q "not ok - el2_watch: $what" "$out"; then
    pass "over $hops migrations and a restore: $what"
  else
    fail "el2_watch: $what"
  fi
done
grep -q "not ok" "$out" && fail "a not ok line (above)"
grep -q "vtguest: exit 0" "$out" && pass "el2_watch finished with status 0" || fail "el2_watch did not exit 0"
echo "pair_el2: $failures failure(s)"
[ "$failures" -eq 0 ]
