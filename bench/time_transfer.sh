#!/bin/sh
# Runs inside the arm64 lab (see scripts/bench --lab): the same snapshot and
# restore done two ways, for 1, 8 and 64 vCPUs, and a Markdown table of what
# the guest's virtual counter has moved by when the vCPUs are about to run,
# and of the guest-time ioctls:
#  - offsets: vtime (the offsets and one capture pair, one VM ioctl);
#  - values:  what VMMs do today (CNTVCT/CNTPCT read per vCPU at pause and
#             written back per vCPU at resume, each write sampling "now").
# Under freeze the ideal step is 0; whatever is left is the error.
# Usage: time_transfer.sh GUEST_DIR
g=${1:?usage: time_transfer.sh GUEST_DIR}
freq=$(vtvmm --probe | sed -n 's/^counter frequency: \([0-9]*\) Hz/\1/p')
echo "| vCPUs | method | step at resume, min..max (ticks) | (µs) | VM offset ioctls | counter-value writes (per vCPU) | guest saw CNTVCT go back |"
echo "|---|---|---|---|---|---|---|"
for n in 1 8 64; do
  for m in offsets values; do
    vtvmm --cpus "$n" --memory 32 --time-transfer "$m" --snapshot /tmp/c.snap \
      --snapshot-after 1500 "$g/clockwatch.elf" >/dev/null 2>&1 || { echo "snapshot failed"; exit 1; }
    out=$(vtvmm --restore /tmp/c.snap 2>&1)
    line=$(printf '%s\n' "$out" | grep "vtvmm: resume:")
    lo=$(printf '%s\n' "$line" | sed -n 's/.*min \(-*[0-9]*\) max.*/\1/p')
    hi=$(printf '%s\n' "$line" | sed -n 's/.*max \(-*[0-9]*\) ticks.*/\1/p')
    vm=$(printf '%s\n' "$line" | sed -n 's/.*ioctls: \([0-9]*\) VM offset.*/\1/p')
    cw=$(printf '%s\n' "$line" | sed -n 's/.*, \([0-9]*\) counter-value writes.*/\1/p')
    back=$(printf '%s\n' "$out" | sed -n 's/.*cntvct backwards=\([0-9]*\).*/\1/p')
    echo "| $n | $m | $lo..$hi | $((lo * 1000000 / freq))..$((hi * 1000000 / freq)) | $vm | $cw ($((cw / n))) | $([ "$back" = 0 ] && echo no || echo "yes ($back)") |"
  done
done
rm -f /tmp/c.snap
echo
echo "counter frequency $freq Hz"
