/* el2_watch: a guest hypervisor (vtvmm --el2) and its nested guest watch
 * their counters and timers, in turn, for RUN_SECONDS of guest time: the
 * workload for snapshot/restore and live migration tests of a vEL2 VM.
 *
 * Set-up at vEL2 (VHE): HCR_EL2.IMO|FMO, the GIC from EL2 (PPIs 26 and 27),
 * CNTVOFF_EL2 = NESTED_VOFF (or half of CNTPCT, when the counter is still
 * below it, so that the nested CNTVCT cannot wrap), CNTHCTL_EL2.EL1PCTEN|
 * EL1PTEN, VBAR_EL12 = these vectors, ICH_HCR_EL2.En, ICH_VMCR_EL2 (VENG1,
 * VPMR 0xff), HCR_EL2 = RW|E2H|IMO|FMO. Then it erets to the nested guest
 * at EL1, and the two take turns:
 *
 *  - the nested guest (L2) runs a watch loop for WINDOW_MS of its CNTPCT,
 *    then makes an HVC (FID_SWITCH);
 *  - the guest hypervisor (L1) takes it (rt_lower_sync), runs its own watch
 *    loop for WINDOW_MS with IRQs on, and erets back.
 *
 * Each level tracks the two counters it can read (L1: CNTPCT and CNTVCT,
 * which at EL2 with E2H = 1 has no offset; L2: CNTVCT and CNTPCT): reads
 * lower than the previous read of the same counter (must be 0), the
 * largest forward step inside a window (a pause under a wallclock-like
 * policy shows as one big step there) and the largest step across the
 * other level's window ("gap"). L2 also checks every CNTVCT against
 * CNTPCT - CNTVOFF_EL2, bracketed by two CNTPCT reads.
 *
 * Each level keeps one timer armed at a time, ARM_MS ahead: L1 its EL2
 * physical timer (CNTHP, PPI 26, taken at EL2 or, while L2 runs, as an IRQ
 * from the lower EL), L2 its EL1 virtual timer (PPI 27 reaches L1, which
 * masks it through CNTV_CTL_EL02, EOIs it and injects virtual INTID 27
 * through ICH_LR0_EL2; L2 takes it through its virtual CPU interface).
 * Each arming must give exactly one IRQ, not before CVAL (and with ISTATUS
 * at entry), and not later than LATE_MS plus the largest step of that
 * level's counter while it was armed (steps and gaps). An arming whose IRQ
 * did not come by then is counted as missed and re-armed.
 *
 * The run ends when the sum of L2's CNTPCT forward steps (gaps included)
 * reaches RUN_SECONDS. A per-window loop-count bound (worth 10 windows,
 * calibrated at each level's start) ends a window whose counter does not
 * move; STALL_WINDOWS such windows in a row at either level, or too many
 * windows, end the run with a not ok line. L1 prints a progress line every
 * PROGRESS_MS, and at the end all the figures and the result lines, and
 * exits with rt_status(). */
#include "rt/rt.h"
#include "rt/timer.h"
#include "rt/gic.h"
#include "rt/el2.h"

const int rt_el2_ok = 1;

#ifndef RUN_SECONDS
#define RUN_SECONDS     30UL
#endif
#ifndef PROGRESS_MS
#define PROGRESS_MS     5000UL
#endif
#define WINDOW_MS       50UL
#define ARM_MS          400UL
#define LATE_MS         100UL
#define CAL_ITERS       4096UL
#define STALL_WINDOWS   3
#define NESTED_VOFF     0x123456789UL   /* about 78 s at 62.5 MHz */

#define FID_SWITCH      0xC6005701UL    /* L2 -> L1: your turn (vendor hyp range) */
#define FID_DONE        0xC6005702UL    /* L2 -> L1: the run is over, report */
#define ESR_EC_HVC64    0x16




#define L1 1
#define L2 2

struct ctr {
    u64 prev;       /* last read */
    u64 back;       /* reads lower than the previous one */
    u64 max_step;   /* largest forward step inside a window */
    u64 max_gap;    /* largest step across the other level's window */
};

