# Sourced by the Linux-guest lab tests (linux_boot.sh, linux_peer.sh).
# On the host:
#   linux_files VTVMM   sets $kernel (the lab's Image) and $initrd (from
#                       guests/linux/mkinitramfs, with the guest tools built
#                       beside VTVMM), or prints a FAIL line and exits 1
# In the lab (set $out and $rcfile first):
#   pass MSG / fail MSG counts $failures
#   uptime_s, field KEY the lab's uptime; KEY=value from $out
#   test_boot NAME CPUS COMMAND...
#       runs COMMAND (a VMM booting Linux with this initramfs, its console
#       on stdin and stdout) and, once the shell is on the console, types
#       one command into it, as a person would: print a test line (its
#       uptime, CPU count and date) through the kernel log, then exit, which
#       powers the guest off. The lab's uptime is appended to the shell's
#       line and the lab's date to the test line the moment each arrives.
#       Checks that the shell came up and ran what was typed, the status is
#       0, Linux brought up CPUS CPUs and its date (from the PL031) is the
#       lab's; leaves $wall (lab seconds from the start to the shell's
#       prompt) and $up (the guest's uptime then). Returns 1 without a shell.
linux_files() {
  kernel=$here/../../lab/cache/kernel/Image
  [ -s "$kernel" ] || { echo "FAIL: no lab kernel at $kernel: run lab/setup"; exit 1; }
  tools=$(dirname "$1")/../guest-tools
  initrd=$("$here/../../guests/linux/mkinitramfs" --add "$tools/vtime-ptp:/bin/vtime-ptp" \
    --add "$tools/vtime-clockwatch:/bin/vtime-clockwatch") ||
    { echo "FAIL: guests/linux/mkinitramfs could not build the initramfs"; exit 1; }
}

failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# (At least one digit: the console's echo of a typed command has KEY=$(...).)
field() { sed -n "s/.* $1=\([0-9.-][0-9.-]*\).*/\1/p" "$out" | head -n 1; }

test_boot() {
  tb_name=$1 tb_cpus=$2
  shift 2
  wall='' up=''
  tb_t0=$(uptime_s)
  # The console's input: a FIFO held open read-write here, so the VMM never
  # sees its end and this shell can type into it from the reading loop.
  rm -f /tmp/test_boot.fifo
  mkfifo /tmp/test_boot.fifo
  exec 4<>/tmp/test_boot.fifo
  {
    "$@" <&4 4<&- 2>&1
    echo "$?" >"$rcfile"
  } | while IFS= read -r line; do
    case $line in
      *"vtime-guest: shell on the console"*)
        echo "$line host_up=$(uptime_s)"
        # $t keeps the console's echo of the command from looking like
        # its output.
        (sleep 0.5
          printf '%s\n' 't=test; echo "<2>vtime-guest: $t uptime=$(cut -d" " -f1 /proc/uptime) cpus=$(grep -c ^processor /proc/cpuinfo) date=$(date -u +%s)" >/dev/kmsg; exit' >&4) &
        ;;
      *"vtime-guest: test "*) echo "$line host_date=$(date -u +%s)" ;;
      *) echo "$line" ;;
    esac
  done >"$out"
  exec 4>&-
  status=$(cat "$rcfile")
  lines=$(wc -l <"$out")
  if [ "$lines" -le 40 ]; then
    sed "s|^|  [$tb_name] |" "$out"
  else
    # The whole boot log: show what says the machine works.
    grep -E 'Linux version|psci: PSCIv|GIC|smp: Brought up|arch_timer: cp15|rtc-pl031|rtc0: setting|ttyAMA0|Freeing initrd|Run /init|vtime-guest' "$out" |
      sed "s|^|  [$tb_name] |"
    echo "  [$tb_name] ($lines lines of console)"
  fi
  if ! grep -q "vtime-guest: shell on the console" "$out"; then
    fail "$tb_name: no shell on the console (status $status)"
    tail -n 20 "$out" | sed "s|^|  [$tb_name] tail: |"
    return 1
  fi
  if ! grep -q "vtime-guest: test " "$out"; then
    fail "$tb_name: the shell came up but did not run the typed command (status $status)"
    tail -n 20 "$out" | sed "s|^|  [$tb_name] tail: |"
    return 1
  fi
  [ "$status" = 0 ] && pass "$tb_name: reached the shell's prompt, ran the command typed into it, and powered off on exit (status 0)" ||
    fail "$tb_name: the VMM's status $status"
  got=$(field cpus)
  [ "$got" = "$tb_cpus" ] && pass "$tb_name: Linux brought up $got CPUs" ||
    fail "$tb_name: Linux saw '$got' CPUs, expected $tb_cpus"
  gdate=$(field date) hdate=$(field host_date)
  # The kernel takes whole seconds from the RTC and adds half a second,
  # and date prints whole seconds: the guest may be up to 0.5 s ahead or
  # about 1 s behind (the line comes through the kernel log, not a tty
  # that may hold it back).
  skew=$((hdate - gdate))
  if [ "$skew" -ge -1 ] && [ "$skew" -le 2 ]; then
    pass "$tb_name: the guest's date $gdate is the lab's $hdate (lab minus guest $skew s): its PL031 works"
  else
    fail "$tb_name: the guest's date $gdate is $skew s off the lab's $hdate"
  fi
  up=$(field uptime)
  wall=$(awk -v a="$tb_t0" -v b="$(field host_up)" 'BEGIN { printf "%.2f", b - a }')
}
