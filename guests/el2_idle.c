/* el2_idle: a guest allowed to start at EL2 (vtvmm --el2). It reports the
 * exception level it found itself at (and, at EL2, HCR_EL2.E2H as it found
 * it: the runtime sets it when it is 0, see rt/start.S), then
 * spins for 20 s of its virtual counter and exits 0: a running vEL2 guest
 * for tests of what vtvmm does with one (a refused migration, say). */
#include "rt/rt.h"
#include "rt/timer.h"

const int rt_el2_ok = 1;

int main(void)
{
    u64 el = (read_sysreg(CurrentEL) >> 2) & 3;
    uart_puts("el2_idle: CurrentEL=");
    uart_putdec(el);
    if (el == 2) {
        uart_puts(" e2h=");
        uart_putdec(rt_el2_e2h_at_entry);
    }
    uart_putc('\n');
    u64 frq = cntfrq();
    if (frq == 0)
        frq = 1000000000UL;
    spin_ticks(20 * frq);
    check_u(VTVMM("el2"), 1, "el2_idle: ran 20 s", "el", el);
    return rt_status();
}