struct tmr {
    volatile u32 armed;         /* an arming is outstanding */
    volatile u32 fired;         /* its IRQ came; not checked yet */
    volatile u64 fired_at;      /* the level's count at handler entry */
    volatile u64 ctl_at;        /* CTL at handler entry */
    volatile u64 hits;          /* IRQs taken */
    volatile u64 doubles;       /* IRQs with no arming outstanding */
    u64 cval;
    u64 max_step;               /* largest step (or gap) since arming */
    u64 arms, ok, early, late, missed;
    u64 max_late;               /* ticks, over the armings that fired */
    u64 early_at, early_cval, early_ctl, early_arm;  /* the first early one */
};

static struct ctr l1p, l1v, l2v, l2p;
static struct tmr t1, t2;
static u64 frq, voff;
static u64 window_ticks, arm_ticks, late_ticks;
static u64 l1_bound, l2_bound;          /* per-window iteration bounds */
static u64 l1_windows, l2_windows, l1_stalls, l2_stalls;
static u64 l1_iters, l2_iters;
static u64 total;                       /* L2's CNTPCT forward steps: the run's guest time */
static u64 next_progress;
static u64 voff_viol, voff_samples;
static int timers_on;
static int stop_bound;                  /* ended by a loop bound */
static volatile u64 fwd_count, fwd_lr_busy, l1_other;
static u32 vt_intid = INTID_VTIMER_DEFAULT;

static u8 nested_stack[0x4000] __attribute__((aligned(16)));

static inline u64 ctr_step(struct ctr *c, u64 x, int first)
{
    u64 s = 0;
    if (x < c->prev) {
        c->back++;
    } else {
        s = x - c->prev;
        if (first) {
            if (s > c->max_gap)
                c->max_gap = s;
        } else if (s > c->max_step) {
            c->max_step = s;
        }
    }
    c->prev = x;
    return s;
}

/* ---- timers ---- */

static void tmr_hit(struct tmr *t, u64 now, u64 ctl)
{
    t->hits++;
    if (!t->armed) {
        t->doubles++;
        return;
    }
    t->armed = 0;
    t->fired_at = now;
    t->ctl_at = ctl;
    t->fired = 1;
}

static void tmr_hw(int lvl, u64 cval, u32 ctl)
{
    if (lvl == L1) {
        if (ctl)
            write_sysreg(cnthp_cval_el2, cval);
        write_sysreg(cnthp_ctl_el2, ctl);
        isb();
    } else {
        if (ctl)
            timer_set_cval(TIMER_VIRT, cval);
        timer_set_ctl(TIMER_VIRT, ctl);
    }
}

/* Called in the watch loop with IRQs on; `now` is the timer's own count. */
static inline void tmr_poll(int lvl, struct tmr *t, u64 now)
{
    if (t->fired) {
        t->fired = 0;
        u64 at = t->fired_at;
        if (at < t->cval || !(t->ctl_at & CTL_ISTATUS)) {
            if (t->early++ == 0) {
                t->early_at = at;
                t->early_cval = t->cval;
                t->early_ctl = t->ctl_at;
                t->early_arm = t->arms;
            }
        } else {
            u64 l = at - t->cval;
            if (l > t->max_late)
                t->max_late = l;
            if (l > late_ticks + t->max_step)
                t->late++;
            else
                t->ok++;
        }
    } else if (t->armed) {
        if (now <= t->cval || now - t->cval <= late_ticks + t->max_step)
            return;
        irq_disable();
        if (t->armed) {                 /* lost: stop it, count, re-arm */
            tmr_hw(lvl, 0, 0);
            t->armed = 0;
            t->missed++;
        }
        irq_enable();
        if (!t->fired)
            return;
        t->fired = 0;                   /* came just now: after its bound */
        t->late++;
    } else if (!timers_on) {
        return;
    }
    t->cval = now + arm_ticks;
    t->max_step = 0;
    t->arms++;
    t->armed = 1;
    tmr_hw(lvl, t->cval, CTL_ENABLE);
}

/* L1's CNTHP, taken at EL2 (the runtime's table) or from the lower EL. */
static void l1_timer_irq(u32 intid)
{
    (void)intid;
    u64 now = cntpct();
    u64 ctl = read_sysreg(cnthp_ctl_el2);
    write_sysreg(cnthp_ctl_el2, 0);
    isb();
    tmr_hit(&t1, now, ctl);
}

/* At EL2: the nested guest's timer fired. Mask it, put virtual INTID 27
 * in LR0; the caller EOIs the physical interrupt. */
