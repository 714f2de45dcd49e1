/* el2_nested: a guest hypervisor (vtvmm --el2) with a nested guest.
 *
 * At vEL2 (VHE, HCR_EL2.E2H = 1) it checks its own two EL2 timers by
 * their condition (CNTHP against CNTPCT, CNTHV against the count it
 * compares with at EL2, polled with IMASK set), and then as interrupts:
 * with HCR_EL2.IMO|FMO set and the GIC set up from EL2 (PPIs 26, 28 and
 * 27), each timer armed 1 ms ahead unmasked must interrupt EL2 exactly
 * once, not before CVAL, and within WFI_LATE_US while it waits in WFI.
 * Then it sets CNTVOFF_EL2 to NESTED_VOFF (or half of CNTPCT while the
 * counter is below it, so that the nested count never wraps: QEMU's TCG
 * misses a virtual timer's condition on a wrapped count), lets EL1
 * read the physical counter and timer (CNTHCTL_EL2), turns on its virtual
 * CPU interface (ICH_HCR_EL2.En, ICH_VMCR_EL2 VENG1 and VPMR 0xff) and
 * enters a nested guest at EL1 (HCR_EL2: RW, E2H, IMO, FMO, no TGE, no
 * stage 2) with this image's own vectors (VBAR_EL12). The nested guest
 * reads its counters interleaved: each CNTVCT must lie in [CNTPCT before,
 * CNTPCT after] minus CNTVOFF_EL2, which is how the model composes a
 * nested vCPU's virtual count (host - VM offset - CNTVOFF_EL2) around the
 * physical one (host - VM offset). It then arms its EL1 virtual timer
 * 2 ms ahead and polls ISTATUS, which must not be set before CVAL and must
 * be set once the count passed it. Last, it arms that timer 2 ms ahead
 * unmasked with IRQs on: PPI 27 reaches the guest hypervisor as an IRQ
 * from the lower EL (rt_lower_irq), which masks the nested timer
 * (CNTV_CTL_EL02.IMASK), EOIs it and injects virtual INTID 27 through
 * ICH_LR0_EL2; the nested guest takes it through its virtual CPU interface
 * and checks it came once, not before CVAL, while it spins (its lateness
 * is printed: on a host without FEAT_ECV KVM sees a nested guest's timer
 * only at its next exit) and again while it waits in WFI (within
 * WFI_LATE_US: the WFI exits to the host's KVM, which sleeps on the
 * vCPU's timers). Between the two it stores its counters to vtvmm's
 * counter probes (PROBES of each). The nested guest prints and exits the
 * VM itself (PL011 and finisher stores are MMIO at EL1 too). */
#include "rt/rt.h"
#include "rt/timer.h"
#include "rt/gic.h"
#include "rt/el2.h"

const int rt_el2_ok = 1;

#ifndef NESTED_VOFF                /* EXTRA_CFLAGS=-DNESTED_VOFF=0UL: no nested offset */
#define NESTED_VOFF 0x123456789UL  /* about 4.9 s at 1 GHz, 78 s at 62.5 MHz */
#endif
#define PROBES      50u /* counter probes of each kind for vtvmm's model check */
#define WFI_LATE_US 20000UL /* a timer waited for in WFI: at most this late */
static u64 nested_voff;             /* CNTVOFF_EL2 for the nested guest */
#ifndef PROBE_LIE
#define PROBE_LIE   0UL /* el2_nested_lie: 1, its virtual probes claim CNTVCT + CNTVOFF_EL2 */
#endif

/* List register: State [63:62] (1 = pending), HW [61] (0), Group [60],
 * Priority [55:48], vINTID [31:0]. */


static u8 nested_stack[0x4000] __attribute__((aligned(16)));

/* What the guest hypervisor saw when the nested timer's PPI reached it
 * (rt_lower_irq), for the nested guest's report; shared memory, as the
 * nested guest runs in the same address space (no stage 2). */
static volatile u32 fwd_count;         /* PPI 27 taken at EL2 and injected */
static volatile u32 fwd_lr_busy;       /* LR0 still held an interrupt then */
static volatile u32 fwd_other;         /* other INTIDs taken from the lower EL */
static volatile u64 fwd_ctl, fwd_cval, fwd_count_at; /* CNTV_*_EL02 and CNTVCT at entry */
static u32 nested_intid = INTID_VTIMER_DEFAULT;

