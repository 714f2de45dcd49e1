/* GICv3 / GICv2 drivers: private interrupts of the calling CPU, SPIs routed
 * to it, and SGIs to another CPU. */
#include "gic.h"

/* Distributor (both versions) */
#define GICD_CTLR        0x000
#define GICD_ISENABLER0  0x100
#define GICD_ICENABLER0  0x180
#define GICD_IGROUPR0    0x080
#define GICD_IPRIORITYR  0x400
#define GICD_ITARGETSR   0x800
#define GICD_ICFGR       0xC00
#define GICD_IROUTER     0x6000
#define GICD_CTLR_RWP    (1u << 31)
#define GICD_CTLR_ARE    (1u << 4)
#define GICD_CTLR_G1     (1u << 1)

/* GICv3 redistributor */
#define GICR_WAKER       0x014
#define WAKER_PSLEEP     (1u << 1)
#define WAKER_CASLEEP    (1u << 2)
#define GICR_SGI         0x10000
#define GICR_IGROUPR0    0x080
#define GICR_ISENABLER0  0x100
#define GICR_ICENABLER0  0x180
#define GICR_IPRIORITYR  0x400

/* GICv2 CPU interface */
#define GICC_CTLR        0x000
#define GICC_PMR         0x004
#define GICC_IAR         0x00C
#define GICC_EOIR        0x010

#define IRQ_PRIORITY     0xa0u

static int gic_ver;
/* The calling CPU's redistributor (GICv3). */
static uptr gicr_base(void) { return GICR_BASE + cpu_index() * GICR_STRIDE; }

int gic_version(void) { return gic_ver; }

static void wait_clear(uptr reg, u32 mask)
{
    for (u32 i = 0; i < 1000000 && (mmio_read32(reg) & mask); i++)
        cpu_relax();
}

/* Does the GICv3 system-register interface exist? PFR0.GIC says so; the
 * ICC_SRE_EL1 read is guarded in case a VMM advertises it wrongly. */
static int have_sysreg_gic(void)
{
    if (((read_sysreg(id_aa64pfr0_el1) >> 24) & 0xf) == 0)
        return 0;
    u64 v = 0;
    rt_fault_taken = 0;
    rt_fault_expected = 1;
    __asm__ volatile("mrs %0, icc_sre_el1" : "+r"(v) : : "memory");
    rt_fault_expected = 0;
    return !rt_fault_taken;
}

static void set_priority(uptr ipriorityr, u32 intid)
{
    uptr reg = ipriorityr + (intid & ~3u);
    u32 shift = (intid & 3) * 8;
    u32 v = mmio_read32(reg);
    v = (v & ~(0xffu << shift)) | (IRQ_PRIORITY << shift);
    mmio_write32(reg, v);
}

static void v3_init_distributor(void)
{
    /* Affinity routing, then group 1. */
    mmio_write32(GICD_BASE + GICD_CTLR, GICD_CTLR_ARE);
    wait_clear(GICD_BASE + GICD_CTLR, GICD_CTLR_RWP);
    mmio_write32(GICD_BASE + GICD_CTLR, GICD_CTLR_ARE | GICD_CTLR_G1);
    wait_clear(GICD_BASE + GICD_CTLR, GICD_CTLR_RWP);
}

static void v3_init_cpu(void)
{
    /* Redistributor of this CPU: wake it, all private IRQs group 1, off. */
    u32 w = mmio_read32(gicr_base() + GICR_WAKER);
    mmio_write32(gicr_base() + GICR_WAKER, w & ~WAKER_PSLEEP);
    wait_clear(gicr_base() + GICR_WAKER, WAKER_CASLEEP);
    mmio_write32(gicr_base() + GICR_SGI + GICR_ICENABLER0, 0xffffffffu);
    mmio_write32(gicr_base() + GICR_SGI + GICR_IGROUPR0, 0xffffffffu);

    /* CPU interface. */
    write_sysreg(icc_sre_el1, read_sysreg(icc_sre_el1) | 1);
    isb();
    write_sysreg(icc_pmr_el1, 0xff);
    write_sysreg(icc_igrpen1_el1, 1);
    isb();
}

static void v2_init_cpu(void)
{
    /* GICD_ICENABLER0 and the CPU interface are banked per CPU. */
    mmio_write32(GICD_BASE + GICD_ICENABLER0, 0xffffffffu);
    mmio_write32(GICC_BASE + GICC_PMR, 0xff);
    mmio_write32(GICC_BASE + GICC_CTLR, 1);
}

