#!/bin/sh
# Host and guest marks of the same moments (#11), in one lab machine: the
# host's clock samples (vtime-clocksample), then trace-cmd (Debian's arm64
# build, lab/setup-tracecmd) recording kvm:kvm_mmio, kvm_entry and kvm_exit
# (the vCPU's runs, for the merged check on the build host) while vtvmm runs a guest
# with --timeline that marks 20 moments: it reads CNTVCT, marks the moment
# in its own trace and stores the value to vtvmm's trace marker (0x090e0000,
# one 8-byte write). trace-cmd report (of kvm_mmio only) runs in the lab.
# Two guests:
#   bare   the bare-metal trace_marker guest: its trace is ftrace text it
#          prints on its own trace clock, described by clock samples it
#          prints too (guests/README.md);
#   linux  Debian's arm64 Linux (the lab's kernel, 1 vCPU) whose initramfs
#          runs trace_marker_linux.sh: its clock samples, then trace-cmd in
#          the guest recording while vtime-mark marks (trace_marker, then
#          the register through /dev/mem).
# Checks, without the merge tool:
#   - every guest mark's value is the val of exactly one kvm_mmio write of
#     8 bytes to the marker's gpa in the host's report, in the same order,
#     and there is no other access to that page; vtvmm counted them all;
#   - the clock samples of both pass vtime-trace samples;
#   - each mark's value, mapped through the timeline to the host's counter
#     and through the host's samples to its trace clock, comes before the
#     host's kvm_mmio event of that write, by less than 50 ms (FIGURE lines
#     give the gap); (linux) its record in the guest's own trace comes
#     0-50 ms after the value by the guest's samples, too.
# With TRACE_MARKER_OUT=DIR (host environment) the host copies the files
# out of the lab into DIR (host.dat, host.txt: its kvm_mmio report, vm.tl, host.samples,
# guest.trace: the guest's mark lines, guest.samples; linux: guest.dat and
# guest.txt too): the lab prints each gzip'd and base64'd on the console
# between "vtime-file BEGIN NAME" and "vtime-file END NAME" lines (lab/run
# has no other way out), which the host decodes and leaves out of the
# test's output. The Linux guest's files come to the lab the same way, on
# its console ("vtime-guest-file").
# Usage (host): trace_marker.sh host bare|linux AARCH64_BUILD_DIR GUEST_DIR [LAB/RUN OPTIONS...]
#        (lab):  trace_marker.sh lab bare GUEST_DIR TRACE_CMD [copy]
#                trace_marker.sh lab linux IMAGE INITRD TRACE_CMD [copy]
#                (vtvmm, vtime-clocksample, vtime-trace on PATH; TRACE_CMD is
#                the trace-cmd to run; "copy": print the files on the console)
mode=${1:?usage: trace_marker.sh host|lab bare|linux ...}
kind=${2:?usage: trace_marker.sh host|lab bare|linux ...}
shift 2
if [ "$mode" = host ]; then
  a64=${1:?AARCH64_BUILD_DIR}
  guests=${2:?GUEST_DIR}
  shift 2
  here=$(cd "$(dirname "$0")" && pwd)
  lab=$here/../../lab
  # trace-cmd is part of the test: if it cannot be set up, the test fails.
  "$lab/setup-tracecmd" --quiet ||
    { echo "FAIL: lab/setup-tracecmd could not set up trace-cmd"; exit 1; }
  out=${TRACE_MARKER_OUT:-}
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  console=$tmp/console
  case $kind in
    bare)
      set -- "$@" --add "$guests/trace_marker.elf:/guests/trace_marker.elf" \
        -- sh /bin/trace_marker.sh lab bare /guests /trace-cmd/trace-cmd "${out:+copy}" ;;
    linux)
      kernel=$lab/cache/kernel/Image
      [ -s "$kernel" ] || { echo "FAIL: no lab kernel at $kernel: run lab/setup"; exit 1; }
      # /init runs the executables of /etc/vtime/init.d; the mode goes with
      # the file into the initramfs, so it is set here, not left to a checkout.
      cp "$here/trace_marker_linux.sh" "$tmp/50-trace-marker" && chmod 755 "$tmp/50-trace-marker"
      initrd=$("$here/../../guests/linux/mkinitramfs" \
        --add "$a64/guest-tools/vtime-mark:/bin/vtime-mark" \
        --add "$a64/guest-tools/vtime-clocksample:/bin/vtime-clocksample" \
        --add "$lab/cache/trace-cmd:/trace-cmd" \
        --add "$tmp/50-trace-marker:/etc/vtime/init.d/50-trace-marker") ||
        { echo "FAIL: guests/linux/mkinitramfs could not build the initramfs"; exit 1; }
      set -- "$@" --add "$kernel:/boot/Image" --add "$initrd:/boot/initrd.gz" \
        -- sh /bin/trace_marker.sh lab linux /boot/Image /boot/initrd.gz /trace-cmd/trace-cmd \
        "${out:+copy}" ;;
    *) echo "usage: trace_marker.sh host bare|linux ..."; exit 2 ;;
  esac
  "$lab/run" --add "$a64/tools/vtvmm:/bin/vtvmm" \
    --add "$a64/tools/vtime-trace:/bin/vtime-trace" \
    --add "$a64/guest-tools/vtime-clocksample:/bin/vtime-clocksample" \
    --add "$lab/cache/trace-cmd:/trace-cmd" \
    --add "$here/trace_marker.sh:/bin/trace_marker.sh" "$@" >"$console"
  status=$?
  awk '/^vtime-file BEGIN /{skip=1} !skip{print} /^vtime-file END /{skip=0}' "$console"
  if [ -n "$out" ]; then
    mkdir -p "$out" || exit 1
    for name in $(sed -n 's/^vtime-file BEGIN //p' "$console"); do
      awk -v n="$name" '$0 == "vtime-file END " n {p=0} p{print} $0 == "vtime-file BEGIN " n {p=1}' \
        "$console" | base64 -d | gunzip >"$out/$name" ||
        { echo "FAIL: could not decode $name from the console"; status=1; }
    done
    echo "trace_marker: files in $out: $(cd "$out" && ls | tr '\n' ' ')"
  fi
  # On this host: vtime-trace merge of the host's and the guest's traces
  # (VTIME_TRACE_X86, the build host's, which reads .dat through
  # libtracecmd), then marker_check on the merged JSON: each mark between
  # its vCPU's last kvm_entry and its kvm_mmio exit.
  if [ -n "$out" ] && [ -n "${VTIME_TRACE_X86:-}" ] && [ -n "${MARKER_CHECK:-}" ]; then
    gtrace=$out/guest.trace
    [ "$kind" = linux ] && gtrace=$out/guest.dat
    if "$VTIME_TRACE_X86" merge -o "$out/merged.json" --quiet \
      --host "samples=$out/host.samples,trace=$out/host.dat" \
      --guest "samples=$out/guest.samples,timeline=$out/vm.tl,trace=$gtrace" >"$tmp/merge.out" 2>&1; then
      echo "PASS vtime-trace merge on the build host: $(tail -n 1 "$tmp/merge.out")"
    else
      cat "$tmp/merge.out"
      echo "FAIL vtime-trace merge on the build host"
      status=1
    fi
    marks=$(grep -c 'vtime-mark ' "$out/guest.trace")
    "$MARKER_CHECK" "$out/merged.json" --gpa 0x90e0000 --max-gap-ns 50000000 --marks "$marks" \
      >"$tmp/check.out" 2>&1
    check=$?
    grep FIGURE "$tmp/check.out" | grep -v ' mark [0-9]* value ' 
    grep -v FIGURE "$tmp/check.out"
    if [ $check -eq 0 ]; then
      echo "PASS merged: each of the $marks marks lands between its vCPU's entry and its exit"
    else
      echo "FAIL merged marks"
      status=1
    fi
  elif [ -n "$out" ]; then
    echo "FAIL: VTIME_TRACE_X86 and MARKER_CHECK must name the build host's vtime-trace and marker_check"
    status=1
  fi
  exit "$status"
