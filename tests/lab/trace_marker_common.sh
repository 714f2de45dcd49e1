# Sourced by the trace-marker proof's scripts: trace_marker.sh (one lab
# machine) and trace_marker_pair.sh (two, across a live migration and a
# restore), on the build host and in the lab, and by trace_marker_linux.sh
# in the Linux guest. Definitions only; the callers set $here (their
# directory) and, where they use gaps, $kind and $marks.
#   pass MSG / fail MSG       one result line; fail counts $failures
#   files_out PREFIX FILE...  each FILE gzip'd and base64'd between
#                             "PREFIX BEGIN FILE" and "PREFIX END FILE" lines:
#                             a console is the only way out of the lab (and
#                             of its Linux guest)
#   files_in PREFIX INPUT DIR [NAME...]
#                             decodes those blocks of INPUT (all, or the
#                             NAMEs) into DIR; a failure is a fail line
#   files_strip PREFIX        stdin to stdout without the blocks
# In the lab:
#   tracefs_up                mounts tracefs where first access does not
#   host_samples FILE         this host's clock samples, checked
#   record_start TRACE_CMD DAT COPY COMMAND / record_wait
#                             trace-cmd records the vCPUs' runs and MMIO
#                             exits while `sh -c COMMAND` runs (see below)
# On the build host:
#   tracecmd_setup            lab/setup-tracecmd, or a FAIL line and exit 1
#   linux_guest A64 TMP       $kernel and $initrd for the Linux guest, or a
#                             FAIL line and exit 1
#   merge_check DIR GUEST_TRACE MARKS CHECK_ARGS HOST_SPEC...
#                             vtime-trace merge, then marker_check
# Either: trace_ns, stamp_ns, gaps, guest_gaps (the clock arithmetic).
failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

