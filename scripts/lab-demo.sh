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
echo
echo "demo: done"
