#!/bin/sh
# What a Linux guest does when its counters jump (issue 15, item 2): a Linux
# guest (Debian 6.12, 2 vCPUs, 192 MiB, virtio console, kernel irqchip, one
# vCPU kept busy) is paused for AWAY seconds and resumed (METHOD=pause, the
# default: vtvmm's monitor "pause MS", which captures and resumes guest
# time exactly as a snapshot and a restore do, in the same VM, so the time
# away is exact; METHOD=snapshot: a snapshot to a file and a restore from
# it AWAY seconds later, which adds the seconds the 192 MiB file takes),
# for each AWAY in $AWAYS (default "1 30 120") and each mode in $MODES
# (default "wallclock freeze freeze+ptp"): freeze+ptp restores under freeze
# while vtime-ptp in the guest steps CLOCK_REALTIME to KVM's PTP clock
# (the host's wall clock) whenever it is more than 500 us off, every 250 ms.
# One boot per mode; the jumps follow one another in it.
#
# For each jump it reports, from the console (each line stamped with the lab
# machine's uptime as it arrives):
#   - the guest's wall-clock error: vtime-ptp's offset (host - guest) at its
#     last measurement before the pause, its first after the resume, and at
#     the end of the window;
#   - the CLOCK_MONOTONIC step the guest saw (vtime-clockwatch, steps over
#     100 ms);
#   - kernel-log warnings by kind (from /proc/kmsg: soft lockup, RCU stall,
#     hung task, workqueue lockup, clocksource/timekeeping, other BUG/WARN);
#   - the 5-second sleep that spanned the pause: how long it took in the
#     lab's real time and in the guest's CLOCK_MONOTONIC, and that it ended
#     once.
# A measurement, not a CTest test (a run takes about 15 minutes). Run by
# hand:
#   tests/lab/linux_jump.sh host build/aarch64/tools/vtvmm build/aarch64/guest-tools \
#     --timeout 2400 --cpu neoverse-n1
# Prints FIGURE lines; exits 1 if a clock went backwards or a guest was lost.
set -u
mode=${1:?usage: linux_jump.sh host VTVMM GUEST_TOOLS [LAB/RUN OPTIONS...] | lab IMAGE INITRD}
shift
if [ "$mode" = host ]; then
  vtvmm=${1:?vtvmm} tools=${2:?guest tools}
  shift 2
  here=$(cd "$(dirname "$0")" && pwd)
  kernel=$here/../../lab/cache/kernel/Image
  [ -s "$kernel" ] || { echo "FAIL: no lab kernel at $kernel: run lab/setup"; exit 1; }
  probe=$(mktemp -t linux_jump.XXXXXX)
  trap 'rm -f "$probe"' EXIT
  # The guest's part: a busy vCPU, the clock watch (one per window, ended
  # and restarted when the host types "window"), the PTP offset (and, in
  # freeze+ptp, the step), the kernel log, and a 5 s sleep in a loop.
  cat >"$probe" <<'GUEST'
#!/bin/sh
grep -qw 'vtime.jump=[a-z+]*' /proc/cmdline || exit 0
jmode=$(sed -n 's/.*vtime\.jump=\([a-z+]*\).*/\1/p' /proc/cmdline)
step=
[ "$jmode" = freeze+ptp ] && step="--step-over-us 500"
mono() { cut -d' ' -f1 /proc/uptime; }
(taskset 2 sh -c 'while :; do :; done') &
busy=$!
cat /proc/kmsg | sed -n 's/^<\([0-9]\)>/vtime-guest: klog \1 /p' &
klog=$!
# shellcheck disable=SC2086
vtime-ptp --count 1000000 --interval-ms 250 $step | grep -E 'offset_ns|stepped' &
ptp=$!
(n=0; while :; do n=$((n + 1)); t0=$(mono); echo "vtime-guest: sleep $n start mono=$t0"
  sleep 5; echo "vtime-guest: sleep $n end mono=$(mono) took_mono=$(awk -v a="$t0" -v b="$(mono)" 'BEGIN { printf "%.3f", b - a }')"; done) &
sleeper=$!
echo "vtime-guest: jump probe up (mode $jmode)"
cw=
while read -r line; do
  case $line in
    window)
      [ -n "$cw" ] && { kill -TERM "$cw"; wait "$cw"; }
      vtime-clockwatch --duration 3600 --threshold-us 100000 --interval-us 1000 --max-log 20 &
      cw=$!
      echo "vtime-guest: window open" ;;
    stop) break ;;
  esac
