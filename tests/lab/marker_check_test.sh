#!/bin/sh
# marker_check's own test (no lab): small merged traces, written here in the
# shape vtime-trace merge gives them, that it must pass or refuse.
#   marker_check_test.sh MARKER_CHECK
set -u
check=${1:?usage: marker_check_test.sh MARKER_CHECK}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# One event per line: "entry|exit PID TASK TS_US", "mmio PID TASK TS_US VAL"
# (an 8-byte write of VAL, hex, to the marker), "mark INDEX VALUE TS_US"
# (a trace_marker write), "sched TS_US" (a guest sched_switch away from the
# vtime-mark process: not a mark).
json() {
  awk 'BEGIN { print "{\"traceEvents\":["
               print "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":1,\"tid\":0,\"args\":{\"name\":\"host a\"}}"
               print ",{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":2,\"tid\":0,\"args\":{\"name\":\"host b\"}}"
               print ",{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":9,\"tid\":0,\"args\":{\"name\":\"guest\"}}" }
    $1 == "entry" || $1 == "exit" {
      printf ",{\"ph\":\"i\",\"name\":\"kvm_%s\",\"cat\":\"host\",\"ts\":%s,\"pid\":%s,\"tid\":1,\"args\":{\"task\":%s,\"info\":\"\"}}\n", $1, $4, $2, $3 }
    $1 == "mmio" {
      printf ",{\"ph\":\"i\",\"name\":\"kvm_mmio\",\"cat\":\"host\",\"ts\":%s,\"pid\":%s,\"tid\":1,\"args\":{\"task\":%s,\"info\":\"mmio write len 8 gpa 0x90e0000 val 0x%s\"}}\n", $4, $2, $3, $5 }
    $1 == "mark" {
      printf ",{\"ph\":\"i\",\"name\":\"print\",\"cat\":\"guest\",\"ts\":%s,\"pid\":9,\"tid\":1,\"args\":{\"task\":0,\"info\":\"vtime-mark %s %s\"}}\n", $4, $2, $3 }
    $1 == "sched" {
      printf ",{\"ph\":\"i\",\"name\":\"sched_switch\",\"cat\":\"guest\",\"ts\":%s,\"pid\":9,\"tid\":1,\"args\":{\"task\":0,\"info\":\"prev_comm=vtime-mark prev_pid=148 ==> next_comm=rcu_sched next_pid=17\"}}\n", $2 }
    END { print "]}" }' >"$tmp/t.json"
}
# expect 0|1 WHAT [OPTIONS...]: marker_check on t.json exits so.
expect() {
  want=$1 what=$2
  shift 2
  "$check" "$tmp/t.json" --gpa 0x90e0000 --max-gap-ns 50000000 "$@" >"$tmp/out" 2>&1
  got=$?
  if [ "$got" = "$want" ]; then
    echo "PASS $what: $(grep -E '^(ok|not ok)' "$tmp/out")"
  else
    cat "$tmp/out"
    echo "FAIL $what: exit $got, wanted $want"
    failures=$((failures + 1))
  fi
}

# Times in microseconds. A mark in a run, its store's exit 100 us later.
json <<'EOF'
entry 1 7 1000
mark 0 16 1050
exit 1 7 1100
mmio 1 7 1101 10
sched 5000
EOF
expect 0 "a mark inside the run of its store" --marks 1
grep -q "0 of 1 marks were stored on a later stay" "$tmp/out" && echo "PASS no move counted" ||
  { echo "FAIL the figure of moved marks"; failures=$((failures + 1)); }
expect 1 "one mark wanted two" --marks 2

json <<'EOF'
entry 1 7 1000
exit 1 7 1040
mark 0 16 1050
entry 1 7 1090
exit 1 7 1100
mmio 1 7 1101 10
EOF
expect 1 "a mark between two runs (out of the guest)"

json <<'EOF'
entry 1 7 1000
mark 0 16 1050
exit 1 7 1100
mmio 1 7 1101 10
mmio 1 7 1201 10
EOF
expect 1 "two writes of the mark's value"

# 80 ms from the mark to its store, 60 of them in the guest: too long; the
# same with 40 of them out of the guest (two exits in between) is fine.
json <<'EOF'
entry 1 7 1000
mark 0 16 1050
exit 1 7 61050
entry 1 7 81050
exit 1 7 81100
mmio 1 7 81101 10
EOF
expect 1 "60 ms in the guest between mark and store"
json <<'EOF'
entry 1 7 1000
mark 0 16 1050
exit 1 7 21050
entry 1 7 61050
exit 1 7 81100
mmio 1 7 81101 10
EOF
expect 0 "80 ms between mark and store, 40 ms of them in the guest"

# The guest moved between the mark (on A's thread) and its store (B's first
# run): A's rest of the run and B's run before the store are the guest's.
json <<'EOF'
entry 1 7 1000
mark 0 16 1050
exit 1 7 1100
entry 2 3 500000
exit 2 3 500020
mmio 2 3 500021 10
EOF
expect 0 "a move between the mark and its store" --stays 1
grep -q "1 of 1 marks were stored on a later stay" "$tmp/out" && echo "PASS the move counted" ||
  { echo "FAIL the figure of moved marks"; failures=$((failures + 1)); }
# ... but not a mark in no run of either thread.
json <<'EOF'
entry 1 7 1000
exit 1 7 1100
mark 0 16 1200
entry 2 3 500000
exit 2 3 500020
mmio 2 3 500021 10
EOF
expect 1 "a mark after the source's last run, before the destination's first"
# ... nor one on a thread whose runs go on after the store's thread began.
json <<'EOF'
entry 1 7 1000
mark 0 16 1050
exit 1 7 1100
entry 2 3 500000
entry 1 7 600000
exit 1 7 600100
exit 2 3 500020
mmio 2 3 500021 10
EOF
expect 1 "a mark on a thread still running when the store's began"

# Early in a stay: 60 ms in the guest, 30 ms after the stay's first entry.
json <<'EOF'
entry 2 3 1000
mark 0 16 1050
exit 2 3 61050
mmio 2 3 61051 10
EOF
expect 1 "60 ms in the guest early in a stay, no settling bound"
expect 0 "60 ms in the guest early in a stay, 500 ms bound for its first second" \
  --settle-ns 1000000000 --settle-max-gap-ns 500000000
expect 1 "... but 60 ms in the guest outside a 50 ms settling time" \
  --settle-ns 50000000 --settle-max-gap-ns 500000000

# Marks back on an earlier stay after a later one (--stays only).
json <<'EOF'
entry 1 7 1000
mark 0 16 1050
exit 1 7 1100
mmio 1 7 1101 10
entry 2 3 2000
mark 1 32 2050
exit 2 3 2100
mmio 2 3 2101 20
entry 1 7 3000
mark 2 48 3050
exit 1 7 3100
mmio 1 7 3101 30
EOF
expect 0 "three marks on two threads, without --stays"
expect 1 "back on an earlier stay" --stays 2
echo "marker_check_test: $failures failure(s)"
[ "$failures" -eq 0 ]
