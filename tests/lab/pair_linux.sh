#!/bin/sh
# Lab test (runs on the host): a Linux guest (Debian's 6.12 arm64 kernel and
# the mkinitramfs initramfs, 2 vCPUs, 192 MiB (with 128 it sometimes ran out
# of memory at boot, silently on hvc0), on the virtio console) is live-migrated
# between two lab machines, A (10.0.0.1) and B (10.0.0.2), HOPS times under
# POLICY (A -> B -> A ...), then snapshotted to a file on A and restored from
# it, while the guest runs vtime-clockwatch (CLOCK_MONOTONIC, CLOCK_REALTIME,
# CLOCK_BOOTTIME and CNTVCT, every step over 100 ms logged) and has a
# 20-second sleep pending across the first moves. It checks that no clock
# went backwards, that the sleep ended once, and that every move resumed the
# guest; it prints the guest's wall-clock offset from its host through
# /dev/ptp0 before and after, and the largest steps the guest saw.
# CTest runs it with HOPS=10 (lab.pair_linux.freeze and .wallclock, about
# 150 s each), and with IRQCHIP=user, which boots the guest on vtvmm's
# user-space GIC, HOPS=2 and TIMER_S=12 (lab.pair_linux.user.wallclock). By hand,
# e.g.:
#   HOPS=4 tests/lab/pair_linux.sh freeze build/aarch64/tools/vtvmm \
#     build/aarch64/tools/vtime-clocksync build/aarch64/guest-tools --timeout 900
# Usage: pair_linux.sh POLICY VTVMM CLOCKSYNC GUEST_TOOLS_DIR [LAB/PAIR OPTIONS...]
set -u
policy=${1:?usage: pair_linux.sh POLICY VTVMM CLOCKSYNC GUEST_TOOLS_DIR [OPTIONS...]}
vtvmm=$2 clocksync=$3 tools=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -t pair_linux.XXXXXX)
watch=$(mktemp -t pair_linux_init.XXXXXX)
psk_dir=
trap 'rm -f "$out" "$watch"; rm -rf "$psk_dir"' EXIT
. "$here/pair_common.sh"
make_psk
hops=${HOPS:-10}
irqchip=${IRQCHIP:-kernel}  # the source's; each destination takes it from the stream
every=3000     # ms the guest runs on a host before it moves on
# The guest's POSIX timer: due after the first moves (45 s: about the
# middle of ten; TIMER_S=12 for two).
timer_s=${TIMER_S:-45}
# The watch logs every step over the threshold. Under wallclock a move's
# step is the time away (hundreds of ms); under freeze only the exit and the
# first entry show, tens to hundreds of ms in this lab, so the threshold is
# lower (at 2 ms the user irqchip's guest logged thousands of other steps),
# and the log keeps up to 4000 (a loaded lab makes hundreds over 20 ms).
threshold_us=100000 max_log=4000
[ "$policy" = freeze ] && threshold_us=20000
# The first move waits for the guest's watch to run (however long the boot
# takes: 10 s to over 40 s in this lab, more under the user irqchip), then
# one more second, and is started by SIGUSR2.
kernel=$here/../../lab/cache/kernel/Image
[ -s "$kernel" ] || { echo "FAIL: no lab kernel at $kernel: run lab/setup"; exit 1; }