static void l1_forward(void)
{
    if (el2_forward_timer(vt_intid))
        fwd_lr_busy++;
    fwd_count++;
}

/* INTID 27's handler in the shared table: at EL1 it is the nested guest's
 * own timer IRQ (through the virtual interface); at EL2 (PPI 27 while L1
 * runs its window) L1 forwards it. */
static void vt_irq(u32 intid)
{
    (void)intid;
    if (((read_sysreg(CurrentEL) >> 2) & 3) == 2) {
        l1_forward();
        return;
    }
    u64 now = cntvct();
    u64 ctl = timer_ctl(TIMER_VIRT);
    timer_set_ctl(TIMER_VIRT, 0);
    tmr_hit(&t2, now, ctl);
}

void rt_lower_irq(struct exc_frame *f)
{
    (void)f;
    u32 iar = gic_ack();
    u32 intid = gic_intid(iar);
    if (intid >= 1020)
        return;
    if (intid == vt_intid) {
        l1_forward();
    } else if (intid == INTID_HPTIMER) {
        l1_timer_irq(intid);
    } else {
        l1_other++;
        gic_disable_irq(intid);
    }
    gic_eoi(iar);
}

/* ---- the watch loops ---- */

/* L1: CNTPCT (the timer's count and the window's clock) and CNTVCT. With
 * bound_only, a calibration run of `bound` iterations. */
static u64 l1_window(u64 bound)
{
    u64 win = 0, it = 0;
    int first = 1;
    while (it < bound && win < window_ticks) {
        u64 p = cntpct();
        u64 v = cntvct();
        u64 sp = ctr_step(&l1p, p, first);
        ctr_step(&l1v, v, first);
        if (!first)
            win += sp;
        if (sp > t1.max_step)
            t1.max_step = sp;
        tmr_poll(L1, &t1, p);
        first = 0;
        it++;
    }
    l1_iters += it;
    return it;
}

/* L2: CNTPCT, CNTVCT, CNTPCT: the two counters, and CNTVCT + CNTVOFF_EL2
 * against the bracket. The window's clock is CNTPCT; CNTVCT is the timer's. */
static u64 l2_window(u64 bound)
{
    u64 win = 0, it = 0;
    int first = 1;
    while (it < bound && win < window_ticks) {
        u64 p0 = cntpct();
        u64 v = cntvct();
        u64 p1 = cntpct();
        u64 s0 = ctr_step(&l2p, p0, first);
        u64 s1 = ctr_step(&l2p, p1, 0);
        u64 sv = ctr_step(&l2v, v, first);
        total += s0 + s1;
        if (!first)
            win += s0;
        win += s1;
        if ((v + voff) - p0 > p1 - p0)  /* v + CNTVOFF in [p0, p1], modulo 2^64 */
            voff_viol++;
        voff_samples++;
        if (sv > t2.max_step)
            t2.max_step = sv;
        tmr_poll(L2, &t2, v);
        first = 0;
        it++;
    }
    l2_iters += it;
    return it;
}

/* Iterations worth 10 windows, from a run of CAL_ITERS (timed by CNTPCT). */
static u64 calibrate(u64 (*window)(u64))
{
    u64 t0 = cntpct();
    window(CAL_ITERS);
    u64 t = cntpct() - t0;
    if (t == 0 || t > (1UL << 40))
        return 1UL << 24;
    u64 b = 10 * window_ticks / t * CAL_ITERS;
    return b < CAL_ITERS ? CAL_ITERS : b;
}

/* ---- the report, from L1 ---- */

static void put_ctr(const char *name, const struct ctr *c)
{
    uart_puts("el2_watch: ");
    uart_puts(name);
    uart_puts(" backwards=");
    uart_putdec(c->back);
    uart_puts(" max_step_ticks=");
    uart_putdec(c->max_step);
    uart_puts(" max_gap_ticks=");
    uart_putdec(c->max_gap);
    uart_putc('\n');
}