fi

case $kind in
  bare)
    g=${1:?usage: trace_marker.sh lab bare GUEST_DIR TRACE_CMD [copy]}
    tc=${2:?usage: trace_marker.sh lab bare GUEST_DIR TRACE_CMD [copy]}
    copy=${3:-} ;;
  linux)
    image=${1:?usage: trace_marker.sh lab linux IMAGE INITRD TRACE_CMD [copy]}
    initrd=${2:?usage: trace_marker.sh lab linux IMAGE INITRD TRACE_CMD [copy]}
    tc=${3:?usage: trace_marker.sh lab linux IMAGE INITRD TRACE_CMD [copy]}
    copy=${4:-} ;;
  *) echo "usage: trace_marker.sh lab bare|linux ..."; exit 2 ;;
esac
failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
up() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(up)" 'BEGIN { printf "%.2f", b - a }'; }
marker_gpa=0x90e0000
w=/tmp/trace_marker
mkdir -p "$w"
cd "$w" || exit 1
t_start=$(up)

# The lab's /init mounts sysfs; tracefs appears on first access to
# /sys/kernel/tracing, but mount it where it does not.
[ -e /sys/kernel/tracing/trace ] || mount -t tracefs nodev /sys/kernel/tracing ||
  fail "cannot mount tracefs"