# The guest's part, run by its /init before the shell: the watch, with a
# sleep pending across the first moves, then power-off.
cat >"$watch" <<'GUEST'
#!/bin/sh
grep -qw vtime.pair=1 /proc/cmdline || exit 0
vtime-ptp --count 1 | sed 's/^/vtime-guest: before: /'
# The wall-clock offset from whichever host runs the guest, twice a second
# throughout: each move shows as the change between the last offset on one
# host and the first on the next.
vtime-ptp --count 1000000 --interval-ms 500 >/dev/console &
ptp=$!
t0=$(cut -d' ' -f1 /proc/uptime)
(sleep 20; echo "vtime-guest: sleep 20 ended after $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.3f", b - a }') s of uptime") &
# The watch runs until the host types "stop" on the console (after the last
# restore), however long the moves took.
# ... with a POSIX timer (CLOCK_MONOTONIC) due TIMER_S s after it starts,
# after the first moves (the first is a second after this script says so).
vtime-clockwatch --duration 3600 --threshold-us THRESHOLD_US --max-log MAX_LOG --timer-s TIMER_S &
cw=$!
echo "vtime-guest: watching"
while read -r line; do [ "$line" = stop ] && break; done
kill -TERM "$cw" "$ptp"
wait
vtime-ptp --count 1 | sed 's/^/vtime-guest: after: /'
poweroff -f
GUEST
sed -i "s/TIMER_S/$timer_s/; s/THRESHOLD_US/$threshold_us/; s/MAX_LOG/$max_log/" "$watch"
chmod 755 "$watch"
initrd=$("$here/../../guests/linux/mkinitramfs" --add "$tools/vtime-ptp:/bin/vtime-ptp" \
  --add "$tools/vtime-clockwatch:/bin/vtime-clockwatch" \
  --add "$watch:/etc/vtime/init.d/50-pair") ||
  { echo "FAIL: guests/linux/mkinitramfs could not build the initramfs"; exit 1; }

link="--tls-psk $guest_psk"
common="--timeout 300 --policy $policy $link"
a="vtime-clocksync serve 10.0.0.1:5555 --tls-psk $guest_psk >/tmp/cs.out 2>&1 || exit 1;
{ vtvmm --timeout 900 --memory 192 --cpus 2 --irqchip $irqchip --console virtio $link --kernel /boot/Image \
  --initrd /boot/initrd.gz --append 'quiet vtime.pair=1' --migrate-to 10.0.0.2:4444 </dev/null 2>&1
  echo \$? >/tmp/first.rc; } | tee /tmp/first.out & v=\$!
i=0; until grep -q 'vtime-guest: watching' /tmp/first.out || [ \$i -ge 6000 ] || ! kill -0 \$v 2>/dev/null; do sleep 0.1; i=\$((i + 1)); done
grep -q 'vtime-guest: watching' /tmp/first.out || echo \"pair_linux: no 'vtime-guest: watching' from the guest after \$((i / 10)) s\"
sleep 1; kill -USR2 \$(pidof vtvmm); wait \$v; [ \$(cat /tmp/first.rc) = 0 ] || exit 1"
h=2
while [ $h -le $hops ]; do
  if [ $h -eq $hops ]; then
    a="$a; vtvmm $common --incoming 10.0.0.1:4444 --snapshot /tmp/final.snap --snapshot-after $every </dev/null || exit 1"
    a="$a; (sleep 15; echo stop) | vtvmm --timeout 300 --policy $policy --restore /tmp/final.snap || exit 1"
  else
    a="$a; vtvmm $common --incoming 10.0.0.1:4444 --migrate-to 10.0.0.2:4444 --migrate-after $every </dev/null || exit 1"
  fi
  h=$((h + 2))
done
a="$a; cat /tmp/cs.out"
b="sleep 2; vtime-clocksync sync 10.0.0.1 5555 --apply --tls-psk $guest_psk || exit 1"
h=1
while [ $h -lt $hops ]; do
  # The first stay on B starts after A's boot, which may be minutes on a
  # slow host; B waits as long as A does for the guest's watch.
  wait_s=300
  [ $h = 1 ] && wait_s=900
  b="$b; vtvmm --timeout $wait_s --policy $policy $link --incoming 10.0.0.2:4444 --migrate-to 10.0.0.1:4444 --migrate-after $every </dev/null || exit 1"
  h=$((h + 2))
done

