/* reset: the guest counters continue across a PSCI SYSTEM_RESET when the
 * VMM keeps the VM counter offset (vtvmm re-creates the VM on reset and
 * re-applies --guest-counter / --counter-offset). Run with
 * `vtvmm --guest-counter 0 reset.elf`.
 *
 * Boot 1 (CNTVCT < 1 s of ticks): wait until CNTVCT >= 1.5 s, then
 * SYSTEM_RESET. Boot 2 (CNTVCT >= 1 s at entry): the counter went on from
 * where it was, so the program passes. A VMM that restarted the counter
 * from 0 would send the guest round the first-boot path again; the host
 * side sees that as a timeout. */
#include "rt/rt.h"
#include "rt/timer.h"

int main(void)
{
    u64 now = cntvct();                   /* first thing: the entry count */
    u64 frq = cntfrq();
    if (frq == 0)
        frq = 1000000000UL;

    if (now >= frq) {
        uart_puts("reset: second boot cntvct=");
        uart_putdec(now);
        uart_putc('\n');
        /* Boot 1 reset only once the counter had reached 1.5 s. */
        /* Keeping the counter across a reset is vtvmm's choice. */
        check_u(VTVMM("reset-keeps-time"), now >= frq + frq / 2,
                "reset: counter continued across the reset", "cntvct", now);
        return rt_status();
    }

    uart_puts("reset: first boot cntvct=");
    uart_putdec(now);
    uart_putc('\n');
    u64 target = frq + frq / 2, start = now, timeout = 10 * frq;
    u64 spins = 0;
    for (;;) {
        u64 c = cntvct();
        if (c >= target)
            break;
        /* 10 s of counter, or 2^32 reads if the counter does not move. */
        if (c - start >= timeout || ++spins >= (1UL << 32)) {
            check_u(ARCH, 0, "reset: cntvct reached 1.5 s within 10 s", "cntvct", c);
            return rt_status();
        }
        cpu_relax();
    }
    uart_puts("reset: requesting SYSTEM_RESET\n");
    s64 ret = (s64)rt_psci(PSCI_SYSTEM_RESET, 0, 0, 0);
    check_s(ARCH, 0, "reset: SYSTEM_RESET returned", "ret", ret);
    return rt_status();
}
