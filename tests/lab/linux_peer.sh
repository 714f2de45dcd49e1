#!/bin/sh
# Runs inside the arm64 lab: the same Debian arm64 Linux Image and the same
# initramfs (guests/linux/mkinitramfs) booted to a shell prompt by two VMMs on the
# same KVM, side by side: vtvmm and Debian's arm64 QEMU (lab/setup-qemu-peer,
# -accel kvm), alternating, RUNS runs each (environment, default 1; the
# README's figures are from 2), 2 vCPUs, 256 MiB, `quiet`.
# Each boot waits for the shell's prompt and types a command into it
# (test_boot, linux_common.sh). Checks for each run: the shell took the
# command, 2 CPUs, the guest's date (from the PL031 each VMM provides) is
# the lab's. Prints the wall time to the prompt and the guest's uptime
# there for both (FIGURE
# lines) and the mean of each. Exits non-zero on any failure.
# Usage (host): linux_peer.sh host VTVMM [LAB/RUN OPTIONS...]
#        (lab):  linux_peer.sh lab IMAGE INITRD PEER_DIR [RUNS]   (vtvmm on PATH)
mode=${1:?usage: linux_peer.sh host|lab ...}
shift
if [ "$mode" = host ]; then
  vtvmm=${1:?vtvmm}
  shift
  here=$(cd "$(dirname "$0")" && pwd)
  lab=$here/../../lab
  # The peer is part of the test: if it cannot be set up, the test fails.
  "$lab/setup-qemu-peer" --quiet ||
    { echo "FAIL: lab/setup-qemu-peer could not set up the peer QEMU"; exit 1; }
  . "$here/linux_common.sh"
  linux_files "$vtvmm"
  exec "$lab/run" "$@" --add "$vtvmm:/bin/vtvmm" --add "$lab/cache/qemu-peer:/peer" \
    --add "$kernel:/boot/Image" --add "$initrd:/boot/initrd.gz" \
    --add "$here/linux_peer.sh:/bin/linux_peer.sh" \
    --add "$here/linux_common.sh:/bin/linux_common.sh" \
    -- sh /bin/linux_peer.sh lab /boot/Image /boot/initrd.gz /peer "${RUNS:-1}"
fi
img=${1:?usage: linux_peer.sh lab IMAGE INITRD PEER_DIR}
initrd=${2:?usage: linux_peer.sh lab IMAGE INITRD PEER_DIR}
peer=${3:?usage: linux_peer.sh lab IMAGE INITRD PEER_DIR}
runs=${4:-1}
out=/tmp/linux_peer.out
rcfile=/tmp/linux_peer.rc
. "$(dirname "$0")/linux_common.sh"
append="console=ttyAMA0 quiet"

vm_vtvmm() {
  vtvmm --timeout 100 --cpus 2 --memory 256 --kernel "$img" --initrd "$initrd" --append "$append"
}
# Busybox has no /lib/ld-linux-aarch64.so.1: start QEMU through its loader.
vm_qemu() {
  timeout 100 "$peer/lib/ld-linux-aarch64.so.1" --library-path "$peer/lib" \
    "$peer/bin/qemu-system-aarch64" -M virt,gic-version=3 -accel kvm -cpu host -smp 2 -m 256 \
    -nographic -nodefaults -serial stdio -no-reboot \
    -kernel "$img" -initrd "$initrd" -append "$append"
}

"$peer/lib/ld-linux-aarch64.so.1" --library-path "$peer/lib" "$peer/bin/qemu-system-aarch64" \
  --version >"$out" 2>&1 && pass "peer: $(head -n 1 "$out")" ||
  { fail "peer: qemu-system-aarch64 does not start: $(head -n 3 "$out")"; }

sum_vtvmm_wall=0 sum_vtvmm_up=0 n_vtvmm=0
sum_qemu_wall=0 sum_qemu_up=0 n_qemu=0

# boot VMM RUN: one boot, checked by test_boot; adds to the means.
boot() {
  vmm=$1
  test_boot "$1/run$2" 2 "vm_$vmm" || return
  echo "FIGURE linux_peer vmm=$vmm run=$2 cpus=2 mem_mib=256 console=quiet guest_uptime_at_prompt_s=$up wall_to_prompt_s=$wall"
  eval "sum_${vmm}_wall=\$(awk -v s=\"\$sum_${vmm}_wall\" -v x=$wall 'BEGIN { print s + x }')"
  eval "sum_${vmm}_up=\$(awk -v s=\"\$sum_${vmm}_up\" -v x=$up 'BEGIN { print s + x }')"
  eval "n_${vmm}=\$((n_${vmm} + 1))"
}

# Alternating, so that a change in the lab's load falls on both.
for run in $(seq "$runs"); do
  boot vtvmm "$run"
  boot qemu "$run"
done

for vmm in vtvmm qemu; do
  eval "n=\$n_$vmm w=\$sum_${vmm}_wall u=\$sum_${vmm}_up"
  [ "$n" -gt 0 ] || continue
  echo "FIGURE linux_peer vmm=$vmm runs=$n mean_wall_to_prompt_s=$(awk -v s="$w" -v n="$n" 'BEGIN { printf "%.2f", s / n }') mean_guest_uptime_at_prompt_s=$(awk -v s="$u" -v n="$n" 'BEGIN { printf "%.2f", s / n }')"
done

echo "linux_peer: $failures failure(s)"
[ "$failures" -eq 0 ]