echo "trace_marker: trace clock: $(cat /sys/kernel/tracing/trace_clock)"

vtime-clocksample --samples 10 --interval-ms 20 --output host.samples >sample.out 2>&1 ||
  { cat sample.out; fail "vtime-clocksample on the host"; }
vtime-trace samples host.samples >check.out 2>&1 && pass "host samples: $(cat check.out)" ||
  fail "host samples refused: $(cat check.out)"

# trace-cmd runs vtvmm itself and stops recording when it ends. It saves
# /proc/kallsyms in the file (6.4 MB, 1.2 MB compressed, some 10 s on the
# console to copy out), of no use to kvm_mmio records: when the file goes
# out by the console, an empty file stands in for it while it records.
if [ -n "$copy" ]; then
  : >kallsyms.empty
  mount -o bind kallsyms.empty /proc/kallsyms || fail "cannot hide /proc/kallsyms"
fi
t0=$(up)
if [ "$kind" = bare ]; then
  vm="vtvmm --stats --timeline $w/vm.tl $g/trace_marker.elf"
else
  vm="vtvmm --stats --timeline $w/vm.tl --timeout 300 --cpus 1 --memory 256 --kernel $image --initrd $initrd --append 'console=ttyAMA0 quiet'"
fi
"$tc" record -e kvm:kvm_mmio -e kvm:kvm_entry -e kvm:kvm_exit -o host.dat \
  sh -c "$vm >$w/guest.raw 2>&1; echo \$? >$w/guest.status" >record.out 2>&1
rec_status=$?
# (A Linux console ends its lines with CR LF.)
tr -d '\r' <guest.raw >guest.out
[ -z "$copy" ] || umount /proc/kallsyms
t_record=$(since "$t0")
[ "$rec_status" = 0 ] && pass "trace-cmd record (${t_record} s)" ||
  { cat record.out; fail "trace-cmd record exited $rec_status"; }
awk '/^vtime-guest-file BEGIN /{skip=1} !skip{print "  [guest] " $0} /^vtime-guest-file END /{skip=0}' guest.out
[ "$(cat guest.status 2>/dev/null)" = 0 ] && pass "vtvmm ran the guest, status 0" ||
  fail "vtvmm status $(cat guest.status 2>/dev/null)"