run_pair "$out" "$@" --add "$vtvmm:/bin/vtvmm" --add "$clocksync:/bin/vtime-clocksync" \
  --add "$psk:$guest_psk" --add "$kernel:/boot/Image" --add "$initrd:/boot/initrd.gz" --a "$a" --b "$b"
grep -vE "migration: (sent|received) [0-9.]+ of|^\[[AB]\] (cws |vtime-ptp: measurement=|vtime-clockwatch: step clock=)" "$out"
[ "$status" != 125 ] || { echo "FAIL: the lab failed"; exit 125; }

[ "$status" = 0 ] && pass "every vtvmm on both machines succeeded" || fail "status $status"
moved=$(grep -c "vtvmm: migrated to" "$out")
[ "$moved" = "$hops" ] && pass "the Linux guest moved $hops times" || fail "the Linux guest moved $moved times"
resumed=$(grep -c "vtvmm: resumed (policy $policy)" "$out")
[ "$resumed" = $((hops + 1)) ] && pass "$hops migrations and one restore from a file resumed it" ||
  fail "$resumed resumes, expected $((hops + 1))"
for c in CLOCK_MONOTONIC CLOCK_REALTIME CLOCK_BOOTTIME CNTVCT; do
  grep "vtime-clockwatch: summary clock=$c " "$out" | sed "s/^.*summary/FIGURE $policy linux, $hops migrations: summary/"
  grep -q "ok - vtime-clockwatch: $c never went backwards" "$out" &&
    pass "$c never went backwards in the guest" || fail "$c: no 'never went backwards' verdict"
done
ended=$(grep -c "vtime-guest: sleep 20 ended" "$out")
[ "$ended" = 1 ] && pass "a sleep pending across the moves ended once: $(grep -o 'ended after [0-9.]* s' "$out")" ||
  fail "the pending sleep ended $ended times"
grep -E "vtime-guest: (before|after): .*offset_ns" "$out" | sed 's/^.*vtime-guest: /FIGURE ptp /'
timer=$(grep -m1 "vtime-clockwatch: timer armed_s=" "$out")
mono_after=$(echo "$timer" | sed -n 's/.* mono_after_ns=\([0-9]*\).*/\1/p')
if echo "$timer" | grep -q " fired=1 " && [ -n "$mono_after" ] &&
  [ "$mono_after" -ge $((timer_s * 1000000000)) ] && [ "$mono_after" -lt $(((timer_s + 5) * 1000000000)) ]; then
  pass "a POSIX timer due $timer_s s after the start, past the first move, fired once: ${timer#*timer }"
else
  fail "the POSIX timer: '${timer:-no report}'"
fi

