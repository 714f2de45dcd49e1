#!/bin/sh
# Runs inside the arm64 lab (or natively on an arm64 KVM host): a live
# migration between two vtvmm processes over loopback, failing at each step
# of the hand-over (src/vmm/handover.h), from each end, by a real SIGKILL or
# a cut link (--handover-fault). Each case asserts which side runs the guest
# afterwards, that the other does not, and that the guest (clockwatch) saw
# its counters never go backwards wherever it finished. When the source is
# in doubt, the test plays the operator: it looks at the destination as an
# operator would (does it run the guest?) and answers `resume` or `quit` on
# the source's monitor.
# Usage: handover.sh GUEST_DIR   (vtvmm on PATH)
g=${1:?usage: handover.sh GUEST_DIR}
failures=0
cases=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
ip link set lo up 2>/dev/null
port=5100
ok_line="ok - clockwatch: cntvct never went backwards"

# Waits up to $2 seconds for file $1 to contain $3.
wait_for() {
  i=0
  while [ "$i" -lt $(($2 * 10)) ]; do
    grep -q "$3" "$1" 2>/dev/null && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

# handover NAME SOURCE-FAULT DESTINATION-ARGS WANT-SOURCE WANT-DESTINATION
#   SOURCE-FAULT: a --handover-fault value for the source, other source
#                     options (starting with --), or -
#   DESTINATION-ARGS: extra destination options (a --handover-fault), or -
#   WANT-SOURCE:      resumes (by itself) | operator-resume | operator-quit |
#                     moved (handed over) | killed
#   WANT-DESTINATION: runs | refuses (exits 125 without running) | killed
handover() {
  name=$1 src_fault=$2 dst_args=$3 want_src=$4 want_dst=$5
  cases=$((cases + 1))
  port=$((port + 1))
  rm -f /tmp/ho-src.sock /tmp/ho-src.out /tmp/ho-dst.out
  case $src_fault in
    -) src_fault='' ;;
    --*) ;;
    *) src_fault="--handover-fault $src_fault" ;;
  esac
  [ "$dst_args" = - ] && dst_args=''
  # shellcheck disable=SC2086
  vtvmm --timeout 120 --insecure --incoming "127.0.0.1:$port" $dst_args >/tmp/ho-dst.out 2>&1 &
  dst=$!
  # shellcheck disable=SC2086
  vtvmm --timeout 120 --insecure --memory 32 --monitor /tmp/ho-src.sock \
    --migrate-to "127.0.0.1:$port" --migrate-after 800 $src_fault "$g/clockwatch.elf" \
    >/tmp/ho-src.out 2>&1 &
  src=$!
  operator=''
  case $want_src in
    operator-*)
      if wait_for /tmp/ho-src.out 60 "migration IN DOUBT"; then
        # The operator looks at the destination: a guest that resumed there
        # runs there; a destination gone or refusing does not run it.
        i=0
        while [ "$i" -lt 100 ] && kill -0 "$dst" 2>/dev/null &&
          ! grep -q "vtvmm: resumed" /tmp/ho-dst.out; do
          sleep 0.1
          i=$((i + 1))
        done
        if kill -0 "$dst" 2>/dev/null && grep -q "vtvmm: resumed" /tmp/ho-dst.out; then
          operator=quit
        else
          operator=resume
        fi
        vtvmm monitor /tmp/ho-src.sock "$operator" >/tmp/ho-op.out 2>&1
        echo "  [$name operator] $operator: $(cat /tmp/ho-op.out)"
      else
        operator=none
      fi
      ;;
  esac
  wait "$src"
  src_status=$?
  wait "$dst"
  dst_status=$?
  sed "s|^|  [$name source] |" /tmp/ho-src.out | grep -vE "clockwatch: t=|migration: sent"
  sed "s|^|  [$name destination] |" /tmp/ho-dst.out | grep -vE "clockwatch: t=|migration: received"
  ran_src=no ran_dst=no
  [ "$src_status" = 0 ] && grep -q "$ok_line" /tmp/ho-src.out && ran_src=yes
  [ "$dst_status" = 0 ] && grep -q "$ok_line" /tmp/ho-dst.out && ran_dst=yes
  verdict="source status $src_status (finished the guest: $ran_src), destination status $dst_status (finished the guest: $ran_dst)"
  good=yes
  case $want_src in
    resumes)
      [ "$ran_src" = yes ] && grep -q "the guest keeps running here" /tmp/ho-src.out || good=no ;;
    operator-resume)
      [ "$operator" = resume ] && [ "$ran_src" = yes ] || good=no ;;
    operator-quit)
      [ "$operator" = quit ] && [ "$src_status" = 0 ] && [ "$ran_src" = no ] &&
        grep -q "the operator said the destination runs the guest" /tmp/ho-src.out || good=no ;;
    moved)
      [ "$src_status" = 0 ] && [ "$ran_src" = no ] && grep -q "migrated to 127.0.0.1:$port" /tmp/ho-src.out ||
        good=no ;;
    killed)
      [ "$src_status" = 137 ] || good=no ;;
  esac
  case $want_dst in
    runs) [ "$ran_dst" = yes ] || good=no ;;
    refuses) [ "$dst_status" = 125 ] && [ "$ran_dst" = no ] &&
      ! grep -q "vtvmm: resumed" /tmp/ho-dst.out || good=no ;;
    killed) [ "$dst_status" = 137 ] || good=no ;;
  esac
  # Never both, whatever was expected.
  if [ "$ran_src" = yes ] && [ "$ran_dst" = yes ]; then
    good=no
    verdict="$verdict: BOTH ran the guest"
  fi
  if [ "$good" = yes ]; then
    pass "handover/$name: source $want_src, destination $want_dst ($verdict)"
  else
    fail "handover/$name: wanted source $want_src, destination $want_dst; got $verdict"
  fi
}

