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
echo
echo "demo: done"
