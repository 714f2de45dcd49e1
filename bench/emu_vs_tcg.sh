#!/bin/sh
# Each guest program's wall time on vtvmm's emulated backend (--backend emu,
# Unicorn with every counter and timer access trapped into vtime's model)
# next to QEMU's own TCG emulation of the same program (virt, GICv2, -cpu
# max), alternated, RUNS runs each (default 3), on this host. Prints a
# Markdown table of the medians and their ratio; fails if a run fails.
# Many programs wait for guest time (a timer, 1 s of watching), so their
# wall time is set by the guest, not by either emulator: the table says
# which are compute-bound. The programs that use vtvmm's own services
# (pvtime, pvtime_scribble, trace_marker) run to their end on QEMU too,
# with those checks failing there; the el2_* ones run at EL2 on both
# (vtvmm --el2; QEMU's virtualization=on, with a GICv3).
# Usage: emu_vs_tcg.sh VTVMM GUEST_DIR
vtvmm=${1:?usage: emu_vs_tcg.sh VTVMM GUEST_DIR}
g=${2:?guest dir}
runs=${RUNS:-3}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
input() { seq 1 300; printf '\004'; }  # console_input's, as the kit gives it
echo "| program | vCPUs | emu (ms) | QEMU TCG (ms) | emu / TCG |"
echo "|---|---|---|---|---|"
status=0
for entry in counters:1 timer:1 timer_storm:1 clockwatch:1 timer_migrate:1 smp:2 ipi_storm:2 \
  reset:1 console_input:1 trace_marker:1 pvtime:1 pvtime_scribble:1 el2_idle:1 el2_nested:1 \
  el2_watch:1; do
  prog=${entry%%:*} cpus=${entry##*:}
  case $prog in
    reset) extra='--guest-counter 0' ;;
    pvtime | pvtime_scribble) extra='--pvtime on' ;;
    el2_*) extra='--el2' ;;
    *) extra='' ;;
  esac
  reboot=-no-reboot
  [ "$prog" = reset ] && reboot=''
  machine=virt,gic-version=2
  case $prog in el2_*) machine=virt,gic-version=3,virtualization=on ;; esac
  e='' q=''
  for _ in $(seq "$runs"); do
    t0=$(now_ms)
    if [ "$prog" = console_input ]; then
      input | "$vtvmm" --backend emu --cpus "$cpus" --memory 64 --timeout 120 "$g/$prog.elf" >/dev/null 2>&1
    else
      "$vtvmm" --backend emu --cpus "$cpus" --memory 64 --timeout 120 $extra "$g/$prog.elf" \
        >/dev/null 2>&1 </dev/null
    fi || { echo "emu_vs_tcg: $prog failed on emu" >&2; status=1; }
    e="$e $(($(now_ms) - t0))"
    t0=$(now_ms)
    if [ "$prog" = console_input ]; then
      out=$(input | timeout 120 qemu-system-aarch64 -M "$machine" -cpu max -smp "$cpus" \
        -m 64M -nographic $reboot -kernel "$g/$prog.elf" 2>&1)
    else
      out=$(timeout 120 qemu-system-aarch64 -M "$machine" -cpu max -smp "$cpus" -m 64M \
        -nographic $reboot -kernel "$g/$prog.elf" 2>&1 </dev/null)
    fi
    q="$q $(($(now_ms) - t0))"
    # The program ran to its end (its own exit line); vtvmm's checks may fail.
    printf '%s\n' "$out" | grep -q '^vtguest: exit' ||
      { echo "emu_vs_tcg: $prog did not finish on QEMU TCG" >&2; status=1; }
  done
  em=$(echo "$e" | median) qm=$(echo "$q" | median)
  echo "| $prog | $cpus | $em | $qm | $(awk -v a="$em" -v b="$qm" 'BEGIN { printf "%.2f", a / b }') |"
done
exit $status
