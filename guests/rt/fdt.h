/* A small, bounds-checked reader for flattened device trees (DTB v17),
 * just enough to find the generic timer's interrupts and the PSCI conduit. */
#ifndef VTGUEST_FDT_H
#define VTGUEST_FDT_H
#include "rt.h"

#define FDT_MAGIC       0xd00dfeedu
#define FDT_BEGIN_NODE  1u
#define FDT_END_NODE    2u
#define FDT_PROP        3u
#define FDT_NOP         4u
#define FDT_END         9u

#define FDT_MAX_SIZE    (2u << 20)   /* refuse blobs larger than 2 MiB */
#define FDT_MAX_DEPTH   32

/* Look for the timer node (compatible "arm,armv8-timer", or named
 * "timer"/"timer@...") in the DTB at `dtb` and return its EL1 virtual and
 * physical timer INTIDs (PPI number + 16). Returns 0 on success; on any
 * problem returns -1, leaves *virt / *phys alone and points *why at a
 * short reason. Never faults on a malformed blob: every read is bounds-
 * checked, and the first and last word are read with the runtime's
 * expected-fault guard (the address may not be RAM at all). */
int fdt_timer_intids(uptr dtb, u32 *virt, u32 *phys, const char **why);

/* The PSCI conduit the DTB at `dtb` names: the `method` of its PSCI node
 * (compatible "arm,psci*", or named "psci"/"psci@..."). Returns 0 and sets
 * *smc (1 for "smc", 0 for "hvc"); on any problem returns -1, leaves *smc
 * alone and points *why at a short reason. Bounds-checked as above. */
int fdt_psci_smc(uptr dtb, int *smc, const char **why);

/* The DTB's address: x0 at entry, or the RT_TEST_DTB_ADDR build's (see
 * guests/README.md) when x0 was 0; 0 for none. */
uptr rt_dtb_addr(void);

#endif
