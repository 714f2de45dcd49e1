#!/bin/sh
# Host and guest marks of the same moments (#11), as trace_marker.sh proves
# them in one lab machine, here across a live migration and a restore from
# a file, on two (lab/pair: A 10.0.0.1, B 10.0.0.2). B's wall clock is
# stepped to A's (vtime-clocksync over TLS with the run's PSK) and each host
# writes its clock samples (vtime-clocksample: the counter, its trace clock
# and CLOCK_REALTIME, under the name vtvmm gives the host in its timeline).
#   A  trace-cmd records kvm:kvm_mmio, kvm_entry and kvm_exit while vtvmm
#      runs the guest with --timeline and --migrate-to B; once the guest
#      says it marks, a second later, SIGUSR2 sends it to B.
#   B  one trace-cmd record around vtvmm --incoming, which runs the guest
#      for a while and snapshots it to a file, then vtvmm --restore of that
#      file, which runs it to its end with --timeline (the timeline of the
#      guest's whole life: the stream and the snapshot carry it).
# The guest marks all along: it reads CNTVCT, marks the moment in its own
# trace and stores the value to vtvmm's trace marker (0x090e0000, one
# 8-byte write).
#   bare   trace_marker_long (guests/Makefile): 300 marks 50 ms apart, its
#          trace ftrace text on its console, its clock samples too;
#   linux  Debian's arm64 Linux (1 vCPU) running trace_marker_linux.sh:
#          vtime-mark, 200 marks 100 ms apart (vtime.marks= and
#          vtime.mark_interval_ms= on its command line) while trace-cmd
#          records in the guest; its files come out on its console, which
#          moves with it.
# Each machine prints its files (gzip'd, base64'd, between "vtime-file
# BEGIN/END NAME" lines) on its console. On the build host: the marks are
# 0..N-1, each once (none lost or repeated across the moves), the three
# vtvmm processes counted N marker writes between them, every clock sample
# file passes vtime-trace samples, (linux) each mark's record in the guest's
# own trace comes 0-250 ms after its value (500 ms near a move, see below);
# then vtime-trace merge of both hosts' traces and the guest's (B placed by the two wall clocks) and
# marker_check --stays 3: every mark inside a run of its vCPU thread, at or
# before its store's exit (or, the guest having moved in between, in the
# last runs of the stay before), with at most 50 ms of the guest's own
# running between them (500 ms in a stay's first second, as in the guest's
# own trace for a mark read from half a second before a pause to a second
# after its resume: the guest is slow then), the val of exactly one 8-byte
# write, and the marks on three stays (A; B's incoming vtvmm; B's restore,
# a new process). B's records and the guest's records on B go through the
# same wall-clock shift, so the check within a stay is exact whatever the
# clock sync's error. The files are left in TRACE_MARKER_OUT (A.dat,
# A.samples, A.guest.out: the guest's console on A, B.dat, B.samples,
# B.incoming.out, B.restore.out, vm.tl, guest.trace, guest.samples; linux:
# guest.dat, guest.txt; merged.json) or a temporary directory.
# Needs VTIME_TRACE_X86 and MARKER_CHECK (the build host's vtime-trace and
# marker_check).
# Usage (host): trace_marker_pair.sh host bare|linux AARCH64_BUILD_DIR GUEST_DIR [LAB/PAIR OPTIONS...]
#        (lab):  trace_marker_pair.sh a|b bare|linux PSK
set -u
mode=${1:?usage: trace_marker_pair.sh host|a|b bare|linux ...}
kind=${2:?usage: trace_marker_pair.sh host|a|b bare|linux ...}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/trace_marker_common.sh"
figure=trace_marker/pair.$kind
# Per guest: how vtvmm runs it, the console line that says it marks, and
# how long (ms) it runs on B before the snapshot.
case $kind in
  bare)
    vm="--memory 16 /guests/trace_marker_long.elf"
    ready='trace_marker: marks='
    stay_ms=2000 ;;
  linux)
    vm="--cpus 1 --memory 192 --kernel /boot/Image --initrd /boot/initrd.gz --append 'console=ttyAMA0 quiet vtime.marks=200 vtime.mark_interval_ms=100'"
    ready='vtime-guest: marking'
    stay_ms=3000 ;;
  *) echo "usage: trace_marker_pair.sh host|a|b bare|linux ..."; exit 2 ;;