done
[ -n "$cw" ] && { kill -TERM "$cw"; wait "$cw"; }
kill "$busy" "$klog" "$ptp" "$sleeper" 2>/dev/null
echo "vtime-guest: probe done"
poweroff -f
GUEST
  chmod 755 "$probe"
  initrd=$("$here/../../guests/linux/mkinitramfs" --add "$tools/vtime-ptp:/bin/vtime-ptp" \
    --add "$tools/vtime-clockwatch:/bin/vtime-clockwatch" \
    --add "$probe:/etc/vtime/init.d/50-jump") ||
    { echo "FAIL: guests/linux/mkinitramfs could not build the initramfs"; exit 1; }
  exec "$here/../../lab/run" "$@" --add "$vtvmm:/bin/vtvmm" --add "$kernel:/boot/Image" \
    --add "$initrd:/boot/initrd.gz" --add "$here/linux_jump.sh:/bin/linux_jump.sh" \
    -- env ${JUMP_TRACE:+JUMP_TRACE=1} METHOD="${METHOD:-pause}" AWAYS="${AWAYS:-1 30 120}" MODES="${MODES:-wallclock freeze freeze+ptp}" \
    OBSERVE="${OBSERVE:-40}" sh /bin/linux_jump.sh lab /boot/Image /boot/initrd.gz
fi

img=${1:?image} initrd=${2:?initrd}
[ -n "${JUMP_TRACE:-}" ] && set -x
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
up() { cut -d' ' -f1 /proc/uptime; }
log=/tmp/jump.log
sock=/tmp/jump.sock
snap=/tmp/jump.snap

# run VTVMM-ARGS...: one vtvmm, its console input from fd 3 (a fifo), every
# output line stamped "@<lab uptime>" and appended to $log.
run() {
  rm -f /tmp/jump.fifo "$sock"
  mkfifo /tmp/jump.fifo
  { vtvmm "$@" </tmp/jump.fifo 2>&1; echo "vtvmm-exit $?"; } |
    while IFS= read -r line; do echo "@$(up) $line"; done >>"$log" &
  vm=$!
  exec 3>/tmp/jump.fifo
}
# wait_for PATTERN SECONDS: until $log has PATTERN after line $mark.
wait_for() {
  i=0
  until tail -n +"$mark" "$log" | grep -q "$1"; do
    sleep 0.2
    i=$((i + 1))
    [ "$i" -lt $(($2 * 5)) ] || return 1
  done
  return 0
}

