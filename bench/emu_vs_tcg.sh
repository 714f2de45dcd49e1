#!/bin/sh
# Each guest program's wall time on vtvmm's emulated backend (--backend emu,
# Unicorn with every counter and timer access trapped into vtime's model)
# next to QEMU's own TCG emulation of the same program (virt, GICv2, -cpu
# max), alternated, RUNS runs each (default 3), on this host. Prints a
# Markdown table of the medians and their ratio; fails if a run fails.
# Many programs wait for guest time (a timer, 1 s of watching), so their
# wall time is set by the guest, not by either emulator: the table says
# which are compute-bound. Usage: emu_vs_tcg.sh VTVMM GUEST_DIR
vtvmm=${1:?usage: emu_vs_tcg.sh VTVMM GUEST_DIR}
g=${2:?guest dir}
runs=${RUNS:-3}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "| program | vCPUs | emu (ms) | QEMU TCG (ms) | emu / TCG |"
echo "|---|---|---|---|---|"
status=0
# (pvtime and trace_marker use vtvmm's own services, which QEMU does not offer.)
for entry in counters:1 timer:1 timer_storm:1 clockwatch:1 timer_migrate:1 smp:2 ipi_storm:2; do
  prog=${entry%%:*} cpus=${entry##*:}
  e='' q=''
  for _ in $(seq "$runs"); do
    t0=$(now_ms)
    "$vtvmm" --backend emu --cpus "$cpus" --memory 64 --timeout 120 "$g/$prog.elf" >/dev/null 2>&1 </dev/null ||
      { echo "emu_vs_tcg: $prog failed on emu" >&2; status=1; }
    e="$e $(($(now_ms) - t0))"
    t0=$(now_ms)
    out=$(timeout 120 qemu-system-aarch64 -M virt,gic-version=2 -cpu max -smp "$cpus" -m 64M \
      -nographic -no-reboot -kernel "$g/$prog.elf" 2>&1 </dev/null)
    q="$q $(($(now_ms) - t0))"
    printf '%s\n' "$out" | grep -q '^vtguest: exit 0' ||
      { echo "emu_vs_tcg: $prog failed on QEMU TCG" >&2; status=1; }
  done
  em=$(echo "$e" | median) qm=$(echo "$q" | median)
  echo "| $prog | $cpus | $em | $qm | $(awk -v a="$em" -v b="$qm" 'BEGIN { printf "%.2f", a / b }') |"
done
exit $status