esac
# Lines of a guest's console not worth showing: its marks, migration progress.
noise='tracing_mark_write: vtime-mark |^vtime-mark: mark |vtime-guest: report: |migration: (sent|received) [0-9.]+ of'

if [ "$mode" = host ]; then
  t_start=$(date +%s)
  lab=$here/../../lab
  a64=${1:?AARCH64_BUILD_DIR} guests=${2:?GUEST_DIR}
  shift 2
  # pair_common.sh defines pass and fail (and failures=0) as
  # trace_marker_common.sh does: sourced before the first result.
  . "$here/pair_common.sh"
  tracecmd_setup
  [ -n "${VTIME_TRACE_X86:-}" ] && [ -n "${MARKER_CHECK:-}" ] ||
    { echo "FAIL: VTIME_TRACE_X86 and MARKER_CHECK must name the build host's vtime-trace and marker_check"; exit 1; }
  tmp=$(mktemp -d)
  psk_dir=
  trap 'rm -rf "$tmp" "$psk_dir"' EXIT
  out=${TRACE_MARKER_OUT:-$tmp/out}
  mkdir -p "$out" || exit 1
  out=$(cd "$out" && pwd)
  (cd "$out" && rm -f A.dat A.samples A.guest.out B.dat B.samples B.incoming.out B.restore.out \
    vm.tl guest.trace guest.vals guest.samples guest.dat guest.txt merged.json)
  make_psk
  case $kind in
    bare) set -- "$@" --add "$guests/trace_marker_long.elf:/guests/trace_marker_long.elf" ;;
    linux)
      linux_guest "$a64" "$tmp"
      set -- "$@" --add "$kernel:/boot/Image" --add "$initrd:/boot/initrd.gz" ;;
  esac
  run_pair "$tmp/pair.out" "$@" --add "$a64/tools/vtvmm:/bin/vtvmm" \
    --add "$a64/tools/vtime-trace:/bin/vtime-trace" \
    --add "$a64/tools/vtime-clocksync:/bin/vtime-clocksync" \
    --add "$a64/guest-tools/vtime-clocksample:/bin/vtime-clocksample" \
    --add "$lab/cache/trace-cmd:/trace-cmd" --add "$psk:$guest_psk" \
    --add "$here/trace_marker_common.sh:/bin/trace_marker_common.sh" \
    --add "$here/trace_marker_pair.sh:/bin/trace_marker_pair.sh" \
    --a "sh /bin/trace_marker_pair.sh a $kind $guest_psk" \
    --b "sh /bin/trace_marker_pair.sh b $kind $guest_psk"
  for m in A B; do
    sed -n "s/^\[$m\] //p" "$tmp/pair.out" >"$tmp/$m.console"
    files_strip vtime-file <"$tmp/$m.console" | sed "s/^/[$m] /"
    files_in vtime-file "$tmp/$m.console" "$out"
  done
  [ "$status" != 125 ] || { echo "FAIL: the lab failed"; exit 125; }
  [ "$status" = 0 ] && pass "both machines' parts passed" || fail "lab/pair status $status"
  echo "trace_marker_pair: files in $out: $(cd "$out" && ls | tr '\n' ' ')"
  cd "$out" || exit 1

  # The guest's marks, as "I VALUE", and its trace and clock samples.
  if [ "$kind" = bare ]; then
    cat A.guest.out B.incoming.out B.restore.out | grep 'tracing_mark_write: vtime-mark ' >guest.trace
    grep -E '^(vtime-clocksample|machine|frequency|perf|sample) ' B.restore.out >guest.samples
    sed -n 's/.* vtime-mark \([0-9]*\) \([0-9]*\)$/\1 \2/p' guest.trace >guest.vals
    gtrace=$out/guest.trace
  else
    grep ' vtime-mark [0-9]* [0-9]*$' guest.txt >guest.trace
    sed -n 's/^vtime-mark: mark \([0-9]*\) \([0-9]*\)$/\1 \2/p' B.restore.out >guest.vals
    [ -s guest.vals ] && [ "$(wc -l <guest.trace)" = "$(wc -l <guest.vals)" ] &&
      pass "the guest's own trace holds its $(wc -l <guest.vals) marks" ||
      fail "the guest's trace holds $(wc -l <guest.trace) marks, vtime-mark made $(wc -l <guest.vals)"
    gtrace=$out/guest.dat
  fi
  marks=$(wc -l <guest.vals)
  [ "$marks" -gt 0 ] && [ "$(awk '$1 != NR - 1' guest.vals | wc -l)" = 0 ] &&
    pass "the guest's marks are 0..$((marks - 1)), each once, across both moves" ||
    fail "the guest's $marks marks are not 0..N-1 in order: $(awk '$1 != NR - 1' guest.vals | head -n 3 | tr '\n' ' ')"
  counts=$(sed -n 's/.* trace_marks=\([0-9]*\).*/\1/p' A.guest.out B.incoming.out B.restore.out | tr '\n' ' ')
  counted=$(echo "$counts" | awk '{ for (i = 1; i <= NF; i++) s += $i } END { print s + 0 }')
  [ "$(echo "$counts" | wc -w)" = 3 ] && [ "$counted" = "$marks" ] &&
    pass "the guest marked $marks moments; the three vtvmm processes counted $counted marker writes ($counts)" ||
    fail "guest marks $marks; vtvmm counted '$counts'"
  for f in A.samples B.samples guest.samples; do
    "$VTIME_TRACE_X86" samples "$f" >"$tmp/samples.out" 2>&1 && pass "$f: $(cat "$tmp/samples.out")" ||
      fail "$f refused: $(cat "$tmp/samples.out")"
  done
  # Each move's guest CNTVCT at the pause and at the resume (the incoming
  # vtvmm's and the restore's "resumed" lines).
  moves=$(sed -n 's/.*vtvmm: resumed (policy [a-z]*): CNTVCT paused at \([0-9]*\), resumes at \([0-9]*\);.*/\1 \2/p' \
    B.incoming.out B.restore.out | tr '\n' ' ')
  [ "$(echo "$moves" | wc -w)" = 4 ] || fail "two moves' pause and resume counts, got '$moves'"
  [ "$kind" = bare ] || guest_gaps $moves
  # Each stay's first second has a bound of 500 ms (marker_check's
  # --settle-ns): the guest is slow then.
  merge_check "$out" "$gtrace" "$marks" "--stays 3 --settle-ns 1000000000 --settle-max-gap-ns 500000000" \
    "samples=$out/A.samples,trace=$out/A.dat" \
    "samples=$out/B.samples,trace=$out/B.dat"
  sed -n 's/.*clocksync: after /FIGURE clock sync: /p' "$tmp/B.console"
  echo "FIGURE $figure: $marks marks, $(($(date +%s) - t_start)) s on the build host in all"
  echo "trace_marker_pair ($kind): $failures failure(s)"
  [ "$failures" -eq 0 ]
  exit
