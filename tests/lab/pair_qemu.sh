#!/bin/sh
# Issue 15, side by side: the same Linux guest (Debian 6.12, 2 vCPUs,
# 192 MiB, PL011 console, kernel irqchip, `quiet`) live-migrated once from
# lab machine A to B by Debian's arm64 QEMU (-accel kvm, -incoming and the
# monitor's migrate, plain TCP) and then by vtvmm (--policy POLICY, the
# environment's, wallclock unless set; plain TCP), in one lab/pair run, B's clock first stepped to A's (vtime-clocksync).
# The guest runs vtime-clockwatch and vtime-ptp (twice a second) throughout
# and, when the host types "stop" on B, prints the clock watch's summary and
# its kernel log's warnings. For each VMM: the pause (QEMU's "downtime" from
# `info migrate`; vtvmm's "paused here for"), the guest's largest
# CLOCK_MONOTONIC step, its wall-clock offset from its host (/dev/ptp0)
# before and after the move, and warnings. A measurement (by hand, about
# 4 minutes; needs lab/setup-qemu-peer):
#   tests/lab/pair_qemu.sh build/aarch64/tools/vtvmm build/aarch64/tools/vtime-clocksync \
#     build/aarch64/guest-tools --timeout 900
set -u
policy=${POLICY:-wallclock}
vtvmm=${1:?usage: pair_qemu.sh VTVMM CLOCKSYNC GUEST_TOOLS [LAB/PAIR OPTIONS...]}
clocksync=$2 tools=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
lab=$here/../../lab
"$lab/setup-qemu-peer" --quiet || { echo "FAIL: lab/setup-qemu-peer"; exit 1; }
out=$(mktemp -t pair_qemu.XXXXXX)
probe=$(mktemp -t pair_qemu_probe.XXXXXX)
side=$(mktemp -t pair_qemu_side.XXXXXX)
trap 'rm -f "$out" "$probe" "$side"' EXIT
. "$here/pair_common.sh"

cat >"$probe" <<'GUEST'
#!/bin/sh
grep -qw vtime.move=1 /proc/cmdline || exit 0
vtime-clockwatch --duration 3600 --threshold-us 100000 --interval-us 1000 --max-log 10 >/tmp/cw.out &
cw=$!
vtime-ptp --count 1000000 --interval-ms 500 &
echo "vtime-guest: move probe up"
while read -r line; do [ "$line" = stop ] && break; done
kill -TERM "$cw"
wait "$cw"
sed 's/^/vtime-guest: /' /tmp/cw.out | grep -E "summary clock=CLOCK_MONOTONIC|never went backwards|step clock=CLOCK_MONOTONIC"
echo "vtime-guest: warnings soft_lockup=$(dmesg | grep -ci 'soft lockup') rcu_stall=$(dmesg | grep -ci 'rcu.*stall') hung_task=$(dmesg | grep -ci 'blocked for more than')"
poweroff -f
GUEST
chmod 755 "$probe"
initrd=$("$here/../../guests/linux/mkinitramfs" --add "$tools/vtime-ptp:/bin/vtime-ptp" \
  --add "$tools/vtime-clockwatch:/bin/vtime-clockwatch" --add "$probe:/etc/vtime/init.d/50-move") ||
  { echo "FAIL: mkinitramfs"; exit 1; }

# One script for both machines: `side.sh a` or `side.sh b POLICY`.
cat >"$side" <<'SIDE'
#!/bin/sh
Q="/peer/lib/ld-linux-aarch64.so.1 --library-path /peer/lib /peer/bin/qemu-system-aarch64"
ARGS="-M virt,gic-version=3 -accel kvm -cpu host -smp 2 -m 192 -nographic -nodefaults -no-reboot -kernel /boot/Image -initrd /boot/initrd.gz"
APPEND="console=ttyAMA0 quiet vtime.move=1"
up() { cut -d' ' -f1 /proc/uptime; }
waitfor() { i=0; until grep -q "$2" "$1" || [ "$i" -ge "$3" ]; do sleep 0.2; i=$((i + 1)); done; grep -q "$2" "$1"; }
if [ "$1" = a ]; then
  vtime-clocksync serve 10.0.0.1:5555 --insecure >/tmp/cs.out 2>&1 || exit 1
  # QEMU, the source: its monitor on a pipe pair.
  mkfifo /tmp/qmon.in /tmp/qmon.out
  cat /tmp/qmon.out >/tmp/qmon.log &
  $Q $ARGS -append "$APPEND" -serial file:/tmp/qa.out -monitor pipe:/tmp/qmon </dev/null >/dev/null 2>&1 &
  q=$!
  exec 4>/tmp/qmon.in
  waitfor /tmp/qa.out "move probe up" 600 2>/dev/null || { echo "qemu: no guest"; cat /tmp/qa.out; exit 1; }
  sleep 5
  echo "qemu: migrate at $(up)"
  echo "migrate -d tcp:10.0.0.2:4444" >&4
  i=0
  until grep -q "Migration status: completed" /tmp/qmon.log || [ "$i" -ge 300 ]; do
    echo "info migrate" >&4; sleep 0.5; i=$((i + 1))
  done
  grep -E "Migration status|downtime|total time" /tmp/qmon.log | tail -n 3 | sed 's/^/qemu: /'
  echo "quit" >&4
  exec 4>&-
  wait "$q"
  # (A line the move cut in two is not a measurement.)
  grep "offset_ns=.* uncertainty_ns=" /tmp/qa.out | tail -n 1 | sed 's/^/qemu-source: /'
  # vtvmm, the source.
  vtvmm --timeout 300 --insecure --cpus 2 --memory 192 --kernel /boot/Image --initrd /boot/initrd.gz \
    --append "$APPEND" --migrate-to 10.0.0.2:4445 </dev/null >/tmp/va.out 2>&1 &
  v=$!
  waitfor /tmp/va.out "move probe up" 600 || { echo "vtvmm: no guest"; cat /tmp/va.out; exit 1; }
  sleep 5
  kill -USR2 "$v"
  wait "$v"
  grep "vtvmm: migrated" /tmp/va.out | sed 's/^/vtvmm: /'
  grep "offset_ns=.* uncertainty_ns=" /tmp/va.out | tail -n 1 | sed 's/^/vtvmm-source: /'
  cat /tmp/cs.out