/* The nested guest's EL1 virtual timer interrupt, at its own level. */
static volatile u32 n_irqs;
static volatile u64 n_fired_at, n_ctl_at;

static void nested_vtimer_irq(u32 intid)
{
    (void)intid;
    u64 now = cntvct();
    if (n_irqs++ == 0) {
        n_fired_at = now;
        n_ctl_at = timer_ctl(TIMER_VIRT);
    }
    timer_set_ctl(TIMER_VIRT, 0);
}

/* ---- the nested guest, at EL1 ---- */

static void nested_timer_check(u64 frq)
{
    u64 delta = ticks_from_us(frq, 2000);
    u64 cval = cntvct() + delta;
    timer_set_cval(TIMER_VIRT, cval);
    timer_set_ctl(TIMER_VIRT, CTL_ENABLE | CTL_IMASK);
    u64 early = 0, seen_at = 0, start = cntvct();
    while (cntvct() - start < 500 * delta) {
        u32 ctl = timer_ctl(TIMER_VIRT);
        u64 after = cntvct();
        if ((ctl & CTL_ISTATUS) && after < cval)
            early++;
        if ((ctl & CTL_ISTATUS) && !seen_at) {
            seen_at = after;
            break;
        }
    }
    /* What the timer compares with: CVAL - TVAL, against CNTVCT read around it. */
    u64 c0 = cntvct();
    s32 tval = timer_tval(TIMER_VIRT);
    u64 c1 = cntvct();
    uart_puts("el2_nested: nested timer: ctl=");
    uart_puthex(timer_ctl(TIMER_VIRT));
    uart_puts(" cval=");
    uart_putdec(timer_cval(TIMER_VIRT));
    uart_puts(" (set ");
    uart_putdec(cval);
    uart_puts(") cval-tval=");
    uart_putdec(timer_cval(TIMER_VIRT) - (u64)(s64)tval);
    uart_puts(" cntvct=");
    uart_putdec(c0);
    uart_puts("..");
    uart_putdec(c1);
    uart_putc('\n');
    timer_set_ctl(TIMER_VIRT, 0);
    check_u(ARCH, early == 0, "el2_nested: nested EL1 virtual timer: no ISTATUS before CVAL", "early", early);
    check_u(ARCH, seen_at >= cval, "el2_nested: nested EL1 virtual timer: ISTATUS once CNTVCT passed CVAL",
            "late_us", seen_at ? us_from_ticks(frq, seen_at - cval) : 0);
}

/* The same timer as an interrupt: 2 ms ahead, unmasked, IRQs on. The
 * guest hypervisor forwards PPI 27 as virtual INTID 27. Bounded by 2 s of
 * CNTVCT (and a read count), then 10 ms more to see a second IRQ. */
/* Arms the nested guest's EL1 virtual timer `delta` ahead, unmasked, with
 * its handler registered and the IRQ count cleared; returns CVAL. */
static u64 nested_arm_timer(u64 delta)
{
    irq_set_handler(nested_intid, nested_vtimer_irq);
    n_irqs = 0;
    u64 cval = cntvct() + delta;
    timer_set_cval(TIMER_VIRT, cval);
    timer_set_ctl(TIMER_VIRT, CTL_ENABLE);
    return cval;
}

