#!/bin/sh
# Runs one guest program on QEMU's own emulation of the Arm architecture
# (virt machine, TCG, the guest at EL1: no KVM, no vtvmm) and exits with the
# guest's status. The same programs run under vtvmm on real KVM in the lab;
# passing here as well shows that what they check is the architecture's
# behaviour, not an artefact of vtime's VMM.
# Usage: run-on-qemu.sh ELF GIC_VERSION CPUS
set -u
elf=${1:?usage: run-on-qemu.sh ELF GIC_VERSION CPUS}
gic=${2:?gic version}
cpus=${3:-1}
log=$(timeout 120 qemu-system-aarch64 -M "virt,gic-version=$gic" -cpu max -smp "$cpus" -m 256M \
  -nographic -no-reboot -kernel "$elf" 2>&1)
printf '%s\n' "$log"
code=$(printf '%s\n' "$log" | sed -n 's/^vtguest: exit \([0-9]*\).*/\1/p' | tail -n 1)
if [ -z "$code" ]; then
  echo "run-on-qemu: the guest ended without reporting a status" >&2
  exit 1
fi
exit "$code"
