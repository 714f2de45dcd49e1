#!/bin/sh
# Lab test (runs on the host): two lab machines linked by lab/pair; B steps
# its CLOCK_REALTIME to A's with vtime-clocksync, over TLS with a pre-shared
# key made for this run, taking the best of 256 exchanges, and must end
# within 5 ms of it (the error bound after the step, half the best round
# trip: 0.5-1.6 ms on a quiet machine; a loaded CI machine once gave 2.4 ms
# with 64 exchanges). Prints the figures; exits 0
# when they are right, 1 when not, 125 when the lab failed.
# Usage: pair_smoke.sh CLOCKSYNC [LAB/PAIR OPTIONS...]
#   CLOCKSYNC  the arm64 vtime-clocksync binary; options (e.g. --cpu MODEL,
#              --timeout S) go to lab/pair.
set -u
clocksync=${1:?usage: pair_smoke.sh CLOCKSYNC [LAB/PAIR OPTIONS...]}
shift
[ -f "$clocksync" ] || { echo "FAIL: '$clocksync' does not exist"; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -t pair_smoke.XXXXXX)
psk_dir=
trap 'rm -f "$out"; rm -rf "$psk_dir"' EXIT

. "$here/pair_common.sh"
make_psk
run_pair "$out" "$@" --add "$clocksync:/bin/vtime-clocksync" --add "$psk:$guest_psk" \
    --a "vtime-clocksync serve 10.0.0.1:5555 --tls-psk $guest_psk" \
    --b "sleep 1; vtime-clocksync sync 10.0.0.1 5555 --rounds 256 --apply --tls-psk $guest_psk"
cat "$out"
[ "$status" != 125 ] || { echo "FAIL: the lab failed (see lab: lines above)"; exit 125; }

# field LINE-PATTERN KEY: the value of KEY= on B's first line matching the pattern.
field() { grep "^\[B\] clocksync: $1" "$out" | head -n 1 | sed -n "s/.* $2=\(-\{0,1\}[0-9]*\).*/\1/p"; }

if [ "$status" = 0 ]; then pass "both commands succeeded"; else fail "lab/pair exited with $status"; fi
if grep -q '^\[A\] clocksync: served [1-9]' "$out"; then
  pass "A served the exchanges"
else
  fail "A did not report serving"
fi
if grep -q "^\[B\] clocksync: link: TLS 1.3 .*, PSK identity 'vtvmm'" "$out" &&
  grep -q "^\[A\] clocksync: client 10.0.0.2 port [0-9]*: TLS 1.3 .*, PSK identity 'vtvmm'" \
    "$out"; then
  pass "A and B authenticated each other with the PSK (TLS 1.3)"
else
  fail "no TLS 1.3 PSK link reported by both A and B"
fi

before_offset=$(field offset_ns offset_ns)
before_bound=$(field offset_ns error_bound_ns)
after_offset=$(field 'after ' offset_ns)
after_bound=$(field 'after ' error_bound_ns)
counter=$(sed -n 's/^\[B\] clocksync: counter_difference_ticks=\(-\{0,1\}[0-9]*\)$/\1/p' "$out")
echo "figures: offset before ${before_offset:-?} ns (bound ${before_bound:-?} ns)," \
  "after ${after_offset:-?} ns (bound ${after_bound:-?} ns), counter difference A-B" \
  "${counter:-?} ticks"

if [ -n "$before_offset" ] && [ -n "$before_bound" ]; then
  pass "B measured its offset to A"
else
  fail "no offset measurement from B"
fi
if [ -n "$after_bound" ] && [ "$after_bound" -lt 5000000 ]; then
  pass "error bound after the step: $after_bound ns < 5 ms"
else
  fail "error bound after the step '${after_bound:-missing}' is not below 5 ms"
fi
# After the step the measured offset must lie within the bound (plus the
# bound of the first measurement, which the step carried).
if [ -n "$after_offset" ] && [ -n "$after_bound" ] && [ -n "$before_bound" ]; then
  abs=${after_offset#-}
  if [ "$abs" -le $((after_bound + before_bound)) ]; then
    pass "offset after the step: $after_offset ns"
  else
    fail "offset after the step $after_offset ns exceeds the bounds ($before_bound + $after_bound ns)"
  fi
fi
# A was started first, so its counter is ahead of B's.
if [ -n "$counter" ] && [ "$counter" -gt 0 ]; then
  pass "counter difference A-B: $counter ticks"
else
  fail "counter difference '${counter:-missing}' is not positive (A started first)"
fi

[ "$failures" = 0 ] || { echo "$failures check(s) failed"; exit 1; }
echo "all checks passed"
