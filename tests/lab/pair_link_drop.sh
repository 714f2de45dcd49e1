#!/bin/sh
# Lab test (runs on the host): a live migration between two lab machines
# whose link drops half way, from each end. A runs a guest (clockwatch) and
# migrates it to B twice:
#   1. B's vtvmm is killed (SIGKILL) as soon as it has received the first
#      tenth of RAM: A must notice, keep running its guest to the end, say
#      why, and exit 0;
#   2. A's stream is cut half way (--migrate-fault truncate, the source's
#      end of the link closing): B must refuse with the reason and exit 125,
#      and A again keeps its guest.
# Usage: pair_link_drop.sh VTVMM GUEST_DIR [LAB/PAIR OPTIONS...]
set -u
vtvmm=${1:?usage: pair_link_drop.sh VTVMM GUEST_DIR [OPTIONS...]}
guests=${2:?usage: pair_link_drop.sh VTVMM GUEST_DIR [OPTIONS...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -t pair_link_drop.XXXXXX)
trap 'rm -f "$out"' EXIT

# A: each migration starts after B is listening (B starts first, A sleeps).
a='sleep 2
vtvmm --timeout 60 --insecure --memory 32 --migrate-to 10.0.0.2:4444 --migrate-after 500 \
  /guests/clockwatch.elf >/tmp/a1.out 2>&1
echo "A1 status $?"; grep -E "migration failed|never went backwards" /tmp/a1.out
sleep 2
vtvmm --timeout 60 --insecure --memory 32 --migrate-to 10.0.0.2:4445 --migrate-after 500 \
  --migrate-fault truncate /guests/clockwatch.elf >/tmp/a2.out 2>&1
echo "A2 status $?"; grep -E "migration failed|never went backwards" /tmp/a2.out'
# B: listen, and kill the first destination once RAM has started to arrive.
b='vtvmm --timeout 60 --insecure --incoming 10.0.0.2:4444 >/tmp/b1.out 2>&1 &
dst=$!
i=0
while ! grep -q "migration: received" /tmp/b1.out; do
  i=$((i + 1)); [ "$i" -gt 600 ] && break; sleep 0.05
done
kill -KILL "$dst"; wait "$dst"
echo "B1 killed after: $(grep "migration: received" /tmp/b1.out | head -n 1)"
vtvmm --timeout 60 --insecure --incoming 10.0.0.2:4445 >/tmp/b2.out 2>&1
echo "B2 status $?"; grep "refusing" /tmp/b2.out'

. "$here/pair_common.sh"
run_pair "$out" "$@" --add "$vtvmm:/bin/vtvmm" --add "$guests:/guests" --a "$a" --b "$b"
cat "$out"
[ "$status" != 125 ] || { echo "FAIL: the lab failed"; exit 125; }

grep -q '^\[B\] B1 killed after: .*migration: received' "$out" &&
  pass "B's vtvmm was killed in the middle of the transfer" || fail "B was not killed mid-transfer"
for n in 1 2; do
  grep -q "^\[A\] A$n status 0" "$out" && pass "A: run $n exited 0" || fail "A: run $n status"
done
[ "$(grep -c '^\[A\] vtvmm: migration failed: .*the guest keeps running here' "$out")" = 2 ] &&
  pass "A: both failed migrations said why and kept the guest" || fail "A: migration failures"
[ "$(grep -c '^\[A\] ok - clockwatch: cntvct never went backwards' "$out")" = 2 ] &&
  pass "A: the guest ran to the end both times" || fail "A: the guest did not finish"
grep -q '^\[B\] B2 status 125' "$out" && grep -q '^\[B\] vtvmm: refusing the incoming migration: ' "$out" &&
  pass "B: refused the cut stream with the reason" || fail "B: no clean refusal"
echo "pair_link_drop: $failures failure(s)"
[ "$failures" -eq 0 ]
