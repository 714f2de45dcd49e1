/* el2_nested: a guest hypervisor (vtvmm --el2) with a nested guest.
 *
 * At vEL2 (VHE, HCR_EL2.E2H = 1) it checks its own two EL2 timers by
 * their condition (CNTHP against CNTPCT, CNTHV against the count it
 * compares with at EL2, polled with IMASK set), then sets CNTVOFF_EL2 to
 * NESTED_VOFF, lets EL1 read the physical counter and timer (CNTHCTL_EL2),
 * and enters a nested guest at EL1 (HCR_EL2: RW, E2H, no TGE, no stage 2)
 * with this image's own vectors (VBAR_EL12). The nested guest reads its
 * counters interleaved: each CNTVCT must lie in [CNTPCT before, CNTPCT
 * after] minus CNTVOFF_EL2, which is how the model composes a nested
 * vCPU's virtual count (host - VM offset - CNTVOFF_EL2) around the
 * physical one (host - VM offset). It then arms its EL1 virtual timer
 * 2 ms ahead and polls ISTATUS, which must not be set before CVAL and must
 * be set once the count passed it. The nested guest prints and exits the
 * VM itself (PL011 and finisher stores are MMIO at EL1 too).
 *
 * Interrupts are not delivered yet (no GIC list registers are used):
 * timers are checked by their condition only. */
#include "rt/rt.h"
#include "rt/timer.h"

const int rt_el2_ok = 1;

#define NESTED_VOFF 0x123456789UL  /* about 4.9 s at 1 GHz, 78 s at 62.5 MHz */
#define HCR_RW      (1UL << 31)
#define HCR_TGE     (1UL << 27)
#define HCR_E2H     (1UL << 34)
#define CNTHCTL_EL1PCTEN (1UL << 10) /* E2H = 1 layout */
#define CNTHCTL_EL1PTEN  (1UL << 11)
#define SPSR_EL1H_MASKED 0x3c5UL

static u8 nested_stack[0x4000] __attribute__((aligned(16)));
extern char vectors[];

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
    check_u(early == 0, "el2_nested: nested EL1 virtual timer: no ISTATUS before CVAL", "early", early);
    check_u(seen_at >= cval, "el2_nested: nested EL1 virtual timer: ISTATUS once CNTVCT passed CVAL",
            "late_us", seen_at ? us_from_ticks(frq, seen_at - cval) : 0);
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
        if ((v + NESTED_VOFF) - p0 > p1 - p0) /* v + CNTVOFF in [p0, p1], modulo 2^64 */
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
    uart_putdec(NESTED_VOFF);
    uart_puts(" best_window_ticks=");
    uart_putdec(best);
    uart_putc('\n');
    check_u(el == 1, "el2_nested: the nested guest runs at EL1", "el", el);
    check_u(viol == 0,
            "el2_nested: nested CNTVCT = CNTPCT - CNTVOFF_EL2 within the read window (2000 reads)",
            "violations", viol);
    nested_timer_check(frq);
    guest_exit(rt_status());
}

/* ---- the guest hypervisor, at EL2 ---- */

#define CNTHV_CTL_EL2  "S3_4_C14_C3_1"
#define CNTHV_CVAL_EL2 "S3_4_C14_C3_2"
#define VBAR_EL12      "S3_5_C12_C0_0"

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

int main(void)
{
    u64 el = (read_sysreg(CurrentEL) >> 2) & 3;
    if (!check_u(el == 2, "el2_nested: the guest hypervisor starts at EL2", "el", el))
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
    check_u((hcr & HCR_E2H) != 0, "el2_nested: HCR_EL2.E2H = 1 (VHE)", "e2h", (hcr >> 34) & 1);

    u64 early = 0, delta = ticks_from_us(frq, 1000);
    u64 late = el2_timer(0, delta, &early);
    check_u(early == 0 && late != ~0UL, "el2_nested: EL2 physical timer (CNTHP) condition at CVAL",
            "late_us", late == ~0UL ? ~0UL : us_from_ticks(frq, late));
    late = el2_timer(1, delta, &early);
    check_u(early == 0 && late != ~0UL, "el2_nested: EL2 virtual timer (CNTHV) condition at CVAL",
            "late_us", late == ~0UL ? ~0UL : us_from_ticks(frq, late));

    /* The nested guest: its virtual counter offset, its access to the
     * physical counter and timer, its vectors and stack, EL1h. */
    write_sysreg(cntvoff_el2, NESTED_VOFF);
    write_sysreg(cnthctl_el2, read_sysreg(cnthctl_el2) | CNTHCTL_EL1PCTEN | CNTHCTL_EL1PTEN);
    __asm__ volatile("msr " VBAR_EL12 ", %0" : : "r"(vectors) : "memory");
    write_sysreg(hcr_el2, (hcr | HCR_RW | HCR_E2H) & ~HCR_TGE);
    write_sysreg(sp_el1, (u64)&nested_stack[sizeof(nested_stack)]);
    write_sysreg(elr_el2, (u64)nested_main);
    write_sysreg(spsr_el2, SPSR_EL1H_MASKED);
    isb();
    uart_puts("el2_nested: entering the nested guest (CNTVOFF_EL2=");
    uart_puthex(NESTED_VOFF);
    uart_puts(")\n");
    __asm__ volatile("eret" : : : "memory");
    __builtin_unreachable();
}
