#!/bin/sh
# Runs inside the arm64 lab (or natively on an arm64 KVM host): vtvmm boots
# Debian's arm64 Linux (an Image, with --kernel) and the initramfs of
# guests/linux/mkinitramfs to a shell prompt, with 2 and 4 vCPUs (kernel
# irqchip) and 2 (user irqchip), with `quiet` and once with the whole boot
# log on the virtio console (with ROUNDS: 1, 2 and 4 under each, and the
# PL011's whole log too).
# Each boot waits for the shell's prompt on the console and types a command
# into it (test_boot, linux_common.sh): one line with the guest's uptime,
# date and CPU count, then exit, which powers it off. So this checks that
# the shell came up and takes input, that Linux brought up every vCPU, and
# that the date it took from the PL031 at boot is the lab's own. Also: a bare-metal program still runs with
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
  . "$here/linux_common.sh"
  linux_files "$vtvmm"
  exec "$here/../../lab/run" "$@" --add "$vtvmm:/bin/vtvmm" --add "$guests:/guests" \
    --add "$kernel:/boot/Image" --add "$initrd:/boot/initrd.gz" \
    --add "$here/linux_boot.sh:/bin/linux_boot.sh" \
    --add "$here/linux_common.sh:/bin/linux_common.sh" \
    -- sh /bin/linux_boot.sh lab /boot/Image /boot/initrd.gz /guests "${ROUNDS:-}"
fi
img=${1:?usage: linux_boot.sh lab IMAGE INITRD GUEST_DIR}
initrd=${2:?usage: linux_boot.sh lab IMAGE INITRD GUEST_DIR}
g=${3:?usage: linux_boot.sh lab IMAGE INITRD GUEST_DIR}
rounds=${4:-1}
measure=no
[ -n "${4:-}" ] && measure=yes  # ROUNDS given: every figure of the README
out=/tmp/linux_boot.out
rcfile=/tmp/linux_boot.rc
. "$(dirname "$0")/linux_common.sh"

# boot NAME CPUS IRQCHIP APPEND [CONSOLE]: one boot, checked by test_boot;
# CONSOLE is vtvmm's --console (pl011 unless given; virtio adds
# console=hvc0 to APPEND itself).
boot() {
  dev=${5:-pl011}
  # Under the user irqchip every timer tick is several exits, and 4 vCPUs
  # share the lab's 2 CPUs: that boot took 40-100 s in busy runs.
  limit=100
  [ "$3" = user ] && [ "$2" -ge 4 ] && limit=600
  test_boot "$1" "$2" vtvmm --timeout "$limit" --stats --cpus "$2" --irqchip "$3" --console "$dev" \
    --kernel "$img" --initrd "$initrd" --append "$4" || return
  log=$(echo "$4" | grep -q quiet && echo quiet || echo full)
  exits=$(sed -n 's/.*exits=\([0-9]*\).*/\1/p' "$out" | head -n 1)
  echo "FIGURE linux_boot cpus=$2 irqchip=$3 console=$dev log=$log guest_uptime_at_prompt_s=$up wall_to_prompt_s=$wall exits=$exits lines=$(wc -l <"$out")"
  if [ "$log" = full ]; then
    # The whole log reaches the console (through hvc0 the early part comes
    # from /init's replay of the kernel log).
    grep -q "Booting Linux on physical CPU" "$out" && grep -q "Run /init as init process" "$out" &&
      pass "$1: the whole boot log reached the $dev console ($(wc -l <"$out") lines)" ||
      fail "$1: the boot log is not on the $dev console"
  fi
}

# (The kernel irqchip's 2-vCPU quiet boot on the PL011 is the first of the
# rounds below.) The test suite boots each irqchip with several vCPUs: 4 on
# the kernel's, 2 on the user one (whose 4-vCPU boot alone takes 40-100 s
# in the lab); the README's whole table, 1, 2 and 4 under each, comes with
# ROUNDS. One vCPU under the kernel irqchip is lab.trace_marker.linux's.
for chip in kernel user; do
  for cpus in 1 2 4; do
    [ "$chip/$cpus" = kernel/2 ] && continue
    if [ "$measure" != yes ] && { [ "$cpus" = 1 ] || [ "$chip/$cpus" = user/4 ]; }; then
      continue
    fi
    boot "linux/$chip/cpus$cpus" "$cpus" "$chip" "console=ttyAMA0 quiet"
  done
