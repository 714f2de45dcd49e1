#!/bin/sh
# Lab test (runs on the host): two lab machines, A (10.0.0.1) and B
# (10.0.0.2), started seconds apart so their counters differ as real hosts'
# do; B's wall clock is stepped to A's. A guest watching its counters
# (clockwatch_long, 40 s of guest time) is migrated A -> B -> A ... ten times
# under POLICY, then snapshotted to a file on A and restored from it, and
# finishes on A: it must never see either counter go back. Each pause's step,
# as the guest logged it, is matched with the pause and judged by
# pause_steps.pl, which prints the figures.
# Usage: pair_migrate.sh POLICY VTVMM CLOCKSYNC GUEST_DIR [LAB/PAIR OPTIONS...]
set -u
policy=${1:?usage: pair_migrate.sh POLICY VTVMM CLOCKSYNC GUEST_DIR [OPTIONS...]}
vtvmm=$2 clocksync=$3 guests=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -t pair_migrate.XXXXXX)
psk_dir=
trap 'rm -f "$out"; rm -rf "$psk_dir"' EXIT
. "$here/pair_common.sh"
make_psk
hops=10
every=1000  # ms a guest runs on a host before it moves on
# The migration links' credentials (plain TCP inside the lab's private link).
link="--insecure"
common="--timeout 120 --memory 16 --policy $policy $link"

# A: serve the clock over TLS with this run's PSK (while both machines are
# idle: the exchanges are then quickest), start the guest (hop 1 goes to B),
# then take it back on every even hop and send it on every odd one; the last
# one snapshots it to a file and a restore from that file runs it to the end.
a="vtime-clocksync serve 10.0.0.1:5555 --tls-psk $guest_psk >/tmp/cs.out 2>&1 || exit 1;
vtvmm --timeout 120 --memory 16 $link --migrate-to 10.0.0.2:4444 --migrate-after $every \
  /guests/clockwatch_long.elf || exit 1"
h=2
while [ $h -le $hops ]; do
  if [ $h -eq $hops ]; then
    a="$a; vtvmm $common --incoming 10.0.0.1:4444 --snapshot /tmp/final.snap --snapshot-after $every || exit 1"
    a="$a; vtvmm --timeout 120 --policy $policy --restore /tmp/final.snap || exit 1"
  else
    a="$a; vtvmm $common --incoming 10.0.0.1:4444 --migrate-to 10.0.0.2:4444 --migrate-after $every || exit 1"
  fi
  h=$((h + 2))
done
a="$a; cat /tmp/cs.out"
# B: step the clock to A's, then take the guest on every odd hop and send it back.
b="sleep 2; vtime-clocksync sync 10.0.0.1 5555 --apply --tls-psk $guest_psk || exit 1"
h=1
while [ $h -lt $hops ]; do
  b="$b; vtvmm $common --incoming 10.0.0.2:4444 --migrate-to 10.0.0.1:4444 --migrate-after $every || exit 1"
  h=$((h + 2))
done

run_pair "$out" "$@" --add "$vtvmm:/bin/vtvmm" --add "$clocksync:/bin/vtime-clocksync" \
  --add "$psk:$guest_psk" --add "$guests:/guests" --a "$a" --b "$b"
grep -vE "clockwatch: t=|migration: (sent|received) [0-9.]+ of|^\[[AB]\] cws " "$out"
[ "$status" != 125 ] || { echo "FAIL: the lab failed"; exit 125; }

[ "$status" = 0 ] && pass "every vtvmm on both machines succeeded" || fail "status $status"
moved=$(grep -c "vtvmm: migrated to" "$out")
[ "$moved" = "$hops" ] && pass "the guest moved $hops times" || fail "the guest moved $moved times"
for c in cntvct cntpct; do
  line=$(grep "clockwatch: $c backwards=" "$out" | tail -n 1)
  echo "FIGURE $policy, $hops migrations: $line"
  case "$line" in
    *"$c backwards=0 "*) pass "$c never went backwards over $hops migrations" ;;
    *) fail "$c: '$line'" ;;
  esac
done
grep "clocksync: after" "$out" | sed 's/^/FIGURE /'
resumed=$(grep -c "vtvmm: resumed (policy $policy)" "$out")
[ "$resumed" = $((hops + 1)) ] && pass "$hops migrations and one restore from a file resumed the guest" ||
  fail "$resumed resumes, expected $((hops + 1))"
if perl "$here/pause_steps.pl" <"$out"; then
  pass "every pause found in the guest's step log, no time seen (freeze) or lost (wallclock)"
else
  fail "pause_steps.pl (above)"
fi
echo "pair_migrate ($policy): $failures failure(s)"
[ "$failures" -eq 0 ]
