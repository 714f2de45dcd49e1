#!/bin/sh
# Runs in a Linux guest of vtvmm (tests/lab/trace_marker.sh puts it in the
# guest's initramfs as /etc/vtime/init.d/50-trace-marker, so /init runs it
# before the shell): the guest's clock samples, then trace-cmd recording the
# guest's own trace while vtime-mark marks 20 moments (each in the guest's
# trace through trace_marker, and for the host through vtvmm's trace-marker
# register via /dev/mem). Prints vtime-mark's lines and the guest's report
# lines of the marks, then each file gzip'd and base64'd between
# "vtime-guest-file BEGIN NAME" and "vtime-guest-file END NAME" lines, and
# powers the guest off.
cd /tmp || exit 1
tc=/trace-cmd/trace-cmd
[ -e /sys/kernel/tracing/trace ] || mount -t tracefs nodev /sys/kernel/tracing
echo "vtime-guest: trace clock: $(cat /sys/kernel/tracing/trace_clock)"
vtime-clocksample --samples 10 --interval-ms 20 --machine "vtvmm linux guest" \
  --output guest.samples 2>&1
# The kernel's symbols would make the file 1.2 MB, carried by the console a
# byte per exit: an empty file stands in for /proc/kallsyms.
: >kallsyms.empty
mount -o bind kallsyms.empty /proc/kallsyms
# trace_marker writes reach the trace while tracing is on, whatever the
# events; sched_switch gives the trace something of its own beside them.
"$tc" record -e sched:sched_switch -o guest.dat \
  sh -c 'vtime-mark --count 20 --interval-ms 10 >mark.out 2>&1; echo $? >mark.status' \
  >record.out 2>&1
echo "vtime-guest: trace-cmd record status $? vtime-mark status $(cat mark.status)"
umount /proc/kallsyms
cat mark.out
"$tc" report -t -i guest.dat >guest.txt 2>report.err || cat report.err
grep 'vtime-mark ' guest.txt | sed 's/^/vtime-guest: report: /'
for f in guest.dat guest.txt guest.samples; do
  echo "vtime-guest-file BEGIN $f"
  gzip -c "$f" | base64
  echo "vtime-guest-file END $f"
done
echo "vtime-guest: trace_marker done"
poweroff -f
