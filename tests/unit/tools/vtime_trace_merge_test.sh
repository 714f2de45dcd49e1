#!/bin/sh
# vtime-trace merge end to end: a generated host trace and guest trace
# (gen_traces' pages made into .dat files by Debian's trace-cmd restore),
# merged from .dat and from `trace-cmd report` text; the output checked
# against the trace event format, with each record at its exact time (the
# generator puts the four CPUs' records 4.096 us apart on the host's axis);
# then what it refuses, and that a refused merge leaves no output.
# Usage: vtime_trace_merge_test.sh VTIME_TRACE GEN_TRACES CHROME_JSON_CHECK
set -u
tool=$1 gen=$2 check=$3
fails=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }
expect() {  # expect WHAT WANT GOT
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: want '$2', got '$3'"; fi
}
contains() {  # contains WHAT NEEDLE HAYSTACK
  case $3 in *"$2"*) pass "$1";; *) fail "$1: no '$2' in: $3";; esac
}
rc() { "$@" >/dev/null 2>&1; echo $?; }
command -v trace-cmd >/dev/null || { echo "FAIL trace-cmd is not installed (scripts/install-deps)"; exit 1; }

d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$gen" "$d" 4000 >/dev/null || { echo "FAIL gen_traces"; exit 1; }
for m in host guest; do
  trace-cmd restore -c -t "$d/tracing" -k "$d/kallsyms" -o "$d/$m-head.dat" >/dev/null 2>&1 &&
    trace-cmd restore -i "$d/$m-head.dat" -o "$d/$m.dat" "$d/$m-cpu0" "$d/$m-cpu1" >/dev/null 2>&1 ||
    { echo "FAIL trace-cmd restore ($m)"; exit 1; }
done
hs="samples=$d/host-samples.txt"
gs="samples=$d/guest-samples.txt,timeline=$d/timeline.vtl"

out=$("$tool" merge -o "$d/m.json" --quiet --host "$hs,trace=$d/host.dat" --guest "$gs,trace=$d/guest.dat")
expect "merge .dat exits 0" 0 $?
contains "merge says what it placed" "guest bench-guest: 2000 records, 2000 placed" "$out"
res=$("$check" "$d/m.json" --step-ns 4096)
expect "JSON in the trace event format, each record at its exact time" 0 $?
contains "all instants" "ok: 4012 events, 4000 instants, 2 processes, 4 threads" "$res"
contains "guest process named" "process 2 guest bench-guest: 2000 instants" "$res"
# The same from text: trace-cmd report -t prints nanoseconds.
trace-cmd report -t "$d/guest.dat" >"$d/guest.txt" 2>/dev/null
"$tool" merge -o "$d/t.json" --quiet --host "$hs,trace=$d/host.dat" --guest "$gs,trace=$d/guest.txt" >/dev/null
expect "merge text exits 0" 0 $?
expect "text merge at the exact times too" 0 "$(rc "$check" "$d/t.json" --step-ns 4096)"
# The checker can fail: a step it does not have, a truncated file.
expect "checker refuses a wrong step" 1 "$(rc "$check" "$d/m.json" --step-ns 4095)"
head -c 5000 "$d/m.json" >"$d/cut.json"
expect "checker refuses cut JSON" 1 "$(rc "$check" "$d/cut.json")"

# Refusals: exit 1 with the reason, and no output file.
printf 'abc\000def' >"$d/nul"
msg=$("$tool" merge -o "$d/x.json" --quiet --host "$hs,trace=$d/nul" 2>&1)
contains "refuses a binary that is not a trace" "neither a trace-cmd .dat file nor ftrace text" "$msg"
head -c 3000 "$d/host.dat" >"$d/short.dat"
expect "refuses a truncated .dat" 1 "$(rc "$tool" merge -o "$d/x.json" --quiet --host "$hs,trace=$d/short.dat")"
printf '# tracer: nop\n  a-1 [000] 1.000001: x: y\n  what is this\n' >"$d/bad.txt"
msg=$("$tool" merge -o "$d/x.json" --quiet --host "$hs,trace=$d/bad.txt" 2>&1)
contains "a bad text line is named by its number" "bad.txt:3: not an ftrace text line" "$msg"
# A trace that is not there.

msg=$("$tool" merge -o "$d/x.json" --quiet --host "$hs,trace=$d/host.dat" \
  --guest "samples=$d/guest-samples.txt,timeline=$d/timeline.vtl,trace=$d/nul2" 2>&1)
contains "refuses a missing trace" "nul2" "$msg"
# A guest whose timeline names a host with no samples given.
printf 'vtime-clocksample 1\nmachine other\nfrequency hz=62500000\nperf time_zero=1000 time_mult=33554432 time_shift=21 time_cycles=0 time_mask=72057594037927935\nsample before=100 monotonic_ns=5001616 after=102\n' >"$d/other.txt"
msg=$("$tool" merge -o "$d/x.json" --quiet --host "samples=$d/other.txt,trace=$d/host.dat" \
  --guest "$gs,trace=$d/guest.dat" 2>&1)
expect "refuses records on a host without samples" 1 $?
contains "says which host" "the guest ran on host 'bench-host' then, and no clock samples of that host were given" "$msg"
expect "no output after a refusal" no "$([ -e "$d/x.json" ] && echo yes || echo no)"
expect "no temporary left behind" no "$([ -e "$d/x.json.tmp" ] && echo yes || echo no)"
out=$("$tool" merge -o "$d/x.json" --quiet --drop-uncovered --host "samples=$d/other.txt,trace=$d/host.dat" \
  --guest "$gs,trace=$d/guest.dat" 2>&1)
contains "--drop-uncovered leaves them out" "2000 not covered" "$out"
expect "and writes the rest" 0 "$(rc "$check" "$d/x.json")"
# A second host placed by the two hosts' wall clocks: its wall clock is
# 5 ms further ahead of its trace clock than the first host's.
printf 'vtime-clocksample 2\nmachine second\nfrequency hz=62500000\nperf time_zero=1000 time_mult=33554432 time_shift=21 time_cycles=0 time_mask=72057594037927935\nsample before=100 monotonic_ns=7616 realtime_ns=1700000000005002616 after=102\n' >"$d/second.txt"
msg=$("$tool" merge -o "$d/w.json" --quiet --host "$hs,trace=$d/host.dat" --host "samples=$d/second.txt,trace=$d/host.dat" 2>&1)
contains "a second host placed by the wall clocks" "host 'second' placed by the hosts' wall clocks: shift 5000000 ns, within 33 ns" "$msg"
res=$("$check" "$d/w.json")
contains "its records 5 ms later on the axis" "process 2 host second: 2000 instants, ts 16005017.000 .. 16021388.712 us" "$res"
expect "a second host without wall-clock samples needs a shift" 1 "$(rc "$tool" merge -o "$d/y.json" --host "$hs,trace=$d/host.dat" --host "samples=$d/other.txt")"
expect "usage: no -o" 2 "$(rc "$tool" merge --host "$hs,trace=$d/host.dat")"
expect "usage: no host" 2 "$(rc "$tool" merge -o "$d/y.json" --guest "$gs,trace=$d/guest.dat")"
expect "usage: unknown key" 2 "$(rc "$tool" merge -o "$d/y.json" --host "$hs,colour=red")"
expect "usage: guest without timeline" 2 "$(rc "$tool" merge -o "$d/y.json" --host "$hs" --guest "samples=x,trace=y")"
expect "help" 0 "$(rc "$tool" merge --help)"

if [ $fails -eq 0 ]; then echo "vtime-trace merge: all passed"; else echo "vtime-trace merge: $fails failed"; exit 1; fi