for m in $MODES; do
  policy=${m%%+*}
  : >"$log"
  mark=1
  run --timeout 3000 --cpus 2 --memory 192 --console virtio --policy "$policy" --monitor "$sock" \
    --kernel "$img" --initrd "$initrd" --append "quiet vtime.jump=$m"
  wait_for "jump probe up" 120 || { fail "$m: the guest did not start its probe"; cat "$log"; continue; }
  sleep 5
  j=0
  for away in $AWAYS; do
    j=$((j + 1))
    mark=$(($(wc -l <"$log") + 1))
    echo "window" >&3
    wait_for "window open" 30 || fail "$m/$away: no window"
    sleep 3
    t_snap=$(up)
    if [ "$METHOD" = snapshot ]; then
      reply=$(vtvmm monitor "$sock" snapshot "$snap" 2>&1)
      exec 3>&-
      wait "$vm"
      echo "@$(up) host: snapshot ($reply)" >>"$log"
      sleep "$away"
      echo "@$(up) host: restore after $away s" >>"$log"
      t_restore=$(up)
      run --timeout 3000 --policy "$policy" --monitor "$sock" --restore "$snap"
      wait_for "vtvmm: resumed" 60 || fail "$m/$away: no resume"
    else
      reply=$(vtvmm monitor "$sock" pause $((away * 1000)) 2>&1)
      t_restore=$(up)
      echo "@$t_restore host: vtvmm: resumed: $reply" >>"$log"
      case $reply in ok:*) ;; *) fail "$m/$away: pause: $reply" ;; esac
    fi
    sleep "$OBSERVE"
    echo "@$(up) host: window end" >>"$log"
    echo "--- $m, away $away s (snapshot at lab uptime $t_snap, restore at $t_restore)"
    tail -n +"$mark" "$log" | grep -vE "vtime-ptp: measurement=[0-9]+ method|sleep [0-9]+ (start|end)|klog [4-7] " |
      sed 's/^/  /'
    # The figures of this window.
    win=$(tail -n +"$mark" "$log")
    res=$(echo "$win" | grep -n "vtvmm: resumed" | head -n 1 | cut -d: -f1)
    after=$(echo "$win" | tail -n +"${res:-1}")
    before=$(echo "$win" | head -n "$((${res:-1} - 1))" | grep "offset_ns=" | tail -n 1 | sed -n 's/.*offset_ns=\(-\{0,1\}[0-9]*\).*/\1/p')
    first=$(echo "$after" | grep -m1 "offset_ns=" | sed -n 's/.*offset_ns=\(-\{0,1\}[0-9]*\).*/\1/p')
    last=$(echo "$after" | grep "offset_ns=" | tail -n 1 | sed -n 's/.*offset_ns=\(-\{0,1\}[0-9]*\).*/\1/p')
    stepped=$(echo "$after" | grep -m1 "stepped_ns=" | sed -n 's/.*stepped_ns=\(-\{0,1\}[0-9]*\).*/\1/p')
    klog=$(echo "$after" | grep "vtime-guest: klog")
    count() { if [ -z "$klog" ]; then echo 0; else echo "$klog" | grep -Eic "$1"; fi; }
    specific="soft lockup|rcu.*stall|blocked for more than|workqueue lockup|clocksource|timekeeping"
    other=$(if [ -z "$klog" ]; then echo 0; else echo "$klog" | grep -Ei "BUG:|WARNING:" | grep -Evic "$specific"; fi)
    kinds=" soft_lockup=$(count "soft lockup") rcu_stall=$(count "rcu.*stall") hung_task=$(count "blocked for more than") workqueue_lockup=$(count "workqueue lockup") clocksource=$(count "clocksource|timekeeping") other_bug_or_warning=$other"
    # The sleep that spanned the pause: the first one that started before
    # the snapshot and ended after the resume.
    sl=$(echo "$win" | awk -v ts="$t_snap" -v tr="$t_restore" '
      { t = substr($1, 2) + 0 }
      / sleep [0-9]+ start / { n = $4; start[n] = t }
      / sleep [0-9]+ end / { n = $4; if ((n in start) && start[n] < ts && t > tr && !done) {
          took = $0; sub(/.*took_mono=/, "", took); printf "real_s=%.2f mono_s=%s", t - start[n], took; done = 1 } }')
    ends=$(echo "$win" | grep -c "sleep [0-9]* end")
    # How long after the resume the guest's wall clock was stepped back
    # onto the host's (freeze+ptp).
    step_at=$(echo "$after" | grep -m1 "stepped_ns=" | cut -d' ' -f1 | tr -d @)
    step_delay=$( [ -n "$step_at" ] && awk -v a="$t_restore" -v b="$step_at" 'BEGIN { printf "%.2f", b - a }')
    away_ns=$(echo "$win" | sed -n 's/.*away \(-\{0,1\}[0-9]*\) ns by the.*/\1/p' | head -n 1)
    echo "FIGURE linux_jump method=$METHOD mode=$m away_s=$away away_ns=${away_ns:-?} ptp_offset_before_ns=${before:-none} ptp_offset_first_ns=${first:-none} ptp_offset_last_ns=${last:-none} stepped_ns=${stepped:-none} step_after_resume_s=${step_delay:-none}$kinds spanning_sleep: ${sl:-none} sleeps_ended_in_window=$ends"
  done
  mark=$(($(wc -l <"$log") + 1))
  echo "stop" >&3
  exec 3>&-
  wait "$vm"
  tail -n +"$mark" "$log" | sed 's/^/  /' | grep -v "vtime-ptp: measurement"
  # Each window's CLOCK_MONOTONIC steps (printed when the next window began).
  grep -E "vtime-clockwatch: (step|BACKWARDS)|summary clock=CLOCK_MONOTONIC|never went backwards" "$log" |
    sed "s/^/FIGURE linux_jump mode=$m clockwatch: /"
  if grep -q "not ok - vtime-clockwatch" "$log" || grep -q "BACKWARDS" "$log"; then
    fail "$m: a clock went backwards in the guest"
  fi
  grep -q "vtime-guest: probe done" "$log" || fail "$m: the guest did not end its probe"
done
echo "linux_jump: $failures failure(s)"
[ "$failures" -eq 0 ]
