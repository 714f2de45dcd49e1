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
#     0-250 ms after the value by the guest's samples (guest_gaps in
#     trace_marker_common.sh says why not 50).
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
#                the trace-cmd to run; "copy": print the files on the console;
#                trace_marker_common.sh beside this script)
# tests/lab/trace_marker_pair.sh is the same proof across a live migration
# and a restore, on two lab machines.
mode=${1:?usage: trace_marker.sh host|lab bare|linux ...}
kind=${2:?usage: trace_marker.sh host|lab bare|linux ...}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/trace_marker_common.sh"
if [ "$mode" = host ]; then
  a64=${1:?AARCH64_BUILD_DIR}
  guests=${2:?GUEST_DIR}
  shift 2
  lab=$here/../../lab
  tracecmd_setup
  out=${TRACE_MARKER_OUT:-}
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  console=$tmp/console
  case $kind in
    bare)
      set -- "$@" --add "$guests/trace_marker.elf:/guests/trace_marker.elf" \
        -- sh /bin/trace_marker.sh lab bare /guests /trace-cmd/trace-cmd "${out:+copy}" ;;
    linux)
      linux_guest "$a64" "$tmp"
      set -- "$@" --add "$kernel:/boot/Image" --add "$initrd:/boot/initrd.gz" \
        -- sh /bin/trace_marker.sh lab linux /boot/Image /boot/initrd.gz /trace-cmd/trace-cmd \
        "${out:+copy}" ;;
    *) echo "usage: trace_marker.sh host bare|linux ..."; exit 2 ;;
  esac
  "$lab/run" --add "$a64/tools/vtvmm:/bin/vtvmm" \
    --add "$a64/tools/vtime-trace:/bin/vtime-trace" \
    --add "$a64/guest-tools/vtime-clocksample:/bin/vtime-clocksample" \
    --add "$lab/cache/trace-cmd:/trace-cmd" \
    --add "$here/trace_marker_common.sh:/bin/trace_marker_common.sh" \
    --add "$here/trace_marker.sh:/bin/trace_marker.sh" "$@" >"$console"
  status=$?
  files_strip vtime-file <"$console"
  if [ -n "$out" ]; then
    mkdir -p "$out" || exit 1
    files_in vtime-file "$console" "$out"
    echo "trace_marker: files in $out: $(cd "$out" && ls | tr '\n' ' ')"
  fi
  # On this host: vtime-trace merge of the host's and the guest's traces,
  # then marker_check on the merged JSON: each mark between its vCPU's last
  # kvm_entry and its kvm_mmio exit.
  if [ -n "$out" ] && [ -n "${VTIME_TRACE_X86:-}" ] && [ -n "${MARKER_CHECK:-}" ]; then
    gtrace=$out/guest.trace
    [ "$kind" = linux ] && gtrace=$out/guest.dat
    merge_check "$out" "$gtrace" "$(grep -c 'vtime-mark ' "$out/guest.trace")" "" \
      "samples=$out/host.samples,trace=$out/host.dat"
  elif [ -n "$out" ]; then
    fail "VTIME_TRACE_X86 and MARKER_CHECK must name the build host's vtime-trace and marker_check"
  fi
  [ "$failures" = 0 ] || [ "$status" != 0 ] || status=1
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
marker_gpa=0x90e0000
w=/tmp/trace_marker
mkdir -p "$w"
cd "$w" || exit 1
t_start=$(up)

tracefs_up
echo "trace_marker: trace clock: $(cat /sys/kernel/tracing/trace_clock)"
host_samples host.samples

# trace-cmd runs vtvmm itself and stops recording when it ends.
if [ "$kind" = bare ]; then
  vm="vtvmm --stats --timeline $w/vm.tl $g/trace_marker.elf"
else
  vm="vtvmm --stats --timeline $w/vm.tl --timeout 300 --cpus 1 --memory 256 --kernel $image --initrd $initrd --append 'console=ttyAMA0 quiet'"
fi
record_start "$tc" host.dat "$copy" "$vm >$w/guest.raw 2>&1; echo \$? >$w/guest.status"
record_wait
# (A Linux console ends its lines with CR LF.)
tr -d '\r' <guest.raw >guest.out
files_strip vtime-guest-file <guest.out | sed 's/^/  [guest] /'
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
  files_in vtime-guest-file guest.out . guest.dat guest.txt guest.samples
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
# the host's perf conversion to its trace clock (the kernel's arithmetic:
# trace_ns).
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
# (linux) The guest's own record of each mark, after the value it read.
[ "$kind" = bare ] || guest_gaps
echo "FIGURE trace_marker/$kind: trace-cmd record ${t_record} s (vtvmm and the guest inside), trace-cmd report ${t_report} s, in-lab total $(since "$t_start") s"

if [ -n "$copy" ]; then
  files="host.dat host.txt guest.trace vm.tl host.samples guest.samples"
  [ "$kind" = bare ] || files="$files guest.dat guest.txt"
  files_out vtime-file $files
fi
echo "trace_marker: $failures failure(s)"
[ "$failures" -eq 0 ]
