/* vtime guests: what a guest hypervisor needs (vtvmm --el2, HCR_EL2.E2H
 * = 1): EL2 register names and bits the runtime does not name, entering a
 * nested guest at EL1, and giving it an interrupt through the GIC
 * virtualization interface (list register 0). Header-only. */
#ifndef VTGUEST_EL2_H
#define VTGUEST_EL2_H
#include "rt.h"
#include "timer.h"

#define HCR_RW      (1UL << 31)
#define HCR_TGE     (1UL << 27)
#define HCR_E2H     (1UL << 34)
#define HCR_FMO     (1UL << 3)
#define HCR_IMO     (1UL << 4)
#define CNTHCTL_EL1PCTEN (1UL << 10)   /* E2H = 1 layout */
#define CNTHCTL_EL1PTEN  (1UL << 11)
#define SPSR_EL1H_MASKED 0x3c5UL
#define INTID_HPTIMER 26               /* EL2 physical timer (CNTHP) */
#define INTID_HVTIMER 28               /* EL2 virtual timer (CNTHV) */

/* Encodings the assembler may not know by name. */
#define CNTHV_CTL_EL2  "S3_4_C14_C3_1"
#define CNTHV_CVAL_EL2 "S3_4_C14_C3_2"
#define VBAR_EL12      "S3_5_C12_C0_0"
#define CNTV_CTL_EL02  "S3_5_C14_C3_1"   /* the nested guest's EL1 virtual timer */
#define CNTV_CVAL_EL02 "S3_5_C14_C3_2"
#define ICH_HCR_EL2    "S3_4_C12_C11_0"
#define ICH_VTR_EL2    "S3_4_C12_C11_1"
#define ICH_VMCR_EL2   "S3_4_C12_C11_7"
#define ICH_LR0_EL2    "S3_4_C12_C12_0"
#define ICH_HCR_EN     1UL
#define ICH_VMCR_VENG1 (1UL << 1)
#define ICH_VMCR_VPMR(p) ((u64)(p) << 24)
#define ICH_LR_PENDING (1UL << 62)      /* state 01 (pending), HW 0 */
#define ICH_LR_GROUP1  (1UL << 60)
#define ICH_LR_PRIO(p) ((u64)(p) << 48)
#define ICH_LR_STATE   (3UL << 62)
#define LR_PRIORITY    0xa0u

#define sysreg_get(name) ({ u64 __v; __asm__ volatile("mrs %0, " name : "=r"(__v) : : "memory"); __v; })
#define sysreg_set(name, v) do { u64 __v = (u64)(v); __asm__ volatile("msr " name ", %0\n\tisb" : : "r"(__v) : "memory"); } while (0)

extern char vectors[];

/* Makes the eret that follows enter `entry` at EL1h (DAIF masked) as a
 * nested guest: CNTVOFF_EL2 = voff, EL1 may read the physical counter and
 * timer, this image's vectors (VBAR_EL12), the stack below `stack_top`,
 * the virtual CPU interface on (list register 0 empty, group 1, every
 * priority), HCR_EL2 = RW | E2H | IMO | FMO (no TGE, no stage 2). */
static inline void el2_prepare_nested(u64 voff, void (*entry)(void), void *stack_top)
{
    write_sysreg(cntvoff_el2, voff);
    write_sysreg(cnthctl_el2, read_sysreg(cnthctl_el2) | CNTHCTL_EL1PCTEN | CNTHCTL_EL1PTEN);
    __asm__ volatile("msr " VBAR_EL12 ", %0" : : "r"(vectors) : "memory");
    sysreg_set(ICH_LR0_EL2, 0);
    sysreg_set(ICH_VMCR_EL2, ICH_VMCR_VPMR(0xff) | ICH_VMCR_VENG1);
    sysreg_set(ICH_HCR_EL2, ICH_HCR_EN);
    u64 hcr = read_sysreg(hcr_el2);
    write_sysreg(hcr_el2, (hcr | HCR_RW | HCR_E2H | HCR_IMO | HCR_FMO) & ~HCR_TGE);
    write_sysreg(sp_el1, (u64)stack_top);
    write_sysreg(elr_el2, (u64)entry);
    write_sysreg(spsr_el2, SPSR_EL1H_MASKED);
    isb();
}

/* The nested guest's timer fired (its PPI reached EL2): masks it
 * (CNTV_CTL_EL02.IMASK; the nested guest's handler clears CTL) and makes
 * `intid` pending for the nested guest in list register 0. Returns 1 when
 * LR0 still held an interrupt (it is replaced). The caller EOIs the
 * physical interrupt. */
static inline int el2_forward_timer(u32 intid)
{
    sysreg_set(CNTV_CTL_EL02, sysreg_get(CNTV_CTL_EL02) | CTL_IMASK);
    int busy = (sysreg_get(ICH_LR0_EL2) & ICH_LR_STATE) != 0;
    sysreg_set(ICH_LR0_EL2, ICH_LR_PENDING | ICH_LR_GROUP1 | ICH_LR_PRIO(LR_PRIORITY) | intid);
    return busy;
}
#endif
