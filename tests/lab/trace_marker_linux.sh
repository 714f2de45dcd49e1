#!/bin/sh
# Runs in a Linux guest of vtvmm (tests/lab/trace_marker.sh puts it in the
# guest's initramfs as /etc/vtime/init.d/50-trace-marker, so /init runs it
# before the shell): the guest's clock samples, then trace-cmd recording the
# guest's own trace while vtime-mark marks 20 moments 10 ms apart (each in
# the guest's trace through trace_marker, and for the host through vtvmm's
# trace-marker register via /dev/mem); vtime.marks=N and
# vtime.mark_interval_ms=MS on the kernel command line change the two (the
# two-machine proof, trace_marker_pair.sh, marks across its moves). Says
# "vtime-guest: marking" on the console as the marks begin, prints
# vtime-mark's lines and the guest's report lines of the marks, then each
# file gzip'd and base64'd between "vtime-guest-file BEGIN NAME" and
# "vtime-guest-file END NAME" lines (trace_marker_common.sh's files_out), and
# powers the guest off.
. /bin/trace_marker_common.sh
cd /tmp || exit 1
count=$(sed -n 's/.*vtime\.marks=\([0-9]*\).*/\1/p' /proc/cmdline)
interval=$(sed -n 's/.*vtime\.mark_interval_ms=\([0-9]*\).*/\1/p' /proc/cmdline)
tc=/trace-cmd/trace-cmd
tracefs_up
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
  sh -c "echo 'vtime-guest: marking' >/dev/console
    vtime-mark --count ${count:-20} --interval-ms ${interval:-10} >mark.out 2>&1; echo \$? >mark.status" \
  >record.out 2>&1
echo "vtime-guest: trace-cmd record status $? vtime-mark status $(cat mark.status)"
umount /proc/kallsyms
cat mark.out
"$tc" report -t -i guest.dat >guest.txt 2>report.err || cat report.err
grep 'vtime-mark ' guest.txt | sed 's/^/vtime-guest: report: /'
files_out vtime-guest-file guest.dat guest.txt guest.samples
echo "vtime-guest: trace_marker done"
poweroff -f
