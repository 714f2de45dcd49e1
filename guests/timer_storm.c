/* timer_storm: 1000 back-to-back virtual timer interrupts, each re-armed
 * from the handler with TVAL = 200 us; none may be lost or doubled. */
#include "rt/rt.h"
#include "rt/gic.h"
#include "rt/timer.h"

#define N_IRQS 1000u

static u64 period;
static volatile u32 count;
static volatile u32 early;        /* handler ran with the condition false */
static volatile u64 last_cnt;

static void vtimer_irq(u32 intid)
{
    (void)intid;
    u64 now = cntvct();
    u32 ctl = timer_ctl(TIMER_VIRT);
    if (!(ctl & CTL_ISTATUS) || now < timer_cval(TIMER_VIRT))
        early++;
    count++;
    last_cnt = now;
    if (count < N_IRQS)
        timer_set_tval(TIMER_VIRT, (s32)period);     /* re-arm: line drops */
    else
        timer_set_ctl(TIMER_VIRT, CTL_ENABLE | CTL_IMASK);
}

int main(void)
{
    u64 frq = cntfrq();
    if (frq == 0)
        frq = 1000000000UL;
    period = ticks_from_us(frq, 200);
    if (period == 0)
        period = 1;

    timer_set_ctl(TIMER_VIRT, 0);
    timer_set_ctl(TIMER_PHYS, 0);
    u32 vt_intid = rt_timer_ppi_virt();
    int v = gic_init();
    uart_puts("timer_storm: gic=v");
    uart_putdec((u64)v);
    uart_puts(" period_ticks=");
    uart_putdec(period);
    uart_puts(" vtimer_intid=");
    uart_putdec(vt_intid);
    uart_putc('\n');
    irq_set_handler(vt_intid, vtimer_irq);
    gic_enable_ppi(vt_intid);
    irq_enable();

    u64 t0 = cntvct();
    timer_set_tval(TIMER_VIRT, (s32)period);
    timer_set_ctl(TIMER_VIRT, CTL_ENABLE);
    int done = wait_flag(&count, N_IRQS, 20 * frq);      /* 20 s: only on failure */
    u64 elapsed = last_cnt - t0;
    spin_ticks(ticks_from_us(frq, 5000));               /* nothing more may come */
    u32 final = count;
    irq_disable();
    timer_set_ctl(TIMER_VIRT, 0);

    uart_puts("timer_storm: irqs=");
    uart_putdec(final);
    uart_puts(" elapsed_ticks=");
    uart_putdec(done ? elapsed : cntvct() - t0);
    uart_putc('\n');

    check_u(ARCH, done && final == N_IRQS, "timer_storm: all 1000 interrupts taken, no extra", "irqs", final);
    check_u(ARCH, early == 0, "timer_storm: every IRQ saw ISTATUS=1 and count >= CVAL", "early", early);
    check_u(ARCH, done && elapsed >= N_IRQS * period, "timer_storm: elapsed >= 1000 periods", "elapsed_us",
            us_from_ticks(frq, done ? elapsed : 0));
    check_u(ARCH, irq_unexpected == 0, "timer_storm: no unexpected interrupts", "unexpected", irq_unexpected);
    return rt_status();
}
