#!/bin/sh
# Runs inside the arm64 lab (or natively on an arm64 KVM host): vtvmm boots
# Debian's arm64 Linux (an Image, with --kernel) and the initramfs of
# guests/linux/mkinitramfs to userspace, with 1, 2 and 4 vCPUs under each
# irqchip, with `quiet` and once with the whole boot log on the PL011.
# vtime.test=1 makes the guest's /init print one line (its uptime, its date,
# its CPU count) and power off, so this checks that userspace was reached,
# that Linux brought up every vCPU, and that the date it took from the PL031
# at boot is the lab's own. Also: a bare-metal program still runs with
# --append, and vtvmm refuses what is not a bootable Image.
# Prints PASS/FAIL lines and FIGURE lines; exits non-zero on any failure.
# Usage (host): linux_boot.sh host VTVMM GUEST_DIR [LAB/RUN OPTIONS...]
#               (the lab's own kernel, lab/cache/kernel/Image, and an
#               initramfs from guests/linux/mkinitramfs)
#        (lab):  linux_boot.sh lab IMAGE INITRD GUEST_DIR   (vtvmm on PATH)
mode=${1:?usage: linux_boot.sh host|lab ...}
shift
if [ "$mode" = host ]; then
  vtvmm=${1:?vtvmm}
  guests=${2:?guest dir}
  shift 2
  here=$(cd "$(dirname "$0")" && pwd)
  kernel=$here/../../lab/cache/kernel/Image
  [ -s "$kernel" ] || { echo "FAIL: no lab kernel at $kernel: run lab/setup"; exit 1; }
  # The guest-side tools go in too (built beside vtvmm in the arm64 tree).
  tools=$(dirname "$vtvmm")/../guest-tools
  initrd=$("$here/../../guests/linux/mkinitramfs" --add "$tools/vtime-ptp:/bin/vtime-ptp" \
    --add "$tools/vtime-clockwatch:/bin/vtime-clockwatch") ||
    { echo "FAIL: guests/linux/mkinitramfs could not build the initramfs"; exit 1; }
  exec "$here/../../lab/run" "$@" --add "$vtvmm:/bin/vtvmm" --add "$guests:/guests" \
    --add "$kernel:/boot/Image" --add "$initrd:/boot/initrd.gz" \
    --add "$here/linux_boot.sh:/bin/linux_boot.sh" \
    -- sh /bin/linux_boot.sh lab /boot/Image /boot/initrd.gz /guests
fi
img=${1:?usage: linux_boot.sh lab IMAGE INITRD GUEST_DIR}
initrd=${2:?usage: linux_boot.sh lab IMAGE INITRD GUEST_DIR}
g=${3:?usage: linux_boot.sh lab IMAGE INITRD GUEST_DIR}
failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
out=/tmp/linux_boot.out
rcfile=/tmp/linux_boot.rc
uptime_s() { cut -d' ' -f1 /proc/uptime; }
field() { sed -n "s/.* $1=\([0-9.-]*\).*/\1/p" "$out" | head -n 1; }

# boot NAME CPUS IRQCHIP APPEND: one boot; the guest's test line gets the
# lab's date and uptime appended the moment it arrives.
boot() {
  name=$1 cpus=$2 chip=$3 append=$4
  t0=$(uptime_s)
  {
    vtvmm --timeout 100 --cpus "$cpus" --irqchip "$chip" --kernel "$img" --initrd "$initrd" \
      --append "$append vtime.test=1" 2>&1
    echo "$?" >"$rcfile"
  } | while IFS= read -r line; do
    case $line in
      *"vtime-guest: test "*) echo "$line host_date=$(date -u +%s) host_up=$(uptime_s)" ;;
      *) echo "$line" ;;
    esac
  done >"$out"
  status=$(cat "$rcfile")
  lines=$(wc -l <"$out")
  if [ "$lines" -le 40 ]; then
    sed "s|^|  [$name] |" "$out"
  else
    # The whole boot log: show what says the machine works.
    grep -E 'Linux version|psci: PSCIv|GIC|smp: Brought up|arch_timer: cp15|rtc-pl031|rtc0: setting|ttyAMA0|Freeing initrd|Run /init|vtime-guest' "$out" |
      sed "s|^|  [$name] |"
    echo "  [$name] ($lines lines of console)"
  fi
  if ! grep -q "vtime-guest: test " "$out"; then
    fail "$name: no userspace (status $status)"
    tail -n 20 "$out" | sed "s|^|  [$name] tail: |"
    return
  fi
  [ "$status" = 0 ] && pass "$name: reached userspace and powered off (status 0)" ||
    fail "$name: vtvmm status $status"
  got=$(field cpus)
  [ "$got" = "$cpus" ] && pass "$name: Linux brought up $got CPUs" ||
    fail "$name: Linux saw '$got' CPUs, expected $cpus"
  gdate=$(field date) hdate=$(field host_date)
  # The kernel takes whole seconds from the RTC and adds half a second,
  # and date prints whole seconds: the guest may be up to 0.5 s ahead or
  # about 1 s behind (the line comes through the kernel log, not a tty
  # that may hold it back).
  skew=$((hdate - gdate))
  if [ "$skew" -ge -1 ] && [ "$skew" -le 2 ]; then
    pass "$name: the guest's date $gdate is the lab's $hdate (lab minus guest $skew s): the PL031 works"
  else
    fail "$name: the guest's date $gdate is $skew s off the lab's $hdate"
  fi
  wall=$(awk -v a="$t0" -v b="$(field host_up)" 'BEGIN { printf "%.2f", b - a }')
  echo "FIGURE linux_boot cpus=$cpus irqchip=$chip console=$(echo "$append" | grep -q quiet && echo quiet || echo full) guest_uptime_at_userspace_s=$(field uptime) wall_to_userspace_s=$wall"
}