t0=$(up)
"$tc" report -t -F kvm_mmio -i host.dat >host.txt 2>report.err
rep_status=$?
t_report=$(since "$t0")
[ "$rep_status" = 0 ] && pass "trace-cmd report (${t_report} s, $(wc -l <host.txt) lines, host.dat $(wc -c <host.dat) bytes)" ||
  { cat report.err; fail "trace-cmd report exited $rep_status"; }

# The guest's own trace and the description of its clock; the values it
# stored, as "I VALUE".
if [ "$kind" = bare ]; then
  grep 'tracing_mark_write: vtime-mark ' guest.out >guest.trace
  grep -E '^(vtime-clocksample|machine|frequency|perf|sample) ' guest.out >guest.samples
  sed -n 's/.* vtime-mark \([0-9]*\) \([0-9]*\)$/\1 \2/p' guest.trace >guest.vals
else
  for f in guest.dat guest.txt guest.samples; do
    awk -v n="$f" '$0 == "vtime-guest-file END " n {p=0} p{print} $0 == "vtime-guest-file BEGIN " n {p=1}' \
      guest.out | base64 -d | gunzip >"$f" || fail "could not decode the guest's $f from its console"
  done
  grep ' vtime-mark [0-9]* [0-9]*$' guest.txt >guest.trace
  sed -n 's/^vtime-mark: mark \([0-9]*\) \([0-9]*\)$/\1 \2/p' guest.out >guest.vals
  [ -s guest.vals ] && [ "$(wc -l <guest.trace)" = "$(wc -l <guest.vals)" ] &&
    pass "the guest's own trace holds its $(wc -l <guest.vals) marks" ||
    fail "the guest's trace holds $(wc -l <guest.trace) marks, vtime-mark made $(wc -l <guest.vals)"
fi
vtime-trace samples guest.samples >check.out 2>&1 && pass "guest samples: $(cat check.out)" ||
  fail "guest samples refused: $(cat check.out)"
marks=$(wc -l <guest.vals)
counted=$(sed -n 's/.* trace_marks=\([0-9]*\).*/\1/p' guest.out)
[ "$marks" -gt 0 ] && [ "$counted" = "$marks" ] &&
  pass "the guest marked $marks moments, vtvmm counted $counted marker writes" ||
  fail "guest marks $marks, vtvmm counted '$counted'"

# Host side: every kvm_mmio on the marker's page, as "TS LEN-TYPE VALUE".
grep "kvm_mmio: .* gpa $marker_gpa " host.txt >host.marks
grep -c "kvm_mmio: " host.txt >/dev/null || fail "no kvm_mmio event in the host's report"
awk '{
  for (i = 1; i <= NF; i++) {
    if ($i ~ /^[0-9]+\.[0-9]+:$/) ts = substr($i, 1, length($i) - 1)
    if ($i == "mmio") type = $(i + 1)
    if ($i == "len") len = $(i + 1)
    if ($i == "val") val = $(i + 1)
  }
  print ts, type "-" len, val
}' host.marks >host.vals
bad=$(awk '$2 != "write-8"' host.vals | wc -l)
[ "$bad" = 0 ] && pass "every access to the marker's page is an 8-byte write" ||
  fail "$bad other access(es) to the marker's page: $(awk '$2 != "write-8"' host.vals | head -n 3)"