# Each move's change in the wall-clock offset (host minus guest, by
# /dev/ptp0), from the last measurement on one host to the first on the
# next. Stays alternate A, B, A, ...; a later stay on a machine starts at
# its "vtvmm: resumed" line; the last one on A is the restore from a file.
moves=$(awk '
  /^\[[AB]\] / { m = substr($1, 2, 1) }
  /^\[[AB]\] .*vtvmm: resumed \(policy/ { stay[m]++ }
  /^\[[AB]\] vtime-ptp: measurement=.* offset_ns=/ {
    o = $0; sub(/.* offset_ns=/, "", o); sub(/ .*/, "", o)
    k = (m == "A") ? 2 * stay[m] : 2 * stay[m] - 1
    if (!(k in first)) first[k] = o
    last[k] = o
    if (k > top) top = k
  }
  END { prev = -1
        for (k = 0; k <= top; k++) if (k in first) {
          if (prev >= 0) printf "%d %s %s\n", k, last[prev], first[k]
          prev = k } }' "$out")
bound=$(grep "clocksync: after " "$out" | sed -n 's/.* error_bound_ns=\([0-9]*\).*/\1/p' | head -n 1)
n_moves=0 worst=0
while read -r k before after; do
  [ -n "$k" ] || continue
  d=$((after - before))
  echo "FIGURE $policy move $k: wall-clock offset $before -> $after ns (change $d ns)"
  [ "${d#-}" -gt "$worst" ] && worst=${d#-}
  n_moves=$((n_moves + 1))
done <<MOVES
$moves
MOVES
echo "FIGURE $policy: $n_moves moves measured; largest wall-clock offset change $worst ns; clock-sync error bound ${bound:-?} ns"
if [ "$policy" = wallclock ]; then
  if [ "$n_moves" -ge "$hops" ] && [ -n "$bound" ] && [ "$worst" -le $((bound + 1000000)) ]; then
    pass "every move changed the guest's wall-clock offset by at most the clock-sync error + 1 ms ($worst <= $bound + 1000000 ns)"
  else
    fail "wall-clock offset across the moves: $n_moves measured, largest change $worst ns, bound ${bound:-?} + 1 ms"
  fi
fi
# vtvmm's own part of each resume (from the final offset to the last vCPU's
# first KVM_RUN) and the kernel's ioctl before it, as each destination
# printed them.
parts=$(sed -n "s/.*the final offset's ioctl \([0-9.]*\) us.*vtvmm's own part \([0-9.]*\) us.*/\1 \2/p" "$out")
echo "$parts" | awk -v p="$policy" 'NF == 2 { n++; io = io sep $1; own = own sep $2; sep = ", "
    if ($2 <= 100) under++; if ($2 > max) max = $2 }
  END { printf "FIGURE %s: vtvmm own part of %d resumes (us): %s; %d of them <= 100 us, largest %s us; the final offset ioctl before it (us): %s\n", p, n, own, under, max, io }'
# Each pause as the guest saw it: the CNTVCT step that brackets the pause
# (from <= paused-at count, to >= resumes-at count), split into the part
# before the pause (the guest's last read to where vtvmm captured it: the
# exit, the guest's loop) and the part after the resume (the capture pair to
# the guest's first read), which is the final offset's ioctl, vtvmm's own
# part, and the rest: the kernel's first entry and stage-2 faults and the
# guest's loop.
awk -v p="$policy" '
  /cntfrq=/ && !hz { h = $0; sub(/.*cntfrq=/, "", h); sub(/[^0-9].*/, "", h); hz = h }
  /vtvmm: resumed \(policy/ { l = $0; sub(/.*CNTVCT paused at /, "", l); split(l, w, /[^0-9]+/)
    n++; paused[n] = w[1]; resumes[n] = w[2] }
  /vtvmm: resume: the final offset/ { l = $0; sub(/.*ioctl /, "", l); io[n] = l + 0
    l = $0; sub(/.*own part /, "", l); own[n] = l + 0 }
  /vtime-clockwatch: step clock=CNTVCT / { l = $0; sub(/.* from=/, "", l); split(l, w, /[^0-9]+/)
    k++; from[k] = w[1]; to[k] = w[2] }
  END {
    if (!hz) { print "FIGURE " p ": no counter frequency from the guest"; exit }
    for (i = 1; i <= n; i++) {
      found = 0
      for (j = 1; j <= k; j++) if (from[j] <= paused[i] && to[j] >= resumes[i]) { found = j; break }
      if (!found) { printf "FIGURE %s pause %d: the guest saw no CNTVCT step over the threshold there\n", p, i; continue }
      before = (paused[i] - from[found]) * 1e6 / hz; after = (to[found] - resumes[i]) * 1e6 / hz
      printf "FIGURE %s pause %d: the guest saw CNTVCT step %.0f us beyond the time added (%.0f us before the pause, %.0f us after the resume: the ioctl %.0f, vtvmm %.1f, the kernel'"'"'s entry and faults and the guest'"'"'s loop %.0f)\n",
        p, i, before + after, before, after, io[i], own[i], after - io[i] - own[i]
    } }' "$out"
echo "pair_linux ($policy): $failures failure(s)"
[ "$failures" -eq 0 ]