# The destination fails.
handover dst-kill-before-verdict - "--handover-fault before-verdict:kill" resumes killed
handover dst-refuses-corrupt "--migrate-fault corrupt" - resumes refuses
handover dst-kill-after-restored - "--handover-fault after-restored:kill" operator-resume killed
handover dst-cut-after-restored - "--handover-fault after-restored:cut" operator-resume refuses
# A destination that cannot open its monitor fails before any vCPU runs.
handover dst-fails-to-start - "--monitor /nonexistent/dir/m.sock" resumes refuses
handover dst-kill-after-go - "--handover-fault after-go:kill" operator-resume killed
handover dst-cut-after-go - "--handover-fault after-go:cut" operator-quit runs
handover dst-cut-after-running - "--handover-fault after-running:cut" moved runs
# After "running" the destination owns the guest: its death is the guest's,
# as on any host; the source has already let go.
handover dst-kill-after-running - "--handover-fault after-running:kill" moved killed
# The source fails. Killed before the go-ahead, the guest dies with it (it
# was the source's alone); the destination never runs it.
handover src-kill-before-verdict before-verdict:kill - killed refuses
handover src-cut-before-verdict before-verdict:cut - resumes refuses
handover src-kill-after-restored after-restored:kill - killed refuses
handover src-cut-after-restored after-restored:cut - resumes refuses
handover src-kill-after-go after-go:kill - killed runs
handover src-cut-after-go after-go:cut - operator-quit runs

# vtvmm --monitor with a path too long for a Unix socket: a clear error and
# status 125, never an abort.
long=/tmp/$(printf 'm%.0s' $(seq 1 120)).sock
vtvmm --timeout 30 --memory 32 --monitor "$long" "$g/counters.elf" >/tmp/ho-long.out 2>&1
st=$?
sed "s|^|  [monitor-too-long] |" /tmp/ho-long.out
[ "$st" = 125 ] && grep -q "a Unix socket's path holds at most" /tmp/ho-long.out &&
  pass "monitor: an over-long path is refused with status 125" ||
  fail "monitor: over-long path: status $st"
# A monitor that cannot be opened once the VM is built: Machine::Run
# returns the error (its threads joined), status 125, no abort.
vtvmm --timeout 30 --memory 32 --monitor /nonexistent/dir/m.sock "$g/counters.elf" >/tmp/ho-mon.out 2>&1
st=$?
sed "s|^|  [monitor-unopenable] |" /tmp/ho-mon.out
[ "$st" = 125 ] && grep -q "monitor socket /nonexistent/dir/m.sock" /tmp/ho-mon.out &&
  pass "monitor: an unopenable socket is a clear error, status 125" ||
  fail "monitor: unopenable socket: status $st"
# Plain TCP only when asked for.
vtvmm --incoming 127.0.0.1:5099 >/tmp/ho-insecure.out 2>&1
st=$?
[ "$st" = 2 ] && grep -q "needs credentials" /tmp/ho-insecure.out &&
  pass "incoming: refuses to listen without credentials or --insecure" ||
  fail "incoming without credentials: status $st"

echo "handover: $cases hand-over cases, $failures failure(s)"
[ "$failures" -eq 0 ]