static void nested_timer_irq_check(u64 frq)
{
    u64 delta = ticks_from_us(frq, 2000);
    u64 cval = nested_arm_timer(delta);
    irq_enable();
    /* The loop also polls ISTATUS, to compare it with the IRQ's arrival. */
    u64 start = cntvct(), reads = 0, polled_at = 0;
    while (n_irqs == 0 && cntvct() - start < 1000 * delta && ++reads < (1UL << 30)) {
        if (!polled_at && (timer_ctl(TIMER_VIRT) & CTL_ISTATUS))
            polled_at = cntvct();
    }
    u64 stop = cntvct();
    while (cntvct() - stop < 5 * delta && ++reads < (1UL << 30))
        cpu_relax();
    irq_disable();
    timer_set_ctl(TIMER_VIRT, 0);
    u64 fired = n_fired_at, fcount = fwd_count_at;
    uart_puts("el2_nested: nested timer irq: irqs=");
    uart_putdec(n_irqs);
    uart_puts(" ctl_at_entry=");
    uart_puthex(n_ctl_at);
    uart_puts(" istatus_polled_late_us=");
    uart_putsdec(!polled_at ? -1 : polled_at >= cval ? (s64)us_from_ticks(frq, polled_at - cval)
                                                     : -(s64)us_from_ticks(frq, cval - polled_at));
    uart_puts(" l1_forwards=");
    uart_putdec(fwd_count);
    uart_puts(" l1_ctl02=");
    uart_puthex(fwd_ctl);
    uart_puts(" l1_late_us=");
    uart_putsdec(fcount >= cval ? (s64)us_from_ticks(frq, fcount - cval) : -(s64)us_from_ticks(frq, cval - fcount));
    uart_puts(" l1_lr_busy=");
    uart_putdec(fwd_lr_busy);
    uart_puts(" l1_other=");
    uart_putdec(fwd_other);
    uart_putc('\n');
    check_u(ARCH, n_irqs == 1, "el2_nested: nested EL1 virtual timer IRQ (via ICH_LR0_EL2) exactly once",
            "irqs", n_irqs);
    check_u(ARCH, n_irqs && fired >= cval && (n_ctl_at & CTL_ISTATUS),
            "el2_nested: nested EL1 virtual timer IRQ not before CVAL, ISTATUS at entry",
            "istatus", (n_ctl_at >> 2) & 1);
    check_u(ARCH, n_irqs && fired >= cval, "el2_nested: nested EL1 virtual timer IRQ lateness",
            "late_us", n_irqs && fired >= cval ? us_from_ticks(frq, fired - cval) : ~0UL);
}

/* The same interrupt waited for the way an operating system idles: WFI.
 * The nested guest's WFI exits to the host's KVM (the guest hypervisor
 * does not trap it), which then sleeps on the vCPU's timers: the
 * interrupt comes on time, where a busy loop (above) runs without an exit
 * and, on a host without FEAT_ECV, sees it only at the next exit. Bounded
 * by 2 s of CNTVCT: any other interrupt also ends a WFI. */
static void nested_timer_wfi_check(u64 frq)
{
    u64 delta = ticks_from_us(frq, 2000);
    u64 cval = nested_arm_timer(delta);
    u64 start = cntvct();
    irq_enable();
    while (n_irqs == 0 && cntvct() - start < 1000 * delta)
        __asm__ volatile("wfi" : : : "memory");
    irq_disable();
    timer_set_ctl(TIMER_VIRT, 0);
    u64 fired = n_fired_at;
    uart_puts("el2_nested: nested timer wfi: irqs=");
    uart_putdec(n_irqs);
    uart_puts(" late_us=");
    uart_putsdec(!n_irqs ? -1 : fired >= cval ? (s64)us_from_ticks(frq, fired - cval)
                                              : -(s64)us_from_ticks(frq, cval - fired));
    uart_putc('\n');
    check_u(ARCH, n_irqs == 1 && fired >= cval,
            "el2_nested: nested EL1 virtual timer IRQ, waited for in WFI, once, not before CVAL",
            "irqs", n_irqs);
    check_u(ARCH, n_irqs == 1 && fired >= cval && fired - cval < ticks_from_us(frq, WFI_LATE_US),
            "el2_nested: nested EL1 virtual timer IRQ, waited for in WFI, on time",
            "late_us", n_irqs == 1 && fired >= cval ? us_from_ticks(frq, fired - cval) : ~0UL);
}

