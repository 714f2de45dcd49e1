#!/bin/sh
# Checks pause_steps.pl itself on made-up guest and vtvmm output: a good run
# passes, and each kind of bad run fails (runs on any host, in a second).
set -u
here=$(cd "$(dirname "$0")" && pwd)
failures=0
# 62.5 MHz: 1 us = 62.5 ticks. Loop 2 us, round trip 90 us: freeze target 92 us.
head='clockwatch: loop_period_ns=2000 exit_round_trip_us median=90 min=88 max=900 log_us=60
clockwatch: cntfrq=62500000'
resumed() { # POLICY P R AWAY_NS
  echo "vtvmm: resumed (policy $1): CNTVCT paused at $2, resumes at $3; CNTPCT paused at $2, resumes at $3 (+$(($3 - $2)) ticks); away $4 ns by the two hosts' wall clocks"
}
cws() { # V0 DV (CNTPCT the same), decimal
  printf 'cws %x %x %x %x\n' "$1" "$2" "$1" "$2"
}
expect() { # WANT(0|1) NAME [OPTIONS] <input
  want=$1 name=$2
  shift 2
  out=$(perl "$here/pause_steps.pl" "$@")
  got=$?
  [ "$got" -ne 0 ] && got=1
  if [ "$got" = "$want" ]; then
    echo "ok - $name"
  else
    echo "not ok - $name (exit $got, wanted $want)"
    echo "$out" | sed 's/^/    /'
    failures=$((failures + 1))
  fi
}
# freeze: a 60 us step at the pause (3750 ticks), 500 ms away.
good_freeze=$(printf '%s\n%s\n%s\n' "$head" "$(cws 1000000 3750)" "$(resumed freeze 1001000 1001000 500000000)")
expect 0 "freeze: a small step at the pause passes" <<EOF
$good_freeze
EOF
expect 0 "freeze: and meets the target under --strict" --strict <<EOF
$good_freeze
EOF
# freeze: a 1 ms step (62500 ticks): over the target, fails only with --strict.
over=$(printf '%s\n%s\n%s\n' "$head" "$(cws 1000000 62500)" "$(resumed freeze 1001000 1001000 500000000)")
expect 0 "freeze: a step over the target is reported" <<EOF
$over
EOF
expect 1 "freeze: and fails under --strict" --strict <<EOF
$over
EOF
# freeze: the guest saw the 500 ms away (31250000 ticks).
seen=$(printf '%s\n%s\n%s\n' "$head" "$(cws 1000000 31260000)" "$(resumed freeze 1001000 1001000 500000000)")
expect 1 "freeze: a step as long as the time away fails" <<EOF
$seen
EOF
# wallclock: 500 ms away, the guest saw 500.05 ms (31253125 ticks).
wall=$(printf '%s\n%s\n%s\n' "$head" "$(cws 1000000 31253125)" "$(resumed wallclock 1001000 32251000 500000000)")
expect 0 "wallclock: a step equal to the downtime passes" --strict <<EOF
$wall
EOF
# wallclock: the guest saw only 400 ms of the 500 (time lost).
lost=$(printf '%s\n%s\n%s\n' "$head" "$(cws 1000000 25000000)" "$(resumed wallclock 1001000 26000000 500000000)")
expect 1 "wallclock: a step shorter than the downtime fails" <<EOF
$lost
EOF
# wallclock: no logged step brackets the pause.
none=$(printf '%s\n%s\n%s\n' "$head" "$(cws 5000 100)" "$(resumed wallclock 1001000 32251000 500000000)")
expect 1 "wallclock: a pause the guest did not log fails" <<EOF
$none
EOF
# no resume at all, and no guest figures.
expect 1 "no pause to judge fails" <<EOF
$head
EOF
expect 1 "missing guest figures fail" <<EOF
$(resumed freeze 1 1 1)
EOF
echo "pause_steps_test: $failures failure(s)"
[ "$failures" -eq 0 ]
