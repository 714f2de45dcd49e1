#!/bin/sh
# Runs inside the lab for scripts/demo: a few guest programs under vtvmm.
say() { printf '\n### %s\n$ %s\n' "$1" "$2"; }
say "What this host's KVM offers" "vtvmm --probe"
vtvmm --probe
say "The guest's counters under a VM offset chosen so that they start at 1000000" \
    "vtvmm --guest-counter 1000000 /guests/counters.elf"
vtvmm --guest-counter 1000000 /guests/counters.elf
say "Timers firing through the in-kernel vGICv3 into the guest's vector table" \
    "vtvmm --stats /guests/timer.elf"
vtvmm --stats /guests/timer.elf
say "1000 timer interrupts through the user-space irqchip (seed 004): exits per interrupt" \
    "vtvmm --irqchip user --stats /guests/timer_storm.elf"
vtvmm --irqchip user --stats /guests/timer_storm.elf
say "Counters stay causal across two vCPUs" "vtvmm --cpus 2 /guests/smp.elf"
vtvmm --cpus 2 /guests/smp.elf
ip link set lo up 2>/dev/null
say "Live migration to a second vtvmm (pre-copy, over loopback): timers armed before the move fire once after it" \
    "vtvmm --insecure --incoming 127.0.0.1:4444 & vtvmm --insecure --memory 32 --migrate-to 127.0.0.1:4444 --migrate-after 800 /guests/timer_migrate.elf"
vtvmm --timeout 60 --insecure --incoming 127.0.0.1:4444 --policy freeze 2>&1 | grep -v "migration: received" &
sleep 0.5
vtvmm --timeout 60 --insecure --memory 32 --migrate-to 127.0.0.1:4444 --migrate-after 800 /guests/timer_migrate.elf 2>&1 |
    grep -E "migrat|timer_migrate: gic"
wait
say "Linux on vtvmm: Debian's arm64 kernel, its console (the virtio console, hvc0) driven from here, its date from the PL031, KVM's PTP clock, and stolen time with both vCPU threads on one CPU" \
    "taskset -c 0 vtvmm --cpus 2 --console virtio --kernel /boot/Image --initrd /boot/initrd.gz --append quiet"
rm -f /tmp/demo.fifo
mkfifo /tmp/demo.fifo
taskset -c 0 vtvmm --timeout 120 --cpus 2 --console virtio --kernel /boot/Image \
  --initrd /boot/initrd.gz --append quiet --stats </tmp/demo.fifo >/tmp/demo.out 2>&1 &
vm=$!
exec 3>/tmp/demo.fifo
i=0
until grep -q "shell on the console" /tmp/demo.out || [ "$i" -ge 600 ]; do
  sleep 0.1
  i=$((i + 1))
done
sleep 0.5
for cmd in 'uname -a' 'date -u' 'dmesg | grep -E "arm-pv|rtc-pl031|ptp|hvc|virtio"' \
  'vtime-ptp --count 2' \
  '(taskset 1 sh -c "while :; do :; done" &); (taskset 2 sh -c "while :; do :; done" &); sleep 3' \
  'grep -E "^cpu[01] " /proc/stat | awk "{ print \$1, \"steal\", \$9 * 10, \"ms\" }"' 'exit'; do
  printf '%s\n' "$cmd" >&3
done
exec 3>&-
wait "$vm"
sed -n '/~ #/,$p' /tmp/demo.out | tr -d '\033' | sed 's/\[6n//g'
echo "(the lab machine's own date: $(date -u))"

say "The same Linux live-migrated to a second vtvmm (pre-copy over loopback, policy wallclock) while it prints its clocks; both vCPU threads on one CPU" \
    "vtvmm --incoming 127.0.0.1:4445 & vtvmm --migrate-to 127.0.0.1:4445 --kernel ... --append 'quiet vtime.demo=1'; kill -USR2 <source> at t=4"
taskset -c 0 vtvmm --timeout 120 --insecure --incoming 127.0.0.1:4445 --policy wallclock \
  >/tmp/dst.out 2>&1 </dev/null &
dst=$!
sleep 0.5
taskset -c 0 vtvmm --timeout 120 --insecure --cpus 2 --memory 192 --console virtio \
  --kernel /boot/Image --initrd /boot/initrd.gz --append "quiet vtime.demo=1" \
  --migrate-to 127.0.0.1:4445 >/tmp/src.out 2>&1 </dev/null &
src=$!
i=0
until grep -q "vtime-guest: t=4 " /tmp/src.out || [ "$i" -ge 900 ]; do
  sleep 0.1
  i=$((i + 1))
done
kill -USR2 "$src"
wait "$src"
wait "$dst"
echo "-- on the source:"
grep -E "vtime-guest: (demo|t=)|vtvmm: migrated" /tmp/src.out
echo "-- on the destination:"
grep -E "vtime-guest|vtvmm: resumed|vtvmm: resume: the final" /tmp/dst.out
echo "-- the report:"
echo "  downtime: $(sed -n 's/.*the guest was paused here for \([0-9]*\) ms.*/\1 ms/p' /tmp/src.out) (source), away $(sed -n 's/.*away \([0-9]*\) ns by the two.*/\1 ns/p' /tmp/dst.out) by the two vtvmm's wall clocks"
echo "  the guest's largest CLOCK_MONOTONIC step: $(sed -n 's/.*summary clock=CLOCK_MONOTONIC .*max_forward_ns=\([0-9]*\).*/\1 ns/p' /tmp/dst.out) (the move: under wallclock the time away, and the wait of two vCPUs for one CPU)"
before=$(grep "vtime-guest: t=" /tmp/src.out | tail -n 1 | sed -n 's/.* offset from the host \(-\{0,1\}[0-9]*\) ns.*/\1/p')
after=$(grep "vtime-guest: t=" /tmp/dst.out | head -n 1 | sed -n 's/.* offset from the host \(-\{0,1\}[0-9]*\) ns.*/\1/p')
[ -n "$before" ] && [ -n "$after" ] &&
  echo "  the wall-clock offset from the host across the move: $before -> $after ns (change $((after - before)) ns)"
echo "  steal time: $(grep -E "vtime-guest: cpu[01] steal" /tmp/dst.out | sed 's/vtime-guest: //' | tr '\n' ' ')"
echo
echo "demo: done"