static void nested_main(void)
{
    u64 el = (read_sysreg(CurrentEL) >> 2) & 3;
    u64 frq = cntfrq();
    if (frq == 0)
        frq = 1000000000UL;
    uart_puts("el2_nested: nested guest at EL");
    uart_putdec(el);
    uart_putc('\n');
    u64 viol = 0, best = ~0UL, first_v = 0, first_p = 0;
    s64 first_dv = 0;
    for (u32 i = 0; i < 2000; i++) {
        u64 p0 = cntpct();
        u64 v = cntvct();
        u64 p1 = cntpct();
        if (i == 0) {
            first_v = v;
            first_p = p0;
            first_dv = (s64)(p0 - v);
        }
        if ((v + nested_voff) - p0 > p1 - p0) /* v + CNTVOFF in [p0, p1], modulo 2^64 */
            viol++;
        if (p1 - p0 < best)
            best = p1 - p0;
    }
    uart_puts("el2_nested: nested cntvct=");
    uart_putdec(first_v);
    uart_puts(" cntpct=");
    uart_putdec(first_p);
    uart_puts(" cntpct-cntvct=");
    uart_putsdec(first_dv);
    uart_puts(" cntvoff_el2=");
    uart_putdec(nested_voff);
    uart_puts(" best_window_ticks=");
    uart_putdec(best);
    uart_putc('\n');
    check_u(ARCH, el == 1, "el2_nested: the nested guest runs at EL1", "el", el);
    check_u(ARCH, viol == 0,
            "el2_nested: nested CNTVCT = CNTPCT - CNTVOFF_EL2 within the read window (2000 reads)",
            "violations", viol);
    /* The same counters against vtvmm's model: each probe stores the count
     * just read; vtvmm checks it against the VM offset and this vCPU's
     * CNTVOFF_EL2 at the exit (its --stats "probes" line). */
    for (u32 i = 0; i < PROBES; i++) {
        /* Guarded: the device is vtvmm's, unassigned under QEMU. */
        u64 v = cntvct() + PROBE_LIE * nested_voff;
        rt_fault_expected = 1;
        __asm__ volatile("str %0, [%1]" : : "r"(v), "r"(TRACEMARKER_BASE + 0x10) : "memory");
        rt_fault_expected = 0;
        u64 p = cntpct();
        rt_fault_expected = 1;
        __asm__ volatile("str %0, [%1]" : : "r"(p), "r"(TRACEMARKER_BASE + 0x18) : "memory");
        rt_fault_expected = 0;
    }
    nested_timer_check(frq);
    nested_timer_irq_check(frq);
    nested_timer_wfi_check(frq);
    guest_exit(rt_status());
}

/* ---- the guest hypervisor, at EL2 ---- */

static u64 mrs_cnthv_ctl(void) { u64 v; __asm__ volatile("isb\n\tmrs %0, " CNTHV_CTL_EL2 : "=r"(v) : : "memory"); return v; }
static void msr_cnthv_ctl(u64 v) { __asm__ volatile("msr " CNTHV_CTL_EL2 ", %0\n\tisb" : : "r"(v) : "memory"); }
static void msr_cnthv_cval(u64 v) { __asm__ volatile("msr " CNTHV_CVAL_EL2 ", %0\n\tisb" : : "r"(v) : "memory"); }

/* One EL2 timer by its condition: armed `delta` ahead of `count()`, polled.
 * Returns the ticks between CVAL and the first read that saw ISTATUS (or
 * ~0 when it never came), and counts reads that saw it before CVAL. */
static u64 el2_timer(int hv, u64 delta, u64 *early)
{
    u64 (*count)(void) = hv ? cntvct : cntpct; /* at EL2 with E2H: the EL2 views */
    u64 cval = count() + delta, start = count();
    if (hv) {
        msr_cnthv_cval(cval);
        msr_cnthv_ctl(CTL_ENABLE | CTL_IMASK);
    } else {
        write_sysreg(cnthp_cval_el2, cval);
        write_sysreg(cnthp_ctl_el2, CTL_ENABLE | CTL_IMASK);
        isb();
    }
    u64 late = ~0UL;
    *early = 0;
    while (count() - start < 20 * delta) {
        isb();
        u64 ctl = hv ? mrs_cnthv_ctl() : read_sysreg(cnthp_ctl_el2);
        u64 after = count();
        if (ctl & CTL_ISTATUS) {
            if (after < cval)
                (*early)++;
            else {
                late = after - cval;
                break;
            }
        }
    }
    if (hv)
        msr_cnthv_ctl(0);
    else
        write_sysreg(cnthp_ctl_el2, 0);
    return late;
}