files_out() {
  files_out_prefix=$1
  shift
  for files_out_f in "$@"; do
    echo "$files_out_prefix BEGIN $files_out_f"
    gzip -c "$files_out_f" | base64
    echo "$files_out_prefix END $files_out_f"
  done
}
files_in() {
  files_in_prefix=$1 files_in_from=$2 files_in_dir=$3
  shift 3
  [ $# -gt 0 ] || set -- $(sed -n "s/^$files_in_prefix BEGIN //p" "$files_in_from")
  for files_in_name in "$@"; do
    awk -v b="$files_in_prefix BEGIN $files_in_name" -v e="$files_in_prefix END $files_in_name" \
      '$0 == e {p=0} p{print} $0 == b {p=1}' "$files_in_from" | base64 -d |
      gunzip >"$files_in_dir/$files_in_name" ||
      fail "could not decode $files_in_name from $files_in_from"
  done
}
files_strip() {
  awk -v b="$1 BEGIN " -v e="$1 END " \
    'index($0, b) == 1 {skip=1} !skip{print} index($0, e) == 1 {skip=0}'
}

up() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(up)" 'BEGIN { printf "%.2f", b - a }'; }

# The lab's /init mounts sysfs; tracefs appears on first access to
# /sys/kernel/tracing, but mount it where it does not.
tracefs_up() {
  [ -e /sys/kernel/tracing/trace ] || mount -t tracefs nodev /sys/kernel/tracing ||
    fail "cannot mount tracefs"
}
host_samples() {
  vtime-clocksample --samples 10 --interval-ms 20 --output "$1" >sample.out 2>&1 ||
    { cat sample.out; fail "vtime-clocksample on the host"; }
  vtime-trace samples "$1" >check.out 2>&1 && pass "host samples: $(cat check.out)" ||
    fail "host samples refused: $(cat check.out)"
}

# trace-cmd runs `sh -c COMMAND` itself, in the background ($record_pid),
# recording kvm:kvm_mmio, kvm_entry and kvm_exit into DAT, and stops when it
# ends; record_wait waits for it and sets $t_record. trace-cmd saves
# /proc/kallsyms in the file (6.4 MB, 1.2 MB compressed, some 10 s on the
# console to copy out), of no use to these records: when COPY is not empty
# (the file goes out by the console), an empty file stands in for it while
# it records.
record_start() {
  record_copy=$3
  if [ -n "$record_copy" ]; then
    : >kallsyms.empty
    mount -o bind kallsyms.empty /proc/kallsyms || fail "cannot hide /proc/kallsyms"
  fi
  record_t0=$(up)
  "$1" record -e kvm:kvm_mmio -e kvm:kvm_entry -e kvm:kvm_exit -o "$2" sh -c "$4" \
    >record.out 2>&1 &
  record_pid=$!
}
record_wait() {
  wait "$record_pid"
  record_status=$?
  [ -z "$record_copy" ] || umount /proc/kallsyms
  t_record=$(since "$record_t0")
  [ "$record_status" = 0 ] && pass "trace-cmd record (${t_record} s)" ||
    { cat record.out; fail "trace-cmd record exited $record_status"; }
}

# trace-cmd is part of the test: if it cannot be set up, the test fails.
tracecmd_setup() {
  "$here/../../lab/setup-tracecmd" --quiet ||
    { echo "FAIL: lab/setup-tracecmd could not set up trace-cmd"; exit 1; }
}
# The Linux guest: the lab's kernel and an initramfs whose /init runs the
# executables of /etc/vtime/init.d (the mode goes with the file into the
# initramfs, so it is set here, not left to a checkout).
linux_guest() {
  kernel=$here/../../lab/cache/kernel/Image
  [ -s "$kernel" ] || { echo "FAIL: no lab kernel at $kernel: run lab/setup"; exit 1; }
  initrd=$(linux_initrd "$1" "$2") ||
    { echo "FAIL: guests/linux/mkinitramfs could not build the initramfs"; exit 1; }
}
linux_initrd() {
  cp "$here/trace_marker_linux.sh" "$2/50-trace-marker" && chmod 755 "$2/50-trace-marker" &&
    "$here/../../guests/linux/mkinitramfs" \
      --add "$1/guest-tools/vtime-mark:/bin/vtime-mark" \
      --add "$1/guest-tools/vtime-clocksample:/bin/vtime-clocksample" \
      --add "$here/../../lab/cache/trace-cmd:/trace-cmd" \
      --add "$here/trace_marker_common.sh:/bin/trace_marker_common.sh" \
      --add "$2/50-trace-marker:/etc/vtime/init.d/50-trace-marker"
}

# vtime-trace merge ($VTIME_TRACE_X86, the build host's, which reads .dat
# through libtracecmd) of the hosts' traces (each HOST_SPEC: samples=...,
# trace=...) and the guest's (DIR/guest.samples, DIR/vm.tl, GUEST_TRACE) into
# DIR/merged.json, then marker_check ($MARKER_CHECK) on it with CHECK_ARGS
# (word-split): each of the MARKS marks inside a run of its vCPU, at or
# before its store's exit.
merge_check() {
  mc_dir=$1 mc_trace=$2 mc_marks=$3 mc_args=$4
  shift 4
  mc_hosts=
  for mc_h in "$@"; do mc_hosts="$mc_hosts --host $mc_h"; done
  if "$VTIME_TRACE_X86" merge -o "$mc_dir/merged.json" --quiet $mc_hosts \
    --guest "samples=$mc_dir/guest.samples,timeline=$mc_dir/vm.tl,trace=$mc_trace" \
    >"$mc_dir/merge.out" 2>&1; then
    pass "vtime-trace merge on the build host: $(tail -n 1 "$mc_dir/merge.out")"
  else
    cat "$mc_dir/merge.out"
    fail "vtime-trace merge on the build host"
  fi
  "$MARKER_CHECK" "$mc_dir/merged.json" --gpa 0x90e0000 --max-gap-ns 50000000 \
    --marks "$mc_marks" $mc_args >"$mc_dir/check.out" 2>&1
  mc_status=$?
  grep FIGURE "$mc_dir/check.out" | grep -v ' mark [0-9]* value '
  grep -v FIGURE "$mc_dir/check.out"
  [ $mc_status -eq 0 ] &&
    pass "merged: each of the $mc_marks marks lands inside a run of its vCPU, at or before its store's exit" ||
    fail "merged marks"
}

# time_zero is an unsigned 64-bit number, above 2^63 when the trace clock's
# zero lies after the counter's (the lab's case), which the shell's signed
# arithmetic cannot read: it is taken as time_zero - 2^64 then, from its
# decimal digits split at 10^10 (2^64 = 1844674407 * 10^10 + 3709551616).
signed_u64() {
  set -- $(awk -v z="$1" 'BEGIN {
    if (length(z) == 20 || (length(z) == 19 && z > "9223372036854775807"))
      print substr(z, 1, length(z) - 10), substr(z, length(z) - 9)
    else
      print z }')
  if [ $# = 2 ]; then
    echo $((-((1844674407 - $1) * 10000000000 + 3709551616 - (1$2 - 10000000000))))
  else
    echo "$1"
  fi
}
# trace_ns SAMPLES COUNT: the trace clock of the machine of SAMPLES at
# counter value COUNT (empty without a conversion): the kernel's perf
# arithmetic (64-bit shell arithmetic suffices, the remainder's product is
# below 2^63).
trace_ns() {
  set -- $(sed -n 's/^perf time_zero=\([0-9]*\) time_mult=\([0-9]*\) time_shift=\([0-9]*\) .*/\1 \2 \3/p' "$1") "$2"
  [ $# = 4 ] && [ "$2" != 0 ] || return 0
  echo $(($(signed_u64 "$1") + ($4 >> $3) * $2 + ((($4 & ((1 << $3) - 1)) * $2) >> $3)))
}
# stamp_ns SECONDS.FRACTION: nanoseconds; "1$frac" keeps a fraction with
# leading zeros from being read as octal.
stamp_ns() {
  frac=$(echo "${1#*.}000000000" | cut -c1-9)
  echo $((${1%.*} * 1000000000 + 1$frac - 1000000000))
}
# gaps WHAT [BOUND_NS]: reads "N GAP_NS [NEAR_BOUND_NS]" lines; one check
# (every gap in 0 to BOUND_NS, 50 ms unless given, or to NEAR_BOUND_NS
# where a line has one; one line per mark of $marks) and a FIGURE line with
# their range (labelled $figure, default trace_marker/$kind).
gaps() {
  g_bound=${2:-50000000}
  min='' max='' sum=0 n_gap=0 late=0 near=0 near_bound=
  while read -r n gap bound; do
    [ -n "$bound" ] && near=$((near + 1)) near_bound=$bound
    [ "$gap" -ge 0 ] && [ "$gap" -lt "${bound:-$g_bound}" ] || late=$((late + 1))
    [ -z "$min" ] || [ "$gap" -lt "$min" ] && min=$gap
    [ -z "$max" ] || [ "$gap" -gt "$max" ] && max=$gap
    sum=$((sum + gap)) n_gap=$((n_gap + 1))
  done
  within="0-$((g_bound / 1000000)) ms"
  [ "$near" = 0 ] || within="$within ($near of them, near a move, 0-$((near_bound / 1000000)) ms)"
  [ "$marks" -gt 0 ] && [ "$n_gap" = "$marks" ] && [ "$late" = 0 ] && pass "$1: $within for every mark" ||
    fail "$1: $late of $n_gap marks outside $within ($marks marks)"
  [ "$n_gap" -gt 0 ] &&
    echo "FIGURE ${figure:-trace_marker/$kind}: $1: min $((min / 1000)) us, mean $((sum / n_gap / 1000)) us, max $((max / 1000)) us over $n_gap marks"
}
# guest_gaps [PAUSED RESUMED]...: the Linux guest's own record of each mark
# (guest.trace, in the current directory) after the value it read
# (guest.vals), by its samples (guest.samples), within 250 ms: the guest's
# own clock also runs while the host has its vCPU out (exits, the lab's 2
# CPUs shared with trace-cmd), which the guest cannot see, and a fresh
# chroot's run saw 55 ms in steady state; the exact check is the merge's
# (marker_check, on the guest's own running only). Each PAUSED RESUMED
# pair is a move's guest CNTVCT at the pause and at the resume: a mark read
# from half a second before a pause to a second after its resume gets
# 500 ms (the guest is slow then: every first touch of a page is a stage-2
# fault on the new host, and its tracer catches up; in CI a mark read just
# before a migration was recorded 118 ms later).
guest_gaps() {
  hz=$(sed -n 's/^frequency hz=\([0-9]*\).*/\1/p' guest.samples)
  gg_moves="$*"
  while read -r n value; do
    ts=$(grep -m1 " vtime-mark $n $value\$" guest.trace | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) { print substr($i, 1, length($i) - 1); exit } }')
    ns=$(trace_ns guest.samples "$value")
    [ -n "$ts" ] && [ -n "$ns" ] || continue
    bound=
    set -- $gg_moves
    while [ $# -ge 2 ] && [ -n "$hz" ]; do
      [ "$value" -ge $(($1 - hz / 2)) ] && [ "$value" -le $(($2 + hz)) ] && bound=500000000
      shift 2
    done
    echo "$n $(($(stamp_ns "$ts") - ns)) $bound"
  done <guest.vals >guest.gaps
  gaps "guest CNTVCT read -> its trace_marker record in the guest's trace" 250000000 <guest.gaps
}