done
# Cheap boot output: the virtio console (hvc0), side by side with the PL011
# in the same run, with and without the boot log. The test suite (ROUNDS
# unset) boots the two that check something: the PL011's quiet boot is the
# matrix's kernel/2, and the virtio console carries the whole log (the
# PL011's whole log, 31 000 exits and some 35 s, only with ROUNDS: the
# sessions below and the bare-metal guests drive the PL011 too); the
# README's figures are from all four, alternated, in two rounds (ROUNDS=2
# in the host's environment).
for round in $(seq "$rounds"); do
  boot "linux/kernel/cpus2/pl011-quiet/$round" 2 kernel "console=ttyAMA0 quiet"
  [ "$measure" = yes ] && boot "linux/kernel/cpus2/pl011-full-log/$round" 2 kernel "console=ttyAMA0"
  [ "$measure" = yes ] && boot "linux/kernel/cpus2/virtio-quiet/$round" 2 kernel "quiet" virtio
  boot "linux/kernel/cpus2/virtio-full-log/$round" 2 kernel "" virtio
done

# An interactive session through the console: commands go into vtvmm's
# stdin, reach the shell through the PL011's receive side, and their output
# comes back; among them the guest-side tools: the wall clock against the
# host's through KVM's PTP clock (/dev/ptp0), and a short clock watch.
# Like a person at a terminal, the test types only once the shell is there:
# Linux's PL011 driver empties the receive FIFO when it opens the port, so
# what comes before is lost on real hardware too.
# start UNTIL COMMAND...: runs COMMAND (output in $out, pid in $vm) with
# its console on file descriptor 3, and waits until $out has UNTIL.
start() {
  st_until=$1
  shift
  rm -f /tmp/console.fifo
  mkfifo /tmp/console.fifo
  "$@" </tmp/console.fifo >"$out" 2>&1 &
  vm=$!
  exec 3>/tmp/console.fifo
  i=0
  until grep -q "$st_until" "$out" || [ "$i" -ge 3000 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  sleep 0.5
}
# session VTVMM-ARGS...: starts Linux under vtvmm, console on fd 3, and
# waits for its shell ($append: the command line, PL011 console and quiet
# unless set).
session() {
  start "shell on the console" "$@" --kernel "$img" --initrd "$initrd" \
    --append "${append:-console=ttyAMA0 quiet}"
}
# Two sessions cover both consoles and both irqchips; the virtio console
# with the kernel irqchip has its own session below, around a snapshot.
for console in "kernel pl011" "user virtio"; do
  set -- $console
  chip=$1
  if [ "$2" = virtio ]; then chip="$1/virtio" append=quiet; else append=; fi
  session vtvmm --timeout 300 --cpus 2 --irqchip "$1" --console "$2"
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

append=

# A Linux guest on the virtio console, snapshotted at its shell and restored:
# typing still reaches its shell and the output comes back (the transport's
# and the queues' state in the snapshot, the rings in its RAM).
rm -f /tmp/vc.sock /tmp/vc.snap
append=quiet
session vtvmm --timeout 300 --cpus 2 --console virtio --monitor /tmp/vc.sock
append=
printf 'echo before-$((6 * 7))\n' >&3
i=0
until grep -qx 'before-42' "$out" || [ "$i" -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
reply=$(vtvmm monitor /tmp/vc.sock snapshot /tmp/vc.snap)
exec 3>&-
wait "$vm"
status=$?
echo "  [virtio snapshot] $reply"
if [ "$status" = 0 ] && grep -qx 'before-42' "$out" && [ -s /tmp/vc.snap ]; then
  start "vtvmm: resumed" vtvmm --timeout 60 --restore /tmp/vc.snap
  printf 'echo after-$((6 * 7))\n' >&3
  printf 'exit\n' >&3
  exec 3>&-
  wait "$vm"
  status=$?
  grep -E "resumed|after|virtio" "$out" | sed "s|^|  [virtio restore] |"
  [ "$status" = 0 ] && grep -qx 'after-42' "$out" &&
    pass "a Linux guest on the virtio console, restored from a snapshot, takes typed commands and answers" ||
    fail "virtio console after a restore: status $status, no 'after-42'"
else
  fail "no snapshot of the Linux guest on the virtio console (status $status; before-42 seen: $(grep -c before-42 "$out"))"
fi

# The same snapshot (a Linux guest with PV stolen time) is refused by a
# vtvmm told --pvtime off, with a message that names the problem; restored
# as it is, its state checks out.
if [ -s /tmp/vc.snap ]; then
  vtvmm --restore /tmp/vc.snap --pvtime off >"$out" 2>&1
  status=$?
  sed "s|^|  [linux snapshot, --pvtime off] |" "$out"
  [ "$status" = 125 ] && grep -q "uses PV stolen time.*--pvtime off" "$out" &&
    pass "a Linux snapshot with PV time is refused by a vtvmm with --pvtime off, saying why" ||
    fail "--pvtime off restore of a Linux snapshot: status $status"
  vtvmm --restore /tmp/vc.snap --restore-check >"$out" 2>&1
  status=$?
  [ "$status" = 0 ] && pass "the same Linux snapshot restores where PV time is on (--restore-check)" ||
    { fail "Linux snapshot --restore-check: status $status"; sed 's|^|  [restore-check] |' "$out"; }
else
  fail "no Linux snapshot to restore with --pvtime off"
fi
rm -f /tmp/vc.snap

# Stolen time that Linux accounts (seed 003): both vCPU threads on one lab
# CPU and a busy loop on each vCPU, so each thread waits for the other. The
# guest's steal time in /proc/stat (USER_HZ ticks) over a window is compared
# with the host scheduler's run delay of the two threads over the same
# window (vtvmm's monitor reads their schedstat as the guest marks the
# window's ends). With --pvtime off the guest accounts none.
steal() {  # PVTIME
  pv=$1
  rm -f /tmp/steal.sock
  session taskset -c 0 vtvmm --timeout 300 --cpus 2 --pvtime "$pv" --monitor /tmp/steal.sock
  # A mark: the guest prints its steal ticks; the host reads run delays.
  mark() {
    printf 'echo "steal-%s $(grep "^cpu0 " /proc/stat | cut -d" " -f9) $(grep "^cpu1 " /proc/stat | cut -d" " -f9)"\n' "$1" >&3
    j=0
    until grep -q "^steal-$1 [0-9]" "$out" || [ "$j" -ge 300 ]; do
      sleep 0.1
      j=$((j + 1))
    done
    vtvmm monitor /tmp/steal.sock stats
  }
  printf 'dmesg | grep -i "arm-pv" ; (taskset 1 sh -c "while :; do :; done" &) ; (taskset 2 sh -c "while :; do :; done" &)\n' >&3
  sleep 1
  h1=$(mark a)
  sleep 5
  h2=$(mark b)
  printf 'exit\n' >&3
  exec 3>&-
  wait "$vm"
  status=$?
  grep -E "arm-pv|^steal-" "$out" | sed "s|^|  [steal/pvtime-$pv] |"
  g1=$(sed -n 's/^steal-a \([0-9]*\) \([0-9]*\).*/\1 \2/p' "$out")
  g2=$(sed -n 's/^steal-b \([0-9]*\) \([0-9]*\).*/\1 \2/p' "$out")
  d() { echo "$1" | sed -n "s/.*vcpu$2_run_delay_ns=\([0-9]*\).*/\1/p"; }
  if [ -z "$g1" ] || [ -z "$g2" ] || [ -z "$(d "$h1" 0)" ] || [ -z "$(d "$h2" 1)" ]; then
    fail "steal/pvtime-$pv: no figures (status $status; host: '$h1' '$h2')"
    return
  fi
  set -- $g1 $g2
  guest0=$((($3 - $1) * 10)) guest1=$((($4 - $2) * 10))  # ms (USER_HZ 100)
  host0=$((($(d "$h2" 0) - $(d "$h1" 0)) / 1000000)) host1=$((($(d "$h2" 1) - $(d "$h1" 1)) / 1000000))
  echo "FIGURE steal pvtime=$pv over the window: vcpu0 guest ${guest0} ms host run delay ${host0} ms; vcpu1 guest ${guest1} ms host ${host1} ms"
  if [ "$pv" = on ]; then
    ok=yes
    for v in 0 1; do
      eval gv=\$guest$v hv=\$host$v
      diff=$((gv - hv)); [ "$diff" -lt 0 ] && diff=$((-diff))
      # within 5 %, and one 10 ms tick of /proc/stat's resolution
      [ "$hv" -gt 500 ] && [ $((diff * 100)) -le $((hv * 5 + 1000)) ] || ok=no
    done
    grep -q "arm-pv: using stolen time PV" "$out" || ok=no
    [ "$ok" = yes ] && pass "steal/pvtime-on: Linux uses PV stolen time and its steal matches the host's run delay within 5 %" ||
      fail "steal/pvtime-on: guest steal and host run delay disagree (or no 'arm-pv: using stolen time PV' in the boot log)"
  else
    [ "$guest0" = 0 ] && [ "$guest1" = 0 ] && [ "$host0" -gt 500 ] &&
      pass "steal/pvtime-off: the guest accounts no steal although its threads waited ${host0}/${host1} ms" ||
      fail "steal/pvtime-off: guest steal ${guest0}/${guest1} ms, host run delay ${host0}/${host1} ms"
  fi
}
steal on
steal off

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
