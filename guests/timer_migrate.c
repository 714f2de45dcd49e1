/* timer_migrate: a timer armed before a snapshot/restore (or a migration)
 * must fire after it at the right guest time: not early, not lost, once,
 * and the restore must not set off an interrupt storm.
 *
 * After the loop-bound calibration and the header line (about 0.35 s in
 * the lab), the EL1 virtual timer is armed for CNTVCT + 1.5 s and the EL1
 * physical timer for CNTPCT + 2.0 s (CVAL, enabled, unmasked), with IRQs
 * on. Then, from those same reads, a tight loop reads CNTVCT and CNTPCT (isb before each) and
 * tracks the largest forward step between two consecutive reads of each
 * counter: a pause that the VMM lets through (policy wallclock) shows up
 * as one big step; under freeze the step stays small. The VMM snapshots
 * the guest somewhere in this loop and resumes it later, in a new VM.
 *
 * The handler records, for its timer, the timer's own counter at entry
 * (CNTVCT for the virtual timer, CNTPCT for the physical one), ISTATUS and
 * the number of IRQs, then disables the timer (CTL = 0) before the EOI.
 * Every IRQ is counted per INTID: the handler is registered for INTIDs
 * 0..63 (the runtime's table), so anything that is not one of the two
 * timers is counted and disabled in the GIC; INTIDs above that land in the
 * runtime's irq_unexpected.
 *
 * The run lasts 3.5 s of guest time, counted as the sum of CNTVCT's forward
 * steps (a backwards jump neither ends nor stretches it), and in addition
 * at least 250 ms of guest time after the largest CNTVCT step. A wallclock
 * restore after a long pause can make one step cover the whole 3.5 s; the
 * extra 250 ms then still watches the IRQs that the restore delivers (and
 * any storm that follows). A loop-count bound, calibrated at start as in
 * clockwatch, ends the run if the counter stops moving. A timer is on time
 * if it fires less than 100 ms late, or, after a pause the guest saw (a
 * wallclock restore), no later than that step plus 100 ms. */
#include "rt/rt.h"
#include "rt/gic.h"
#include "rt/timer.h"

#define RUN_US          3500000UL   /* guest time the loop runs */
#define TAIL_US         250000UL    /* and at least this long after the largest step */
#define VTIMER_US       1500000UL   /* virtual timer deadline, after arming */
#define PTIMER_US       2000000UL   /* physical timer deadline, after arming */
#define SLACK_US        100000UL    /* allowed lateness on top of a pause */
#ifndef BOUND_SECONDS                 /* EXTRA_CFLAGS=-DBOUND_SECONDS=1UL tests the bound */
#define BOUND_SECONDS   60UL
#endif
#define CAL_ITERS       65536UL
#define CAL_RUNS        3
#define BOUND_FALLBACK  (1UL << 32)   /* counter did not move during calibration */
#define BOUND_MAX       (1UL << 44)
#define NIRQ            64            /* size of the runtime's handler table */

static u32 vt_intid, pt_intid;      /* from the DTB, or 27 / 30 */

/* Written by the handler. */
static volatile u32 irq_count[NIRQ];     /* every IRQ taken, per INTID */
static volatile u32 fired[2];            /* IRQs per timer */
static volatile u64 fired_at[2];         /* timer's own counter at the first IRQ */
static volatile u32 fired_istatus[2];    /* CTL.ISTATUS at the first IRQ */

static void irq_handler(u32 intid)
{
    if (intid < NIRQ)
        irq_count[intid]++;
    int t;
    if (intid == vt_intid) {
        t = TIMER_VIRT;
    } else if (intid == pt_intid) {
        t = TIMER_PHYS;
    } else {
        gic_disable_irq(intid);          /* an unknown source must not storm */
        return;
    }
    u64 now = timer_count(t);
    u32 ctl = timer_ctl(t);
    if (fired[t] == 0) {
        fired_at[t] = now;
        fired_istatus[t] = (ctl & CTL_ISTATUS) ? 1 : 0;
    }
    fired[t]++;
    timer_set_ctl(t, 0);                 /* drop the line before EOI */
}

struct result {
    u64 vmax;       /* largest forward CNTVCT step, ticks */
    u64 pmax;       /* largest forward CNTPCT step, ticks */
    u64 elapsed;    /* sum of CNTVCT forward steps, ticks */
    u64 iters;
};

/* The measuring loop; all its state is in registers. Starts from the
 * counter values (v0, p0) read when the timers were armed, so that a pause
 * between arming and the first read is a step like any other. Ends when
 * `elapsed` >= dur and at least `tail` ticks of it came after the largest
 * step, or after `bound` iterations. */