static void put_tmr(const char *name, const struct tmr *t)
{
    uart_puts("el2_watch: ");
    uart_puts(name);
    uart_puts(" arms=");
    uart_putdec(t->arms);
    uart_puts(" irqs=");
    uart_putdec(t->hits);
    uart_puts(" ok=");
    uart_putdec(t->ok);
    uart_puts(" early=");
    uart_putdec(t->early);
    uart_puts(" late=");
    uart_putdec(t->late);
    uart_puts(" missed=");
    uart_putdec(t->missed);
    uart_puts(" double=");
    uart_putdec(t->doubles);
    uart_puts(" max_late_us=");
    uart_putdec(us_from_ticks(frq, t->max_late));
    if (t->early) {
        uart_puts(" first_early: arm=");
        uart_putdec(t->early_arm);
        uart_puts(" count=");
        uart_putdec(t->early_at);
        uart_puts(" cval=");
        uart_putdec(t->early_cval);
        uart_puts(" ctl=");
        uart_puthex(t->early_ctl);
    }
    uart_putc('\n');
}

static void tmr_checks(const char *what_once, const char *what_early, const char *what_late,
                       const struct tmr *t)
{
    check_u(ARCH, t->arms > 1 && t->missed == 0 && t->doubles == 0, what_once, "missed",
            t->missed + t->doubles);
    check_u(ARCH, t->early == 0, what_early, "early", t->early);
    check_u(ARCH, t->late == 0, what_late, "max_late_us", us_from_ticks(frq, t->max_late));
}

static void __attribute__((noreturn)) l1_report(void)
{
    irq_disable();
    write_sysreg(cnthp_ctl_el2, 0);
    sysreg_set(CNTV_CTL_EL02, 0);
    uart_puts("el2_watch: elapsed_ms=");
    uart_putdec(us_from_ticks(frq, total) / 1000);
    uart_puts(" windows l1=");
    uart_putdec(l1_windows);
    uart_puts(" l2=");
    uart_putdec(l2_windows);
    uart_puts(" iters l1=");
    uart_putdec(l1_iters);
    uart_puts(" l2=");
    uart_putdec(l2_iters);
    uart_puts(" cntfrq=");
    uart_putdec(frq);
    uart_putc('\n');
    put_ctr("l1 cntpct", &l1p);
    put_ctr("l1 cntvct", &l1v);
    put_ctr("l2 cntvct", &l2v);
    put_ctr("l2 cntpct", &l2p);
    put_tmr("l1 cnthp", &t1);
    put_tmr("l2 cntv", &t2);
    uart_puts("el2_watch: l2 forwards=");
    uart_putdec(fwd_count);
    uart_puts(" lr_busy=");
    uart_putdec(fwd_lr_busy);
    uart_puts(" other_irqs=");
    uart_putdec(l1_other + irq_unexpected + irq_spurious);
    uart_puts(" voff_samples=");
    uart_putdec(voff_samples);
    uart_putc('\n');
    check(ARCH, l1p.back == 0 && l1v.back == 0, "el2_watch: l1 cntpct and cntvct never went backwards");
    check(ARCH, l2v.back == 0 && l2p.back == 0, "el2_watch: l2 cntvct and cntpct never went backwards");
    check_u(ARCH, voff_viol == 0, "el2_watch: l2 cntvct = cntpct - cntvoff_el2 within the read window",
            "violations", voff_viol);
    tmr_checks("el2_watch: l1 cnthp: one IRQ per arming", "el2_watch: l1 cnthp: none before cval",
               "el2_watch: l1 cnthp: none later than 100 ms + the largest step", &t1);
    tmr_checks("el2_watch: l2 cntv: one IRQ per arming", "el2_watch: l2 cntv: none before cval",
               "el2_watch: l2 cntv: none later than 100 ms + the largest step", &t2);
    check_u(ARCH, l1_other + irq_unexpected + irq_spurious == 0, "el2_watch: no other interrupts",
            "other", l1_other + irq_unexpected + irq_spurious);
    if (stop_bound)
        check(ARCH, 0, "el2_watch: ended by the loop bound");
    guest_exit(rt_status());
}

/* ---- L1's turn: HVC from the nested guest ---- */

static void l1_turn(void)
{
    if (total >= next_progress) {
        uart_puts("el2_watch: t=");
        uart_putdec(us_from_ticks(frq, total) / 1000);
        uart_puts(" ms l1_irqs=");
        uart_putdec(t1.hits);
        uart_puts(" l2_irqs=");
        uart_putdec(t2.hits);
        uart_putc('\n');
        next_progress += PROGRESS_MS * frq / 1000;
    }
    irq_enable();
    u64 it = l1_window(l1_bound);
    irq_disable();
    l1_windows++;
    l1_stalls = it >= l1_bound ? l1_stalls + 1 : 0;
    if (l1_stalls >= STALL_WINDOWS) {
        stop_bound = 1;
        l1_report();
    }
}