else
  sleep 2
  vtime-clocksync sync 10.0.0.1 5555 --apply --insecure || exit 1
  # destination NAME COMMAND...: runs the receiving VMM with its console on
  # a fifo, waits for the guest's first measurement there, lets it run 8 s,
  # types "stop", and shows what the guest said.
  destination() {
    name=$1
    shift
    rm -f /tmp/in
    mkfifo /tmp/in
    "$@" </tmp/in >/tmp/dst.out 2>&1 &
    pid=$!
    exec 3>/tmp/in
    waitfor /tmp/dst.out "offset_ns=" 1500 || { echo "$name: nothing after the move"; cat /tmp/dst.out; }
    sleep 8
    echo stop >&3
    wait "$pid"
    exec 3>&-
    grep -E "vtime-guest|offset_ns=|vtvmm: resumed|vtvmm: resume: the final" /tmp/dst.out |
      sed "s/^/$name-destination: /"
  }
  # shellcheck disable=SC2086
  destination qemu $Q $ARGS -append "$APPEND" -serial stdio -incoming tcp:10.0.0.2:4444
  destination vtvmm vtvmm --timeout 300 --insecure --incoming 10.0.0.2:4445 --policy "$2"
fi
SIDE

run_pair "$out" "$@" --add "$vtvmm:/bin/vtvmm" --add "$clocksync:/bin/vtime-clocksync" \
  --add "$lab/cache/qemu-peer:/peer" --add "$lab/cache/kernel/Image:/boot/Image" \
  --add "$initrd:/boot/initrd.gz" --add "$side:/bin/side.sh" \
  --a "sh /bin/side.sh a" --b "sh /bin/side.sh b $policy"
cat "$out"
[ "$status" = 0 ] || { echo "FAIL: lab/pair status $status"; exit 1; }
for vmm in qemu vtvmm; do
  before=$(grep "^\[A\] $vmm-source: .*offset_ns=" "$out" | sed 's/.*offset_ns=\(-\{0,1\}[0-9]*\).*/\1/')
  after=$(grep "^\[B\] $vmm-destination: vtime-ptp: measurement=.* offset_ns=.* uncertainty_ns=" "$out" | head -n 1 | sed 's/.*offset_ns=\(-\{0,1\}[0-9]*\).*/\1/')
  step=$(grep "^\[B\] $vmm-destination: .*summary clock=CLOCK_MONOTONIC" "$out" | sed -n 's/.*max_forward_ns=\([0-9]*\).*/\1/p')
  warn=$(grep "^\[B\] $vmm-destination: .*warnings" "$out" | sed 's/.*warnings //')
  back=$(grep -c "^\[B\] $vmm-destination: .*ok - vtime-clockwatch: CLOCK_MONOTONIC never went backwards" "$out")
  case $vmm in
    qemu) pause=$(grep "^\[A\] qemu: downtime: " "$out" | sed 's/.*downtime: *//') ;;
    vtvmm) pause=$(sed -n 's/.*paused here for \([0-9]* ms\).*/\1/p' "$out" | head -n 1) ;;
  esac
  echo "FIGURE pair_qemu vmm=$vmm $([ $vmm = vtvmm ] && echo "policy=$policy ")pause=${pause:-?} monotonic_max_step_ns=${step:-?} ptp_offset_before_ns=${before:-?} after_ns=${after:-?} change_ns=$([ -n "$before" ] && [ -n "$after" ] && echo $((after - before))) monotonic_ok=$back ${warn:-}"
done
