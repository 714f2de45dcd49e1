#!/bin/sh
# The Linux guest's part of scripts/demo's migration (an /etc/vtime/init.d
# script, active only with vtime.demo=1 on the kernel command line): a busy
# loop on vCPU 1, the clocks once a second (uptime, date, the wall-clock
# offset from the host by /dev/ptp0) while the VMM moves the guest, then
# what vtime-clockwatch saw, the guest's steal time, and power-off.
grep -qw 'vtime.demo=1' /proc/cmdline || exit 0
echo "vtime-guest: demo: the clocks once a second; the VMM moves this guest meanwhile"
vtime-clockwatch --duration 14 --threshold-us 50000 --interval-us 1000 --max-log 8 >/tmp/cw.out &
cw=$!
(taskset 2 sh -c 'while :; do :; done') &
busy=$!
i=0
while [ "$i" -lt 12 ]; do
  i=$((i + 1))
  off=$(vtime-ptp --count 1 | sed -n 's/.* offset_ns=\(-\{0,1\}[0-9]*\).*/\1/p')
  echo "vtime-guest: t=$i uptime=$(cut -d' ' -f1 /proc/uptime) s date=$(date -u +%T) wall-clock offset from the host ${off:-?} ns"
  sleep 1
done
wait "$cw"
kill "$busy" 2>/dev/null
grep -E "step clock=CLOCK_MONOTONIC|summary clock=CLOCK_MONOTONIC|CLOCK_MONOTONIC never" /tmp/cw.out |
  sed 's/^/vtime-guest: /'
grep -E "^cpu[01] " /proc/stat | awk '{ printf "vtime-guest: %s steal %d ms\n", $1, $9 * 10 }'
poweroff -f