void rt_lower_sync(u64 esr, struct exc_frame *f)
{
    if (((esr >> 26) & 0x3f) == ESR_EC_HVC64) {
        u64 fid = f->x[0];
        if (fid == FID_SWITCH) {
            l1_turn();
            f->x[0] = 0;
            return;
        }
        if (fid == FID_DONE)
            l1_report();
        f->x[0] = rt_psci(fid, f->x[1], f->x[2], f->x[3]);     /* PSCI: pass it on */
        return;
    }
    rt_fatal_exception("lower sync", esr, f);
}

/* ---- the nested guest ---- */

static void nested_main(void)
{
    l2v.prev = cntvct();
    l2p.prev = cntpct();
    l2_bound = calibrate(l2_window);
    uart_puts("el2_watch: nested guest at EL");
    uart_putdec((read_sysreg(CurrentEL) >> 2) & 3);
    uart_puts(" l2_bound=");
    uart_putdec(l2_bound);
    uart_putc('\n');
    irq_set_handler(vt_intid, vt_irq);
    total = 0;
    timers_on = 1;
    irq_enable();
    u64 run = RUN_SECONDS * frq, max_windows = 4 * RUN_SECONDS * 1000 / WINDOW_MS;
    for (;;) {
        u64 it = l2_window(l2_bound);
        l2_windows++;
        l2_stalls = it >= l2_bound ? l2_stalls + 1 : 0;
        if (l2_stalls >= STALL_WINDOWS || l2_windows >= max_windows)
            stop_bound = 1;
        if (stop_bound || total >= run)
            break;
        smccc_hvc(FID_SWITCH, 0, 0, 0);
    }
    irq_disable();
    smccc_hvc(FID_DONE, 0, 0, 0);
    guest_exit(EXIT_FAIL);              /* not reached: L1 reports and exits */
}

/* ---- the guest hypervisor ---- */

int main(void)
{
    u64 el = (read_sysreg(CurrentEL) >> 2) & 3;
    if (!check_u(VTVMM("el2"), el == 2, "el2_watch: the guest hypervisor starts at EL2", "el", el))
        return rt_status();
    u64 hcr = read_sysreg(hcr_el2);
    /* The runtime set E2H if it was 0 (QEMU's TCG); vtvmm starts with it. */
    check_u(VTVMM("el2"), rt_el2_e2h_at_entry == 1, "el2_watch: HCR_EL2.E2H = 1 (VHE)", "e2h",
            rt_el2_e2h_at_entry);
    frq = cntfrq();
    if (frq == 0)
        frq = 1000000000UL;
    window_ticks = WINDOW_MS * frq / 1000;
    arm_ticks = ARM_MS * frq / 1000;
    late_ticks = LATE_MS * frq / 1000;
    next_progress = PROGRESS_MS * frq / 1000;

    /* Interrupts to EL2, the GIC from here. */
    write_sysreg(hcr_el2, (hcr | HCR_IMO | HCR_FMO) & ~HCR_TGE);
    isb();
    gic_init();
    vt_intid = rt_timer_ppi_virt();
    gic_enable_ppi(INTID_HPTIMER);
    gic_enable_ppi(vt_intid);
    irq_set_handler(INTID_HPTIMER, l1_timer_irq);
    irq_set_handler(vt_intid, vt_irq);

    u64 p = cntpct();
    voff = p > NESTED_VOFF ? NESTED_VOFF : p / 2;
    l1p.prev = p;
    l1v.prev = cntvct();
    l1_bound = calibrate(l1_window);
    uart_puts("el2_watch: run_ms=");
    uart_putdec(RUN_SECONDS * 1000);
    uart_puts(" window_ms=");
    uart_putdec(WINDOW_MS);
    uart_puts(" arm_ms=");
    uart_putdec(ARM_MS);
    uart_puts(" cntvoff_el2=");
    uart_puthex(voff);
    uart_puts(" l1_bound=");
    uart_putdec(l1_bound);
    uart_putc('\n');

    /* The nested guest. */
    el2_prepare_nested(voff, nested_main, &nested_stack[sizeof(nested_stack)]);
    __asm__ volatile("eret" : : : "memory");
    __builtin_unreachable();
}
