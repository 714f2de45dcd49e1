/* Arm generic timer helpers: EL1 virtual and physical timers. */
#ifndef VTGUEST_TIMER_H
#define VTGUEST_TIMER_H
#include "rt.h"

#define TIMER_VIRT   0
#define TIMER_PHYS   1
/* Defaults (QEMU virt: PPI 11 and 14). The INTIDs in use come from the
 * device tree when there is one: rt_timer_ppi_virt/phys (fdt.c). */
#define INTID_VTIMER_DEFAULT 27
#define INTID_PTIMER_DEFAULT 30

/* INTIDs (16..31) of the EL1 virtual / physical timer: from the /timer
 * node of the DTB passed in x0 at entry, else the defaults above (a
 * malformed DTB prints a `timer: dtb ...` note first). The first call
 * parses the DTB; call it on CPU 0 before enabling IRQs. */
u32 rt_timer_ppi_virt(void);
u32 rt_timer_ppi_phys(void);
int rt_timer_ppi_from_dtb(void);   /* 1 if the INTIDs came from the DTB */

#define CTL_ENABLE   (1u << 0)
#define CTL_IMASK    (1u << 1)
#define CTL_ISTATUS  (1u << 2)

static inline u64 cntfrq(void) { return read_sysreg(cntfrq_el0) & 0xffffffffUL; }

static inline u64 cntvct(void)
{
    u64 v;
    __asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v) : : "memory");
    return v;
}
static inline u64 cntpct(void)
{
    u64 v;
    __asm__ volatile("isb; mrs %0, cntpct_el0" : "=r"(v) : : "memory");
    return v;
}

static inline u64 timer_count(int t) { return t == TIMER_VIRT ? cntvct() : cntpct(); }

static inline u32 timer_ctl(int t)
{
    return (u32)(t == TIMER_VIRT ? read_sysreg(cntv_ctl_el0) : read_sysreg(cntp_ctl_el0));
}
static inline void timer_set_ctl(int t, u32 v)
{
    if (t == TIMER_VIRT)
        write_sysreg(cntv_ctl_el0, v);
    else
        write_sysreg(cntp_ctl_el0, v);
    isb();
}
static inline u64 timer_cval(int t)
{
    return t == TIMER_VIRT ? read_sysreg(cntv_cval_el0) : read_sysreg(cntp_cval_el0);
}
static inline void timer_set_cval(int t, u64 v)
{
    if (t == TIMER_VIRT)
        write_sysreg(cntv_cval_el0, v);
    else
        write_sysreg(cntp_cval_el0, v);
    isb();
}
/* TVAL is a signed 32-bit view of CVAL - count. */
static inline s32 timer_tval(int t)
{
    u64 v;
    isb();
    v = t == TIMER_VIRT ? read_sysreg(cntv_tval_el0) : read_sysreg(cntp_tval_el0);
    return (s32)(u32)v;
}
static inline void timer_set_tval(int t, s32 v)
{
    if (t == TIMER_VIRT)
        write_sysreg(cntv_tval_el0, (u64)(s64)v);
    else
        write_sysreg(cntp_tval_el0, (u64)(s64)v);
    isb();
}
static inline u32 timer_intid(int t) { return t == TIMER_VIRT ? rt_timer_ppi_virt() : rt_timer_ppi_phys(); }

/* Counter ticks <-> microseconds at CNTFRQ (no 128-bit arithmetic). */
static inline u64 ticks_from_us(u64 frq, u64 us)
{
    return (us / 1000000) * frq + (us % 1000000) * frq / 1000000;
}
static inline u64 us_from_ticks(u64 frq, u64 t)
{
    return (t / frq) * 1000000 + (t % frq) * 1000000 / frq;
}

/* Spin until *flag >= want or `timeout` virtual-counter ticks pass.
 * Returns 1 if the flag got there. */
static inline int wait_flag(volatile u32 *flag, u32 want, u64 timeout)
{
    u64 start = cntvct();
    while (*flag < want) {
        if (cntvct() - start >= timeout)
            return *flag >= want;
        cpu_relax();
    }
    return 1;
}
static inline void spin_ticks(u64 ticks)
{
    u64 start = cntvct();
    while (cntvct() - start < ticks)
        cpu_relax();
}

#endif