for chip in kernel user; do
  for cpus in 1 2 4; do
    boot "linux/$chip/cpus$cpus" "$cpus" "$chip" "console=ttyAMA0 quiet"
  done
done
boot "linux/kernel/cpus2/full-log" 2 kernel "console=ttyAMA0"

# An interactive session through the console: commands go into vtvmm's
# stdin, reach the shell through the PL011's receive side, and their output
# comes back; among them the guest-side tools: the wall clock against the
# host's through KVM's PTP clock (/dev/ptp0), and a short clock watch.
# Like a person at a terminal, the test types only once the shell is there:
# Linux's PL011 driver empties the receive FIFO when it opens the port, so
# what comes before is lost on real hardware too.
for chip in kernel user; do
  rm -f /tmp/console.fifo
  mkfifo /tmp/console.fifo
  vtvmm --timeout 100 --cpus 2 --irqchip "$chip" --kernel "$img" --initrd "$initrd" \
    --append "console=ttyAMA0 quiet" </tmp/console.fifo >"$out" 2>&1 &
  vm=$!
  exec 3>/tmp/console.fifo
  i=0
  until grep -q "shell on the console" "$out" || [ "$i" -ge 600 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  sleep 0.5
  printf 'echo hello-$((6 * 7))\n' >&3
  printf 'grep -c ^processor /proc/cpuinfo\n' >&3
  printf 'vtime-ptp --count 3\n' >&3
  printf 'vtime-clockwatch --duration 1 --max-log 5\n' >&3
  printf 'exit\n' >&3
  exec 3>&-
  wait "$vm"
  status=$?
  sed -n '/hello/,$p' "$out" | grep -v "vtime-clockwatch: step" | sed "s|^|  [console/$chip] |"
  if [ "$status" = 0 ] && grep -qx 'hello-42' "$out" && grep -qx '2' "$out"; then
    pass "console/$chip: commands typed into the console ran in the guest's shell, output read back"
  else
    fail "console/$chip: status $status; no 'hello-42' and '2' lines in the session"
  fi
  if grep -q "^ok - vtime-clockwatch: CLOCK_MONOTONIC never went backwards" "$out"; then
    pass "console/$chip: vtime-clockwatch in the guest: CLOCK_MONOTONIC never went backwards"
  else
    fail "console/$chip: no vtime-clockwatch verdict"
  fi
  ptp=$(grep -m1 "offset_ns=" "$out")
  if [ -n "$ptp" ]; then
    pass "console/$chip: the guest's wall clock against the host's through /dev/ptp0: $ptp"
  else
    fail "console/$chip: vtime-ptp measured nothing: $(grep "vtime-ptp" "$out" | head -n 3)"
  fi
done

# The bare-metal programs keep working, bootargs or not.
vtvmm --timeout 60 --append "console=ttyAMA0 vtime.test=1" "$g/timer.elf" >"$out" 2>&1
status=$?
[ "$status" = 0 ] && pass "bare-metal timer.elf with --append (status 0)" ||
  { fail "bare-metal timer.elf with --append: status $status"; sed 's|^|  [timer] |' "$out"; }

# Refusals: not an Image, a RAM too small for it, a bad command line.
vtvmm --kernel "$g/timer.elf" >"$out" 2>&1
status=$?
if [ "$status" = 125 ] && grep -q "not an arm64 Linux Image" "$out"; then
  pass "--kernel refuses an ELF: $(cat "$out")"
else
  fail "--kernel with an ELF: status $status: $(cat "$out")"
fi
vtvmm --memory 32 --kernel "$img" >"$out" 2>&1
status=$?
if [ "$status" = 125 ] && grep -q "give more memory" "$out"; then
  pass "--memory 32 is refused for this kernel: $(cat "$out")"
else
  fail "--memory 32: status $status: $(cat "$out")"
fi
vtvmm --kernel "$img" "$g/timer.elf" >"$out" 2>&1
status=$?
[ "$status" = 2 ] && pass "--kernel with an IMAGE too is a usage error" ||
  fail "--kernel and IMAGE: status $status"

# --dtb-dump writes the tree without a VM; it is the one the guest gets.
if vtvmm --kernel "$img" --initrd "$initrd" --append "console=ttyAMA0" --dtb-dump /tmp/linux_boot.dtb \
  >"$out" 2>&1 && [ "$(head -c 4 /tmp/linux_boot.dtb | od -An -tx1 | tr -d ' ')" = d00dfeed ] &&
  grep -q "console=ttyAMA0" /tmp/linux_boot.dtb; then
  pass "--dtb-dump wrote a device tree with the bootargs ($(wc -c </tmp/linux_boot.dtb) bytes)"
else
  fail "--dtb-dump: $(cat "$out")"
fi

echo "linux_boot: $failures failure(s)"
[ "$failures" -eq 0 ]