static __attribute__((noinline)) void watch(struct result *r, u64 v0, u64 p0,
                                            u64 dur, u64 tail, u64 bound)
{
    u64 vprev = v0, pprev = p0;
    u64 vmax = 0, pmax = 0, elapsed = 0, iters = 0;
    u64 quiet_from = 0;     /* elapsed at the end of the largest CNTVCT step */

    while (iters < bound) {
        u64 v = cntvct();
        u64 p = cntpct();
        iters++;
        if (v >= vprev) {
            u64 s = v - vprev;
            elapsed += s;
            if (s > vmax) {
                vmax = s;
                quiet_from = elapsed;
            }
        }
        vprev = v;
        if (p >= pprev) {
            u64 s = p - pprev;
            if (s > pmax)
                pmax = s;
        }
        pprev = p;
        if (elapsed >= dur && elapsed - quiet_from >= tail)
            break;
    }
    r->vmax = vmax;
    r->pmax = pmax;
    r->elapsed = elapsed;
    r->iters = iters;
}

/* Loop bound: the iterations the same loop does in BOUND_SECONDS, from the
 * fastest of a few timed runs (a pause only makes a run slower). */
static u64 calibrate(u64 frq)
{
    struct result r;
    u64 best = ~0UL;
    for (int i = 0; i < CAL_RUNS; i++) {
        u64 t0 = cntvct();
        watch(&r, t0, cntpct(), ~0UL, 0, CAL_ITERS);
        u64 t1 = cntvct();
        if (t1 >= t0 && t1 - t0 < best)
            best = t1 - t0;
    }
    if (best == 0 || best == ~0UL)
        return BOUND_FALLBACK;
    u64 per = BOUND_SECONDS * frq / best;
    u64 bound = per > BOUND_MAX / CAL_ITERS ? BOUND_MAX : per * CAL_ITERS;
    return bound < CAL_ITERS ? CAL_ITERS : bound;
}

static const char *const tname[2] = { "vtimer", "ptimer" };

static void print_timer(int t, u64 cval)
{
    uart_puts("timer_migrate: ");
    uart_puts(tname[t]);
    uart_puts(" irqs=");
    uart_putdec(fired[t]);
    uart_puts(" cval=");
    uart_putdec(cval);
    uart_puts(" fired_at=");
    uart_putdec(fired[t] ? fired_at[t] : 0);
    uart_puts(" late_ticks=");
    uart_putsdec(fired[t] ? (s64)(fired_at[t] - cval) : 0);   /* negative: early */
    uart_putc('\n');
}

static void check_timer(int t, u64 cval, u64 max_step, u64 slack)
{
    static const char *const once[2] = { "timer_migrate: vtimer fired exactly once",
                                         "timer_migrate: ptimer fired exactly once" };
    static const char *const early[2] = { "timer_migrate: vtimer not early",
                                          "timer_migrate: ptimer not early" };
    static const char *const ontime[2] = { "timer_migrate: vtimer on time",
                                           "timer_migrate: ptimer on time" };
    u32 n = fired[t];
    u64 at = fired_at[t];

    check_u(ARCH, n == 1, once[t], "irqs", n);

    /* Not early: the counter at handler entry is at or past CVAL, and the
     * timer itself says its condition is met. */
    int not_early = n >= 1 && at >= cval && fired_istatus[t];
    check_begin(ARCH, not_early, early[t]);
    if (n == 0) {
        uart_puts(": irqs=0");
    } else {
        uart_puts(": istatus=");
        uart_putdec(fired_istatus[t]);
        if (at < cval) {
            uart_puts(" early_ticks=");
            uart_putdec(cval - at);
        }
    }
    check_end();

    /* On time. A timer whose deadline passed while the VM was paused fires
     * at resume: under wallclock the counter jumps forward by the pause,
     * so that timer is late by up to the jump, which the loop sees as its
     * largest step. So the rule is: late < 100 ms, or late <= max_step +
     * 100 ms (the second contains the first; both are spelt out). Under
     * freeze (or with no pause) max_step is small and the rule is simply
     * "within about 100 ms of the deadline". */
    u64 late = at - cval;
    int on_time = n >= 1 && at >= cval && (late < slack || late <= max_step + slack);
    check_begin(ARCH, on_time, ontime[t]);
    if (n == 0) {
        uart_puts(": irqs=0");
    } else if (at < cval) {
        uart_puts(": early_ticks=");
        uart_putdec(cval - at);
    } else {
        uart_puts(": late_ticks=");
        uart_putdec(late);
        uart_puts(" bound_ticks=");
        uart_putdec(max_step + slack);
    }
    check_end();
}

