#!/bin/sh
# Runs inside the arm64 lab: the same Debian arm64 Linux Image and the same
# initramfs (guests/linux/mkinitramfs) booted to userspace by two VMMs on the
# same KVM, side by side: vtvmm and Debian's arm64 QEMU (lab/setup-qemu-peer,
# -accel kvm), alternating, two runs each, 2 vCPUs, 256 MiB, `quiet`.
# vtime.test=1 makes the guest's /init print one line (uptime, CPU count,
# date) and power off. Checks for each run: userspace reached, 2 CPUs, the
# guest's date (from the PL031 each VMM provides) is the lab's. Prints the
# wall time to userspace and the guest's uptime there for both (FIGURE
# lines) and the mean of each. Exits non-zero on any failure.
# Usage (host): linux_peer.sh host VTVMM [LAB/RUN OPTIONS...]
#        (lab):  linux_peer.sh lab IMAGE INITRD PEER_DIR   (vtvmm on PATH)
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
  kernel=$lab/cache/kernel/Image
  [ -s "$kernel" ] || { echo "FAIL: no lab kernel at $kernel: run lab/setup"; exit 1; }
  initrd=$("$here/../../guests/linux/mkinitramfs") ||
    { echo "FAIL: guests/linux/mkinitramfs could not build the initramfs"; exit 1; }
  exec "$lab/run" "$@" --add "$vtvmm:/bin/vtvmm" --add "$lab/cache/qemu-peer:/peer" \
    --add "$kernel:/boot/Image" --add "$initrd:/boot/initrd.gz" \
    --add "$here/linux_peer.sh:/bin/linux_peer.sh" \
    -- sh /bin/linux_peer.sh lab /boot/Image /boot/initrd.gz /peer
fi
img=${1:?usage: linux_peer.sh lab IMAGE INITRD PEER_DIR}
initrd=${2:?usage: linux_peer.sh lab IMAGE INITRD PEER_DIR}
peer=${3:?usage: linux_peer.sh lab IMAGE INITRD PEER_DIR}
failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
out=/tmp/linux_peer.out
rcfile=/tmp/linux_peer.rc
uptime_s() { cut -d' ' -f1 /proc/uptime; }
field() { sed -n "s/.* $1=\([0-9.-]*\).*/\1/p" "$out" | head -n 1; }
append="console=ttyAMA0 quiet vtime.test=1"

vm_vtvmm() {
  vtvmm --timeout 100 --cpus 2 --memory 256 --kernel "$img" --initrd "$initrd" --append "$append"
}
# Busybox has no /lib/ld-linux-aarch64.so.1: start QEMU through its loader.
vm_qemu() {
  timeout 100 "$peer/lib/ld-linux-aarch64.so.1" --library-path "$peer/lib" \
    "$peer/bin/qemu-system-aarch64" -M virt,gic-version=3 -accel kvm -cpu host -smp 2 -m 256 \
    -nographic -nodefaults -serial stdio -no-reboot \
    -kernel "$img" -initrd "$initrd" -append "$append" </dev/null
}

"$peer/lib/ld-linux-aarch64.so.1" --library-path "$peer/lib" "$peer/bin/qemu-system-aarch64" \
  --version >"$out" 2>&1 && pass "peer: $(head -n 1 "$out")" ||
  { fail "peer: qemu-system-aarch64 does not start: $(head -n 3 "$out")"; }

sum_vtvmm_wall=0 sum_vtvmm_up=0 n_vtvmm=0
sum_qemu_wall=0 sum_qemu_up=0 n_qemu=0

# boot VMM RUN: one boot; the guest's test line gets the lab's date and
# uptime appended the moment it arrives.
boot() {
  vmm=$1 name="$1/run$2"
  t0=$(uptime_s)
  {
    "vm_$vmm" 2>&1
    echo "$?" >"$rcfile"
  } | while IFS= read -r line; do
    case $line in
      *"vtime-guest: test "*) echo "$line host_date=$(date -u +%s) host_up=$(uptime_s)" ;;
      *) echo "$line" ;;
    esac
  done >"$out"
  status=$(cat "$rcfile")
  sed "s|^|  [$name] |" "$out" | tail -n 15
  if ! grep -q "vtime-guest: test " "$out"; then
    fail "$name: no userspace (status $status)"
    return
  fi
  [ "$status" = 0 ] && pass "$name: reached userspace and powered off (status 0)" ||
    fail "$name: $vmm status $status"
  got=$(field cpus)
  [ "$got" = 2 ] && pass "$name: Linux brought up $got CPUs" ||
    fail "$name: Linux saw '$got' CPUs, expected 2"
  gdate=$(field date) hdate=$(field host_date)
  # As in linux_boot.sh: the kernel reads whole RTC seconds and date prints
  # whole seconds, so the guest may be up to 0.5 s ahead or ~1 s behind.
  skew=$((hdate - gdate))
  if [ "$skew" -ge -1 ] && [ "$skew" -le 2 ]; then
    pass "$name: the guest's date $gdate is the lab's $hdate (lab minus guest $skew s): its PL031 works"
  else
    fail "$name: the guest's date $gdate is $skew s off the lab's $hdate"
  fi
  up=$(field uptime)
  wall=$(awk -v a="$t0" -v b="$(field host_up)" 'BEGIN { printf "%.2f", b - a }')
  echo "FIGURE linux_peer vmm=$vmm run=$2 cpus=2 mem_mib=256 console=quiet guest_uptime_at_userspace_s=$up wall_to_userspace_s=$wall"
  eval "sum_${vmm}_wall=\$(awk -v s=\"\$sum_${vmm}_wall\" -v x=$wall 'BEGIN { print s + x }')"
  eval "sum_${vmm}_up=\$(awk -v s=\"\$sum_${vmm}_up\" -v x=$up 'BEGIN { print s + x }')"
  eval "n_${vmm}=\$((n_${vmm} + 1))"
}

# Alternating, so that a change in the lab's load falls on both.
for run in 1 2; do
  boot vtvmm "$run"
  boot qemu "$run"
done

for vmm in vtvmm qemu; do
  eval "n=\$n_$vmm w=\$sum_${vmm}_wall u=\$sum_${vmm}_up"
  [ "$n" -gt 0 ] || continue
  echo "FIGURE linux_peer vmm=$vmm runs=$n mean_wall_to_userspace_s=$(awk -v s="$w" -v n="$n" 'BEGIN { printf "%.2f", s / n }') mean_guest_uptime_at_userspace_s=$(awk -v s="$u" -v n="$n" 'BEGIN { printf "%.2f", s / n }')"
done

echo "linux_peer: $failures failure(s)"
[ "$failures" -eq 0 ]
