#!/bin/sh
# vtime-trace on a committed timeline (a guest started on host a, a nested
# offset on vCPU 1, an offset change, a pause, then a start on host b):
# what it prints, values mapped both ways, and what it refuses.
# Then clock samples: a consistent file, and one whose second sample's
# CLOCK_MONOTONIC is 100 us off the trace clock's conversion.
# Usage: vtime_trace_test.sh VTIME_TRACE TIMELINE NOT_A_TIMELINE SAMPLES
set -u
tool=$1 timeline=$2 other=$3 samples=$4
fails=0
expect() {  # expect WHAT WANT GOT
  if [ "$2" = "$3" ]; then echo "PASS $1"; else echo "FAIL $1: want '$2', got '$3'"; fails=$((fails + 1)); fi
}
rc() { "$@" >/dev/null 2>&1; echo $?; }

out=$("$tool" timeline "$timeline")
expect "timeline header" "guest of 2 vCPUs, 2 hosts, 5 events" "$(echo "$out" | head -1)"
expect "timeline host b" "host 1: b, 62500000 Hz" "$(echo "$out" | grep '^host 1:')"
expect "timeline pause" "event 3: pause host=0 count=9000" "$(echo "$out" | grep '^event 3:')"
# Run 1 on a: virtual offset 100 from count 1000; run 2 on b: the guest
# resumes at 8900 at b's count 100.
expect "map virtual on a" "host=0 count=1100" "$("$tool" map "$timeline" --vcpu 0 --virtual 1000)"
expect "map virtual on b" "host=1 count=200" "$("$tool" map "$timeline" --vcpu 0 --virtual 9000)"
expect "map back from b" "virtual=9000" "$("$tool" map "$timeline" --vcpu 0 --virtual --at 1:200)"
expect "map physical in hex" "host=0 count=1100" "$("$tool" map "$timeline" --vcpu 0 --physical 0x3e8)"
# vCPU 1's virtual counter also has its nested offset (300) from count 2000.
expect "map nested vCPU" "virtual=1700" "$("$tool" map "$timeline" --vcpu 1 --virtual --at 0:2100)"
expect "refuses an uncovered count" 1 "$(rc "$tool" map "$timeline" --vcpu 0 --virtual 100)"
msg=$("$tool" map "$timeline" --vcpu 0 --virtual 100 2>&1)
case $msg in *"in no run of the timeline"*) echo "PASS says why";; *) echo "FAIL says why: $msg"; fails=$((fails + 1));; esac
expect "refuses a paused host point" 1 "$(rc "$tool" map "$timeline" --vcpu 0 --virtual --at 0:9500)"
expect "refuses a file that is not a timeline" 1 "$(rc "$tool" timeline "$other")"
expect "refuses a missing file" 1 "$(rc "$tool" timeline /nonexistent/timeline)"
expect "usage: no value" 2 "$(rc "$tool" map "$timeline" --vcpu 0 --virtual)"
expect "usage: both forms" 2 "$(rc "$tool" map "$timeline" --vcpu 0 --virtual 5 --at 0:1)"
expect "usage: unknown command" 2 "$(rc "$tool" frobnicate)"
out=$("$tool" samples "$samples")
expect "samples agree" "ok: CLOCK_MONOTONIC - trace clock = 4998999995 ns, pinned to 14 ns by the samples" \
  "$(echo "$out" | tail -n 1)"
bad=${TMPDIR:-/tmp}/vtime-trace-test.$$
sed 's/monotonic_ns=6000001604/monotonic_ns=6000101604/' "$samples" >"$bad"
expect "samples that disagree" 1 "$(rc "$tool" samples "$bad")"
case $("$tool" samples "$bad") in *"does not fit"*) echo "PASS says the conversion does not fit";;
  *) echo "FAIL says the conversion does not fit"; fails=$((fails + 1));; esac
sed 's/time_mult=16777216/time_mult=0/' "$samples" >"$bad"
expect "samples with an impossible conversion" 1 "$(rc "$tool" samples "$bad")"
rm -f "$bad"
expect "help" 0 "$(rc "$tool" --help)"
[ $fails -eq 0 ] && echo "vtime-trace: all passed" || { echo "vtime-trace: $fails failed"; exit 1; }