/* The guest hypervisor's side of the nested timer: PPI 27 (or any other
 * IRQ) taken from the nested guest. */
void rt_lower_irq(struct exc_frame *f)
{
    (void)f;
    u32 iar = gic_ack();
    u32 intid = gic_intid(iar);
    if (intid >= 1020)
        return;
    if (intid == nested_intid) {
        /* The nested guest's virtual count. Not CNTVCT: at EL2 with E2H = 1
         * the virtual offset is 0 (measured: CNTVCT = CNTPCT here). */
        fwd_count_at = cntpct() - read_sysreg(cntvoff_el2);
        fwd_ctl = sysreg_get(CNTV_CTL_EL02);
        fwd_cval = sysreg_get(CNTV_CVAL_EL02);
        gic_eoi(iar);
        if (el2_forward_timer(nested_intid))
            fwd_lr_busy++;
        fwd_count++;
        return;
    }
    fwd_other++;
    gic_disable_irq(intid);
    gic_eoi(iar);
}

/* EL2 timer interrupts, taken at EL2 (vector 5, the runtime's table). */
static volatile u32 h_irqs[2];
static volatile u64 h_fired_at[2], h_ctl_at[2];

static void el2_timer_irq(u32 intid)
{
    int hv = intid == INTID_HVTIMER;
    u64 now = hv ? cntvct() : cntpct();
    u64 ctl = hv ? mrs_cnthv_ctl() : read_sysreg(cnthp_ctl_el2);
    if (h_irqs[hv]++ == 0) {
        h_fired_at[hv] = now;
        h_ctl_at[hv] = ctl;
    }
    if (hv)
        msr_cnthv_ctl(0);
    else {
        write_sysreg(cnthp_ctl_el2, 0);
        isb();
    }
}

/* One EL2 timer as an interrupt: armed `delta` ahead, unmasked, IRQs on;
 * waits in WFI up to 2000 deltas (and a loop count), then 5 deltas more. */
static void el2_timer_irq_check(int hv, u64 frq, u64 delta)
{
    const char *name = hv ? "CNTHV" : "CNTHP";
    u64 (*count)(void) = hv ? cntvct : cntpct;
    h_irqs[hv] = 0;
    u64 cval = count() + delta;
    if (hv) {
        msr_cnthv_cval(cval);
        msr_cnthv_ctl(CTL_ENABLE);
    } else {
        write_sysreg(cnthp_cval_el2, cval);
        write_sysreg(cnthp_ctl_el2, CTL_ENABLE);
        isb();
    }
    irq_enable();
    u64 start = count(), reads = 0;
    /* Waited for in WFI, as an operating system idles: it exits to the
     * host's KVM, which sleeps on the vCPU's timers (a busy loop without
     * exits sees CNTHV only at the next exit on a host without FEAT_ECV). */
    while (h_irqs[hv] == 0 && count() - start < 2000 * delta && ++reads < (1UL << 30))
        __asm__ volatile("wfi" : : : "memory");
    u64 stop = count();
    while (count() - stop < 5 * delta && ++reads < (1UL << 30))
        cpu_relax();
    irq_disable();
    if (hv)
        msr_cnthv_ctl(0);
    else
        write_sysreg(cnthp_ctl_el2, 0);
    u64 n = h_irqs[hv], fired = h_fired_at[hv], ctl = h_ctl_at[hv];
    uart_puts("el2_nested: ");
    uart_puts(name);
    uart_puts(" irq: irqs=");
    uart_putdec(n);
    uart_puts(" ctl_at_entry=");
    uart_puthex(ctl);
    uart_puts(" late_us=");
    uart_putdec(n && fired >= cval ? us_from_ticks(frq, fired - cval) : 0);
    uart_putc('\n');
    check_u(ARCH, n == 1, hv ? "el2_nested: EL2 virtual timer (CNTHV) IRQ at EL2 exactly once"
                       : "el2_nested: EL2 physical timer (CNTHP) IRQ at EL2 exactly once", "irqs", n);
    check_u(ARCH, n && fired >= cval && (ctl & CTL_ISTATUS),
            hv ? "el2_nested: EL2 virtual timer (CNTHV) IRQ not before CVAL, ISTATUS at entry"
               : "el2_nested: EL2 physical timer (CNTHP) IRQ not before CVAL, ISTATUS at entry",
            "late_us", n && fired >= cval ? us_from_ticks(frq, fired - cval) : ~0UL);
    check_u(ARCH, n == 1 && fired >= cval && fired - cval < ticks_from_us(frq, WFI_LATE_US),
            hv ? "el2_nested: EL2 virtual timer (CNTHV) IRQ, waited for in WFI, on time"
               : "el2_nested: EL2 physical timer (CNTHP) IRQ, waited for in WFI, on time",
            "late_us", n && fired >= cval ? us_from_ticks(frq, fired - cval) : ~0UL);
}

