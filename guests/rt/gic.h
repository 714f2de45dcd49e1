/* Minimal GIC drivers: GICv3 (system-register CPU interface) and GICv2
 * (MMIO CPU interface), chosen at run time from ID_AA64PFR0_EL1.GIC. */
#ifndef VTGUEST_GIC_H
#define VTGUEST_GIC_H
#include "rt.h"

int gic_init(void);               /* returns 3 or 2 (the driver in use) */
/* A secondary CPU's own part (its redistributor or banked registers and
 * its CPU interface), once CPU 0's gic_init() has run. */
void gic_init_secondary(void);
/* SGI `intid` (0..15) to the CPU with Aff0 `cpu` (Aff1..3 zero). */
void gic_send_sgi(u32 cpu, u32 intid);
int gic_version(void);
/* Enable any SGI/PPI 0..31 on the calling CPU (priority 0xa0, group 1 on
 * GICv3): the timer INTIDs come from the DTB, so nothing here assumes
 * 27/30. Returns 0, or -1 (nothing done) for an INTID >= 32. */
int gic_enable_ppi(u32 intid);
/* Enable SPI `intid` (32..1019), level-sensitive, routed to the calling
 * CPU. Returns 0, or -1 for an INTID outside the SPI range. */
int gic_enable_spi(u32 intid);
void gic_disable_irq(u32 intid);
u32 gic_ack(void);                /* raw acknowledge value (IAR) */
u32 gic_intid(u32 iar);           /* INTID part of an IAR value */
void gic_eoi(u32 iar);            /* pass the raw IAR value back */

#endif
