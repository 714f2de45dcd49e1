#!/bin/sh
# By hand: how often a lab machine stops running user code on all its CPUs at
# once, with no VMM in it. vtvmm's own part of a resume (the start gate, from
# the final offset to each vCPU's KVM_RUN) is a few loads and a store on each
# lab CPU; when it is slow, both vCPUs are late by about the same time. This
# runs, on lab machine B of a pair (A idle, as a migration source is while
# the destination resumes), one vtime-clockwatch busy loop pinned to each of
# its two CPUs for SECS seconds (default 30), every CNTVCT step over
# THRESHOLD_US (default 100) logged, and counts the steps and the ones that
# both CPUs saw at the same moment (overlapping within 50 us).
# Usage: tests/lab/lab_stalls.sh GUEST_TOOLS_DIR [LAB/PAIR OPTIONS...]
#   e.g. tests/lab/lab_stalls.sh build/aarch64/guest-tools --timeout 300 --cpu neoverse-n1
set -u
tools=${1:?usage: lab_stalls.sh GUEST_TOOLS_DIR [LAB/PAIR OPTIONS...]}
shift
secs=${SECS:-30}
threshold=${THRESHOLD_US:-100}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -t lab_stalls.XXXXXX)
trap 'rm -f "$out"' EXIT
. "$here/pair_common.sh"
b="for c in 0 1; do taskset -c \$c vtime-clockwatch --duration $secs --threshold-us $threshold \
--max-log 100000 >/tmp/cw\$c.out 2>&1 & done; wait;
for c in 0 1; do sed -n \"s/^vtime-clockwatch: step clock=CNTVCT t_ns=[0-9]* from=\\([0-9]*\\) to=\\([0-9]*\\).*/cpu\$c \\1 \\2/p\" /tmp/cw\$c.out; done;
grep -h 'summary clock=CNTVCT' /tmp/cw0.out /tmp/cw1.out"
run_pair "$out" "$@" --add "$tools/vtime-clockwatch:/bin/vtime-clockwatch" \
  --a "sleep $((secs + 5))" --b "$b"
[ "$status" = 0 ] || { cat "$out"; echo "FAIL: lab/pair status $status"; exit 1; }
grep "summary" "$out"
# Steps are CNTVCT intervals [from, to] in ticks (62.5 MHz: 16 ns each); a
# stop of the whole machine shows on both CPUs as overlapping intervals.
sed -n 's/^\[B\] cpu\([01]\) \([0-9]*\) \([0-9]*\)$/\1 \2 \3/p' "$out" | awk -v secs="$secs" -v th="$threshold" '
  { cpu[NR] = $1; from[NR] = $2; to[NR] = $3; n[$1]++; len = ($3 - $2) * 16 / 1000
    if (len > max) max = len; if (len > 500) big++ }
  END {
    for (i = 1; i <= NR; i++) if (cpu[i] == 0)
      for (j = 1; j <= NR; j++) if (cpu[j] == 1 &&
          from[j] < to[i] + 3125 && from[i] < to[j] + 3125) { both++; break }
    printf "FIGURE lab_stalls secs=%d threshold_us=%d steps_cpu0=%d steps_cpu1=%d on_both_cpus_at_once=%d over_500_us=%d largest_us=%.0f\n",
      secs, th, n[0], n[1], both, big, max }'
