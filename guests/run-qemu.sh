#!/bin/sh
# Run the guests under QEMU TCG (virt, EL1, no virtualization=on) with both
# GIC versions and summarise. Usage: guests/run-qemu.sh OUTDIR [PROG...]
# pvtime is expected to fail under TCG (no PV time service) and is
# reported but does not count as a failure.
set -u
out=${1:?usage: run-qemu.sh OUTDIR [PROG...]}
shift
progs=${*:-"counters timer timer_storm pvtime"}
qemu=${QEMU:-qemu-system-aarch64}
fail=0
for gic in 3 2; do
    for p in $progs; do
        log=$(timeout 60 "$qemu" -M virt,gic-version=$gic -cpu max -m 256M \
              -nographic -no-reboot -kernel "$out/$p.elf" 2>&1)
        code=$(printf '%s\n' "$log" | sed -n 's/^vtguest: exit \([0-9]*\).*/\1/p' | tail -1)
        [ -n "$code" ] || code=none
        notok=$(printf '%s\n' "$log" | grep -c '^not ok')
        status=PASS
        if [ "$code" != 0 ]; then
            if [ "$p" = pvtime ]; then status="FAIL (expected under TCG)"; else status=FAIL; fail=1; fi
        fi
        echo "gic-v$gic $p: exit=$code not_ok=$notok $status"
        [ "${VERBOSE:-0}" = 1 ] && printf '%s\n' "$log" | sed 's/^/    /'
    done
done
exit $fail