# Same values, same order: line i of one is line i of the other.
: >pairs
i=0
while read -r n value; do
  i=$((i + 1))
  host=$(sed -n "${i}p" host.vals)
  hval=${host##* }
  if [ -n "$hval" ] && [ "$((hval))" = "$value" ]; then
    echo "$n $value ${host%% *}" >>pairs
  else
    echo "  mismatch at mark $n: guest $value, host '${host}'"
  fi
done <guest.vals
matched=$(wc -l <pairs)
hosts=$(wc -l <host.vals)
[ "$marks" -gt 0 ] && [ "$matched" = "$marks" ] && [ "$hosts" = "$marks" ] &&
  pass "each of the $marks guest marks is the val of exactly one host kvm_mmio write, in order" ||
  fail "matched $matched of $marks guest marks; the host saw $hosts marker writes"
echo "trace_marker: the host's marker events and the guest's lines they match:"
while read -r n value ts; do
  grep -m1 " val $(printf '0x%x' "$value")\$" host.marks | sed 's/^ */  [host]  /'
  grep -m1 " vtime-mark $n $value\$" guest.trace | sed 's/^ */  [guest] /'
done <pairs

# Each mark's value through the timeline to the host's counter, and through
# the host's perf conversion to its trace clock (the kernel's arithmetic;
# 64-bit shell arithmetic suffices, the remainder's product is below 2^63).
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
# counter value COUNT (empty without a conversion).
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
# gaps WHAT: reads "N GAP_NS" lines; one check (every gap in 0-50 ms) and a
# FIGURE line with their range.
gaps() {
  min='' max='' sum=0 n_gap=0 late=0
  while read -r n gap; do
    [ "$gap" -ge 0 ] && [ "$gap" -lt 50000000 ] || late=$((late + 1))
    [ -z "$min" ] || [ "$gap" -lt "$min" ] && min=$gap
    [ -z "$max" ] || [ "$gap" -gt "$max" ] && max=$gap
    sum=$((sum + gap)) n_gap=$((n_gap + 1))
  done
  [ "$marks" -gt 0 ] && [ "$n_gap" = "$marks" ] && [ "$late" = 0 ] && pass "$1: 0-50 ms for every mark" ||
    fail "$1: $late of $n_gap marks outside 0-50 ms ($marks marks)"
  [ "$n_gap" -gt 0 ] &&
    echo "FIGURE trace_marker/$kind: $1: min $((min / 1000)) us, mean $((sum / n_gap / 1000)) us, max $((max / 1000)) us over $n_gap marks"
}
while read -r n value ts; do
  count=$(vtime-trace map vm.tl --vcpu 0 --virtual "$value" 2>&1 </dev/null | sed -n 's/^host=0 count=\([0-9]*\)$/\1/p')
  ns=$([ -z "$count" ] || trace_ns host.samples "$count")
  if [ -z "$ns" ]; then
    echo "  mark $n: no host trace time for guest value $value (host count '$count')"
    continue
  fi
  event=$(stamp_ns "$ts")
  echo "  mark $n: guest $value = host count $count = host trace clock $ns ns; kvm_mmio at $event ns: gap $((event - ns)) ns" >&2
  echo "$n $((event - ns))"
done <pairs >host.gaps 2>host.gaps.log
cat host.gaps.log
gaps "guest CNTVCT read -> host kvm_mmio event" <host.gaps
if [ "$kind" = linux ]; then
  # The guest's own record of each mark, after the value it read.
  while read -r n value; do
    ts=$(grep -m1 " vtime-mark $n $value\$" guest.trace | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) { print substr($i, 1, length($i) - 1); exit } }')
    ns=$(trace_ns guest.samples "$value")
    [ -n "$ts" ] && [ -n "$ns" ] || continue
    echo "$n $(($(stamp_ns "$ts") - ns))"
  done <guest.vals >guest.gaps
  gaps "guest CNTVCT read -> its trace_marker record in the guest's trace" <guest.gaps
fi
echo "FIGURE trace_marker/$kind: trace-cmd record ${t_record} s (vtvmm and the guest inside), trace-cmd report ${t_report} s, in-lab total $(since "$t_start") s"

if [ -n "$copy" ]; then
  files="host.dat host.txt guest.trace vm.tl host.samples guest.samples"
  [ "$kind" = bare ] || files="$files guest.dat guest.txt"
  for f in $files; do
    echo "vtime-file BEGIN $f"
    gzip -c "$f" | base64
    echo "vtime-file END $f"
  done
fi
echo "trace_marker: $failures failure(s)"
[ "$failures" -eq 0 ]