int gic_init(void)
{
    if (have_sysreg_gic()) {
        gic_ver = 3;
        v3_init_distributor();
        v3_init_cpu();
    } else {
        gic_ver = 2;
        mmio_write32(GICD_BASE + GICD_CTLR, 0);
        mmio_write32(GICD_BASE + GICD_CTLR, 1);
        v2_init_cpu();
    }
    return gic_ver;
}

void gic_init_secondary(void)
{
    if (gic_ver == 3)
        v3_init_cpu();
    else
        v2_init_cpu();
}

#define GICD_SGIR        0xF00

void gic_send_sgi(u32 cpu, u32 intid)
{
    dsb_sy();                           /* what the receiver is to see first */
    if (gic_ver == 3) {
        /* ICC_SGI1R_EL1: INTID [27:24], Aff1/2/3 0, TargetList bit Aff0. */
        u64 v = ((u64)(intid & 0xf) << 24) | (1UL << (cpu & 0xf));
        __asm__ volatile("msr S3_0_C12_C11_5, %0" : : "r"(v) : "memory");
        isb();
    } else {
        /* GICD_SGIR: TargetListFilter 0 (the list), CPUTargetList [23:16]. */
        mmio_write32(GICD_BASE + GICD_SGIR, (1u << (16 + (cpu & 7))) | (intid & 0xf));
    }
}

int gic_enable_ppi(u32 intid)
{
    if (intid >= 32)
        return -1;
    if (gic_ver == 3) {
        set_priority(gicr_base() + GICR_SGI + GICR_IPRIORITYR, intid);
        mmio_write32(gicr_base() + GICR_SGI + GICR_ISENABLER0, 1u << intid);
    } else {
        set_priority(GICD_BASE + GICD_IPRIORITYR, intid);
        mmio_write32(GICD_BASE + GICD_ISENABLER0, 1u << intid);
    }
    dsb_sy();
    return 0;
}

int gic_enable_spi(u32 intid)
{
    if (intid < 32 || intid >= 1020)
        return -1;
    u32 bit = 1u << (intid % 32);
    uptr word = 4 * (intid / 32);
    /* Level-sensitive: the config field's upper bit (edge) clear. */
    uptr cfg = GICD_BASE + GICD_ICFGR + 4 * (intid / 16);
    mmio_write32(cfg, mmio_read32(cfg) & ~(2u << (2 * (intid % 16))));
    set_priority(GICD_BASE + GICD_IPRIORITYR, intid);
    if (gic_ver == 3) {
        mmio_write32(GICD_BASE + GICD_IGROUPR0 + word, mmio_read32(GICD_BASE + GICD_IGROUPR0 + word) | bit);
        /* Affinity routing: to this CPU (Aff2.Aff1.Aff0; Aff3 is 0 here). */
        mmio_write32(GICD_BASE + GICD_IROUTER + 8 * intid, (u32)(read_sysreg(mpidr_el1) & 0xffffff));
        mmio_write32(GICD_BASE + GICD_IROUTER + 8 * intid + 4, 0);
    } else {
        uptr t = GICD_BASE + GICD_ITARGETSR + (intid & ~3u);
        u32 shift = (intid & 3) * 8;
        mmio_write32(t, (mmio_read32(t) & ~(0xffu << shift)) | ((1u << cpu_index()) << shift));
    }
    mmio_write32(GICD_BASE + GICD_ISENABLER0 + word, bit);
    dsb_sy();
    return 0;
}

void gic_disable_irq(u32 intid)
{
    if (intid >= 32) {
        mmio_write32(GICD_BASE + GICD_ICENABLER0 + 4 * (intid / 32), 1u << (intid % 32));
        return;
    }
    if (gic_ver == 3)
        mmio_write32(gicr_base() + GICR_SGI + GICR_ICENABLER0, 1u << intid);
    else
        mmio_write32(GICD_BASE + GICD_ICENABLER0, 1u << intid);
}

u32 gic_ack(void)
{
    if (gic_ver == 3) {
        u32 iar = (u32)read_sysreg(icc_iar1_el1);
        dsb_sy();
        return iar;
    }
    return mmio_read32(GICC_BASE + GICC_IAR);
}

u32 gic_intid(u32 iar)
{
    return gic_ver == 3 ? (iar & 0xffffff) : (iar & 0x3ff);
}

void gic_eoi(u32 iar)
{
    if (gic_ver == 3) {
        write_sysreg(icc_eoir1_el1, iar);
        isb();
    } else {
        mmio_write32(GICC_BASE + GICC_EOIR, iar);
    }
}
