#!/usr/bin/env bash
# The trace merge's throughput (#11), side by side with trace-cmd in one run:
# a generated host trace and guest trace (half the records each, two CPUs
# each) made into .dat files by Debian's trace-cmd restore; then, on the
# same files,
#   - vtime-trace merge, end to end (.dat in, Chrome JSON file out), with
#     its peak memory;
#   - trace-cmd report of both files (its text to /dev/null);
#   - the map-and-merge stage alone (trace_bench BM_MapAndMerge).
# Usage: bench/merge_e2e.sh BUILD_DIR [RECORDS...]   (default 1000000 10000000)
set -euo pipefail
build=$1
shift
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
command -v trace-cmd >/dev/null || { echo "merge_e2e: trace-cmd is not installed (scripts/install-deps)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.2f M/s", n / s / 1e6 }'; }
printf '%-10s %-26s %-26s %-36s %s\n' records "vtime-trace merge (e2e)" "trace-cmd report (both)" "peak memory (RSS with mapped input)" "JSON size"
for n in "${sizes[@]}"; do
  d=$work/$n
  "$build/tests/unit/gen_traces" "$d" "$n" >/dev/null
  for m in host guest; do
    trace-cmd restore -c -t "$d/tracing" -k "$d/kallsyms" -o "$d/$m-head.dat" >/dev/null 2>&1
    trace-cmd restore -i "$d/$m-head.dat" -o "$d/$m.dat" "$d/$m-cpu0" "$d/$m-cpu1" >/dev/null 2>&1
    rm -f "$d/$m-cpu0" "$d/$m-cpu1"
  done
  t0=$(now)
  out=$("$build/tools/vtime-trace" merge -o "$d/merged.json" --quiet \
    --host "samples=$d/host-samples.txt,trace=$d/host.dat" \
    --guest "samples=$d/guest-samples.txt,timeline=$d/timeline.vtl,trace=$d/guest.dat")
  t1=$(now)
  trace-cmd report "$d/host.dat" >/dev/null 2>&1
  trace-cmd report "$d/guest.dat" >/dev/null 2>&1
  t2=$(now)
  peak=$(echo "$out" | sed -nE 's/.*peak memory ([0-9.]+) MiB \(anonymous; resident with the inputs. mapped pages ([0-9.]+) MiB.*/\1 MiB (RSS \2)/p')
  placed=$(echo "$out" | sed -nE 's/^merged ([0-9]+) records.*/\1/p')
  [ "$placed" = "$n" ] || { echo "merge_e2e: merged $placed of $n records" >&2; exit 1; }
  e2e=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  rep=$(awk -v a="$t1" -v b="$t2" 'BEGIN { print b - a }')
  printf '%-10s %-26s %-26s %-36s %s\n' "$n" "$(printf '%.2f s, %s' "$e2e" "$(rate "$n" "$e2e")")" \
    "$(printf '%.2f s, %s' "$rep" "$(rate "$n" "$rep")")" "$peak" \
    "$(du -m "$d/merged.json" | cut -f1) MB"
  rm -rf "$d"
done
"$build/bench/trace_bench" --benchmark_filter=MapAndMerge --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true 2>/dev/null | grep -E '_(median|mean) ' |
  sed -E 's/.*items_per_second=([0-9.]+[kMG]?\/s).*/map and merge alone (one thread, no I\/O): \1/' | head -1
