/*
 * vtime guests: entry point, exception vectors and the SMCCC wrappers.
 *
 * Entry contract: EL1h, MMU off, DAIF masked, x0 = device-tree address
 * (0 under QEMU for a bare ELF). It is kept in x19 from the second
 * instruction on and handed to rt_main, which stores it in rt_dtb (a .bss
 * variable, so not before .bss is cleared). fdt.c validates it before use.
 *
 * A guest hypervisor may start at EL2h instead. The runtime needs VHE
 * there (HCR_EL2.E2H = 1, so that the EL1 register names below reach the
 * EL2 registers): vtvmm --el2 and KVM start it so, QEMU's TCG with
 * E2H = 0. So at EL2 _start sets E2H before anything else touches an
 * EL1 name, and hands rt_main what E2H was at entry (x20; 0 at EL1).
 */

#define FRAME_SIZE  272     /* x0..x30 (248), ELR (8), SPSR (8), pad (8) */
#define FRAME_ELR   248
#define FRAME_SPSR  256

    .section .text.boot, "ax"
    .global _start
    .type _start, %function
_start:
    msr     daifset, #0xf
    mov     x19, x0                 /* keep the DTB pointer */
    mov     x20, #0                 /* HCR_EL2.E2H at entry */
    mrs     x1, CurrentEL
    cmp     x1, #(2 << 2)
    b.ne    4f
    mrs     x1, hcr_el2
    ubfx    x20, x1, #34, #1
    orr     x1, x1, #(1 << 34)      /* E2H: stays 0 without FEAT_VHE */
    msr     hcr_el2, x1
    isb
4:
    ldr     x1, =__stack_top
    mov     sp, x1

    /* Clear .bss (includes the stack, which is still unused). */
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1]
    add     x1, x1, #8
    b       1b
2:
    ldr     x1, =vectors
    msr     vbar_el1, x1
    isb

    mov     x0, x19
    mov     x1, x20
    bl      rt_main                 /* (dtb, e2h_at_entry); never returns */
3:  wfi
    b       3b
    .ltorg
    .size _start, . - _start

/*
 * Vector table: 16 entries of 0x80 bytes, 2 KiB aligned. Every entry
 * saves x0/x1, puts its index in x0 and branches to the common path,
 * which saves the rest and calls rt_exception(kind, frame).
 */
    .macro VENTRY kind
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exc_common
    .endm

    .section .text.vectors, "ax"
    .balign 2048
    .global vectors
vectors:
    VENTRY 0    /* EL1t sync   */
    VENTRY 1    /* EL1t irq    */
    VENTRY 2    /* EL1t fiq    */
    VENTRY 3    /* EL1t serror */
    VENTRY 4    /* EL1h sync   */
    VENTRY 5    /* EL1h irq    */
    VENTRY 6    /* EL1h fiq    */
    VENTRY 7    /* EL1h serror */
    VENTRY 8    /* EL0 64 sync */
    VENTRY 9
    VENTRY 10
    VENTRY 11
    VENTRY 12   /* EL0 32 sync */
    VENTRY 13
    VENTRY 14
    VENTRY 15

    .balign 0x80
exc_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    str     x30, [sp, #240]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #FRAME_ELR]

    mov     x1, sp
    bl      rt_exception            /* (kind, frame); may change frame ELR */

    ldp     x2, x3, [sp, #FRAME_ELR]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    add     sp, sp, #FRAME_SIZE
    eret

/*
 * u64 smccc_hvc(u64 fid, u64 a1, u64 a2, u64 a3)
 * u64 smccc_smc(u64 fid, u64 a1, u64 a2, u64 a3)
 * SMCCC call through HVC #0 or SMC #0. The callee may clobber x0-x17; all
 * of them are caller-saved in the AAPCS64, so a plain function call is
 * enough. Returns x0.
 */
    .text
    .global smccc_hvc
    .type smccc_hvc, %function
smccc_hvc:
    hvc     #0
    ret
    .size smccc_hvc, . - smccc_hvc

    .global smccc_smc
    .type smccc_smc, %function
smccc_smc:
    smc     #0
    ret
    .size smccc_smc, . - smccc_smc

/*
 * void rt_secondary_entry(void): PSCI CPU_ON entry point for secondary
 * CPUs (see rt_cpu_on in runtime.c). Entered at EL1 with the MMU off and
 * x0 = context id = the CPU's slot (1..RT_MAX_CPUS-1). Takes its stack
 * from rt_secondary_sp[slot] (never CPU 0's stack), installs the same
 * vector table and calls rt_secondary_main(slot), which does not return.
 * A bad slot or a missing stack parks the CPU in a wfe loop.
 */
#define RT_MAX_CPUS 4               /* keep in sync with rt.h */
    .text
    .global rt_secondary_entry
    .type rt_secondary_entry, %function
    .balign 8
rt_secondary_entry:
    msr     daifset, #0xf
    msr     spsel, #1
    cmp     x0, #RT_MAX_CPUS
    b.hs    9f
    cbz     x0, 9f
    ldr     x1, =rt_secondary_sp
    ldr     x2, [x1, x0, lsl #3]
    cbz     x2, 9f
    mov     sp, x2
    ldr     x1, =vectors
    msr     vbar_el1, x1
    isb
    bl      rt_secondary_main       /* (slot); never returns */
9:  wfe
    b       9b
    .ltorg
    .size rt_secondary_entry, . - rt_secondary_entry