int main(void)
{
    u64 el = (read_sysreg(CurrentEL) >> 2) & 3;
    if (!check_u(VTVMM("el2"), el == 2, "el2_nested: the guest hypervisor starts at EL2", "el", el))
        return rt_status();
    u64 frq = cntfrq();
    if (frq == 0)
        frq = 1000000000UL;
    u64 hcr = read_sysreg(hcr_el2);
    uart_puts("el2_nested: hcr_el2=");
    uart_puthex(hcr);
    uart_puts(" cntvoff_el2=");
    uart_puthex(read_sysreg(cntvoff_el2));
    uart_puts(" cnthctl_el2=");
    uart_puthex(read_sysreg(cnthctl_el2));
    uart_putc('\n');
    /* The runtime set E2H if it was 0 (QEMU's TCG); vtvmm starts with it. */
    check_u(VTVMM("el2"), rt_el2_e2h_at_entry == 1, "el2_nested: HCR_EL2.E2H = 1 (VHE)", "e2h",
            rt_el2_e2h_at_entry);

    u64 early = 0, delta = ticks_from_us(frq, 1000);
    u64 late = el2_timer(0, delta, &early);
    check_u(ARCH, early == 0 && late != ~0UL, "el2_nested: EL2 physical timer (CNTHP) condition at CVAL",
            "late_us", late == ~0UL ? ~0UL : us_from_ticks(frq, late));
    late = el2_timer(1, delta, &early);
    check_u(ARCH, early == 0 && late != ~0UL, "el2_nested: EL2 virtual timer (CNTHV) condition at CVAL",
            "late_us", late == ~0UL ? ~0UL : us_from_ticks(frq, late));

    /* The EL2 timers as interrupts, taken at EL2: physical IRQs go to EL2
     * (IMO, FMO), the GIC set up from here. */
    write_sysreg(hcr_el2, (hcr | HCR_IMO | HCR_FMO) & ~HCR_TGE);
    isb();
    int gv = gic_init();
    nested_intid = rt_timer_ppi_virt();
    gic_enable_ppi(INTID_HPTIMER);
    gic_enable_ppi(INTID_HVTIMER);
    gic_enable_ppi(nested_intid);
    irq_set_handler(INTID_HPTIMER, el2_timer_irq);
    irq_set_handler(INTID_HVTIMER, el2_timer_irq);
    uart_puts("el2_nested: gic=v");
    uart_putdec((u64)gv);
    uart_puts(" ich_vtr_el2=");
    uart_puthex(sysreg_get(ICH_VTR_EL2));
    uart_puts(" nested_intid=");
    uart_putdec(nested_intid);
    uart_putc('\n');
    el2_timer_irq_check(0, frq, delta);
    el2_timer_irq_check(1, frq, delta);
    check_u(ARCH, irq_unexpected == 0 && irq_spurious == 0, "el2_nested: no unexpected IRQs at EL2",
            "unexpected", irq_unexpected + irq_spurious);

    /* The nested guest: its virtual counter offset, its access to the
     * physical counter and timer, its vectors and stack, EL1h. */
    u64 p = cntpct();
    nested_voff = p > NESTED_VOFF ? NESTED_VOFF : p / 2;
    el2_prepare_nested(nested_voff, nested_main, &nested_stack[sizeof(nested_stack)]);
    uart_puts("el2_nested: entering the nested guest (CNTVOFF_EL2=");
    uart_puthex(nested_voff);
    uart_puts(")\n");
    __asm__ volatile("eret" : : : "memory");
    __builtin_unreachable();
}