fi

# In the lab: A or B.
psk=${1:?PSK}
tc=/trace-cmd/trace-cmd
w=/tmp/trace_marker
mkdir -p "$w"
cd "$w" || exit 1
case $mode in
  a)
    vtime-clocksync serve 10.0.0.1:5555 --tls-psk "$psk" >cs.out 2>&1 && pass "served the clock to B" ||
      { cat cs.out; fail "vtime-clocksync serve"; }
    tracefs_up
    host_samples A.samples
    record_start "$tc" A.dat copy "vtvmm --stats --timeout 900 --timeline $w/A.tl --tls-psk $psk \
      --migrate-to 10.0.0.2:4444 $vm </dev/null >$w/guest.raw 2>&1; echo \$? >$w/guest.status"
    # However long the guest takes to start marking (a Linux boot: 10-40 s
    # in the lab), then a second more.
    i=0
    until grep -q "$ready" guest.raw 2>/dev/null || [ $i -ge 6000 ] || ! kill -0 "$record_pid" 2>/dev/null; do
      sleep 0.1
      i=$((i + 1))
    done
    if grep -q "$ready" guest.raw; then
      sleep 1
      kill -USR2 "$(pidof vtvmm)" && pass "the guest marks ('$ready' after $((i / 10)) s); sent to B a second later" ||
        fail "could not signal vtvmm"
    else
      fail "no '$ready' from the guest after $((i / 10)) s"
      kill "$(pidof vtvmm)" 2>/dev/null
    fi
    record_wait
    tr -d '\r' <guest.raw >A.guest.out
    grep -vE "$noise" A.guest.out | sed 's/^/  [guest] /'
    [ "$(cat guest.status 2>/dev/null)" = 0 ] && pass "vtvmm on A: status 0" ||
      fail "vtvmm on A: status $(cat guest.status 2>/dev/null)"
    grep -q "vtvmm: migrated to 10.0.0.2:4444" A.guest.out && pass "the guest went to B" ||
      fail "no 'vtvmm: migrated to 10.0.0.2:4444'"
    files_out vtime-file A.dat A.samples A.guest.out ;;
  b)
    # A serves the clock once both machines are up.
    sleep 2
    vtime-clocksync sync 10.0.0.1 5555 --apply --tls-psk "$psk" >cs.out 2>&1 &&
      pass "B's clock stepped to A's" || fail "vtime-clocksync sync"
    cat cs.out
    tracefs_up
    host_samples B.samples
    record_start "$tc" B.dat copy "vtvmm --stats --timeout 900 --tls-psk $psk --incoming 10.0.0.2:4444 \
      --snapshot $w/vm.snap --snapshot-after $stay_ms </dev/null >$w/incoming.raw 2>&1
      echo \$? >$w/incoming.status
      vtvmm --stats --timeout 600 --restore $w/vm.snap --timeline $w/vm.tl </dev/null >$w/restore.raw 2>&1
      echo \$? >$w/restore.status"
    record_wait
    for s in incoming restore; do
      tr -d '\r' <$s.raw | files_strip vtime-guest-file >B.$s.out
      echo "trace_marker_pair: the guest on B ($s):"
      grep -vE "$noise" B.$s.out | sed 's/^/  [guest] /'
      [ "$(cat $s.status 2>/dev/null)" = 0 ] && pass "vtvmm on B ($s): status 0" ||
        fail "vtvmm on B ($s): status $(cat $s.status 2>/dev/null)"
      grep -q "vtvmm: resumed" B.$s.out && pass "the guest resumed on B ($s)" ||
        fail "no 'vtvmm: resumed' on B ($s)"
    done
    files="B.dat B.samples B.incoming.out B.restore.out vm.tl"
    if [ "$kind" = linux ]; then
      tr -d '\r' <restore.raw >restore.out
      files_in vtime-guest-file restore.out . guest.dat guest.txt guest.samples
      files="$files guest.dat guest.txt guest.samples"
    fi
    files_out vtime-file $files ;;
  *) echo "usage: trace_marker_pair.sh host|a|b bare|linux ..."; exit 2 ;;
esac
echo "trace_marker_pair ($mode): $failures failure(s)"
[ "$failures" -eq 0 ]