int main(void)
{
    u64 hz = cntfrq();
    u64 frq = hz ? hz : 1000000000UL;   /* keep going with the lab's value */

    timer_set_ctl(TIMER_VIRT, 0);
    timer_set_ctl(TIMER_PHYS, 0);
    vt_intid = rt_timer_ppi_virt();
    pt_intid = rt_timer_ppi_phys();
    int gv = gic_init();

    for (u32 i = 0; i < NIRQ; i++)
        irq_set_handler(i, irq_handler);
    gic_enable_ppi(vt_intid);
    gic_enable_ppi(pt_intid);
    irq_enable();

    /* Calibrate the loop bound and print the header first (about 0.35 s in
     * the lab), then arm both timers from one reading of each counter and
     * go straight into the measuring loop from that reading: the only step
     * between arming and the loop is then a pause of the VMM's, so the
     * largest step, which bounds how late a timer may be, is not inflated
     * by the program's own work. A VMM should pause it after about 0.5 s.
     * (A counter within 2 s of wrapping would give a CVAL in the past: keep
     * offsets sane.) */
    u64 bound = calibrate(frq);

    uart_puts("timer_migrate: gic=v");
    uart_putdec((u64)gv);
    uart_puts(" vtimer_intid=");
    uart_putdec(vt_intid);
    uart_puts(" ptimer_intid=");
    uart_putdec(pt_intid);
    uart_puts(rt_timer_ppi_from_dtb() ? " dtb=yes" : " dtb=no");
    uart_puts(" loop_bound=");
    uart_putdec(bound);
    uart_putc('\n');

    u64 v0 = cntvct();
    u64 p0 = cntpct();
    u64 vcval = v0 + ticks_from_us(frq, VTIMER_US);
    u64 pcval = p0 + ticks_from_us(frq, PTIMER_US);
    timer_set_cval(TIMER_VIRT, vcval);
    timer_set_ctl(TIMER_VIRT, CTL_ENABLE);
    timer_set_cval(TIMER_PHYS, pcval);
    timer_set_ctl(TIMER_PHYS, CTL_ENABLE);

    struct result r;
    watch(&r, v0, p0, ticks_from_us(frq, RUN_US), ticks_from_us(frq, TAIL_US), bound);

    irq_disable();
    timer_set_ctl(TIMER_VIRT, 0);
    timer_set_ctl(TIMER_PHYS, 0);

    u64 max_step = r.vmax > r.pmax ? r.vmax : r.pmax;
    u64 slack = ticks_from_us(frq, SLACK_US);

    print_timer(TIMER_VIRT, vcval);
    print_timer(TIMER_PHYS, pcval);
    uart_puts("timer_migrate: max_step_ticks=");
    uart_putdec(max_step);
    uart_puts(" cntfrq=");
    uart_putdec(hz);
    uart_putc('\n');

    /* IRQs other than exactly one per timer: extra timer IRQs (a storm
     * after the restore), other INTIDs, INTIDs beyond the handler table,
     * and spurious acknowledges. */
    u64 other = irq_unexpected;
    for (u32 i = 0; i < NIRQ; i++) {
        if (i == vt_intid || i == pt_intid || irq_count[i] == 0)
            continue;
        other += irq_count[i];
        uart_puts("timer_migrate: unexpected intid=");
        uart_putdec(i);
        uart_puts(" irqs=");
        uart_putdec(irq_count[i]);
        uart_putc('\n');
    }
    u32 spurious = irq_spurious;
    u32 vextra = fired[TIMER_VIRT] > 1 ? fired[TIMER_VIRT] - 1 : 0;
    u32 pextra = fired[TIMER_PHYS] > 1 ? fired[TIMER_PHYS] - 1 : 0;

    check_timer(TIMER_VIRT, vcval, max_step, slack);
    check_timer(TIMER_PHYS, pcval, max_step, slack);

    check_begin(ARCH, vextra == 0 && pextra == 0 && other == 0 && spurious == 0,
                "timer_migrate: no unexpected interrupts");
    uart_puts(": vtimer_extra=");
    uart_putdec(vextra);
    uart_puts(" ptimer_extra=");
    uart_putdec(pextra);
    uart_puts(" other=");
    uart_putdec(other);
    uart_puts(" spurious=");
    uart_putdec(spurious);
    check_end();

    if (r.elapsed < ticks_from_us(frq, RUN_US))
        check(ARCH, 0, "timer_migrate: ended by the loop bound");

    return rt_status();
}
