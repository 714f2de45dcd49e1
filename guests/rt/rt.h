/* vtime guests: the tiny freestanding runtime shared by all programs. */
#ifndef VTGUEST_RT_H
#define VTGUEST_RT_H

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long u64;
typedef int s32;
typedef long s64;
typedef unsigned long uptr;

#define NULL ((void *)0)

/* ---- platform addresses (QEMU virt layout, copied by vtvmm) ---- */
#define RAM_BASE        0x40000000UL
#define UART_BASE       0x09000000UL
#define FINISHER_BASE   0x090c0000UL
#define PVTIME_BASE     0x090a0000UL
#define DEBUGPRINT_BASE 0x090d0000UL   /* vtvmm's bulk print device (not in QEMU) */
#define TRACEMARKER_BASE 0x090e0000UL  /* vtvmm's trace marker (not in QEMU) */
#define GICD_BASE       0x08000000UL
#define GICC_BASE       0x08010000UL
#define GICR_BASE       0x080A0000UL
#define GICR_STRIDE     0x20000UL

/* ---- exit codes ---- */
#define EXIT_OK         0
#define EXIT_FAIL       1   /* at least one check failed */
#define EXIT_BAD_EL     2   /* not started at EL1 */
#define EXIT_EXCEPTION  3   /* unexpected exception */

/* ---- MMIO: single, non-writeback accesses (KVM can only emulate
 * MMIO instructions that report a valid syndrome). ---- */
static inline void mmio_write32(uptr addr, u32 v)
{
    __asm__ volatile("str %w0, [%1]" : : "rZ"(v), "r"(addr) : "memory");
}
static inline u32 mmio_read32(uptr addr)
{
    u32 v;
    __asm__ volatile("ldr %w0, [%1]" : "=r"(v) : "r"(addr) : "memory");
    return v;
}
static inline u64 mmio_read64(uptr addr)
{
    u64 v;
    __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(addr) : "memory");
    return v;
}

/* ---- system registers ---- */
#define read_sysreg(r) ({ u64 __v; __asm__ volatile("mrs %0, " #r : "=r"(__v) : : "memory"); __v; })
#define write_sysreg(r, v) do { u64 __v = (u64)(v); __asm__ volatile("msr " #r ", %x0" : : "rZ"(__v) : "memory"); } while (0)
static inline void isb(void) { __asm__ volatile("isb" : : : "memory"); }
static inline void dsb_sy(void) { __asm__ volatile("dsb sy" : : : "memory"); }
static inline void irq_enable(void) { __asm__ volatile("msr daifclr, #2" : : : "memory"); }
static inline void irq_disable(void) { __asm__ volatile("msr daifset, #2" : : : "memory"); }
static inline void cpu_relax(void) { __asm__ volatile("yield" : : : "memory"); }

static inline u32 cpu_index(void) { return (u32)(read_sysreg(mpidr_el1) & 0xff); }

/* ---- uart.c ---- */
void uart_putc(char c);
void uart_puts(const char *s);
void uart_putdec(u64 v);
void uart_putsdec(s64 v);
void uart_puthex(u64 v);          /* "0x" + lower-case hex, no leading zeros */
/* Writes v in lower-case hex, no prefix, no leading zeros, at out (at most
 * 16 characters, no NUL); returns the end. */
char *rt_format_hex(char *out, u64 v);
/* Writes v in decimal at out, zero-padded to `width` digits (at most 24
 * characters, no NUL); returns the end. */
char *rt_format_dec(char *out, u64 v, int width);
/* Prints len bytes at once through vtvmm's bulk print device (one VM exit
 * per 64 KiB), or byte by byte through the UART where there is no such
 * device (QEMU). */
void rt_bulk_print(const char *buf, u64 len);

/* ---- psci / smccc ---- */
u64 smccc_hvc(u64 fid, u64 a1, u64 a2, u64 a3);   /* start.S */
u64 smccc_smc(u64 fid, u64 a1, u64 a2, u64 a3);   /* start.S */
/* A PSCI call through the platform's conduit (rt_psci_smc): the device
 * tree's /psci method; with no DTB (QEMU's bare ELF), HVC at EL1 and SMC
 * at EL2, as QEMU's virt machine chooses. vtvmm's own services (PV time,
 * the el2_* programs' calls to their guest hypervisor) use smccc_hvc. */
u64 rt_psci(u64 fid, u64 a1, u64 a2, u64 a3);
extern int rt_psci_smc;
#define PSCI_SYSTEM_OFF    0x84000008UL
#define PSCI_SYSTEM_RESET  0x84000009UL
#define PSCI_CPU_ON        0xC4000003UL
#define PSCI_CPU_OFF       0x84000002UL
#define SMCCC_ARCH_FEATURES 0x80000001UL
#define PV_TIME_FEATURES   0xC5000020UL
#define PV_TIME_ST         0xC5000021UL
void psci_system_off(void) __attribute__((noreturn));

/* ---- runtime.c ---- */
extern u64 rt_dtb;                         /* x0 at entry */
/* HCR_EL2.E2H as the guest found it at EL2 (0 at EL1); start.S sets it. */
extern u64 rt_el2_e2h_at_entry;
void guest_exit(int code) __attribute__((noreturn));

/* Exception frame pushed by start.S. */
struct exc_frame {
    u64 x[31];
    u64 elr;
    u64 spsr;
    u64 pad;
};

/* Guest-hypervisor hooks (a guest at EL2 with a nested guest below it).
 * With HCR_EL2.E2H = 1 the runtime's EL1 register names reach the EL2
 * registers, so its vector table serves EL2: an IRQ taken from the lower
 * EL (vector 9) calls rt_lower_irq(frame), a synchronous exception from
 * it (vector 8, e.g. an HVC: ESR_EL2.EC 0x16, ELR already past the HVC)
 * calls rt_lower_sync(ESR_EL2, frame). A guest defines them to get them;
 * without a definition these vectors stay unexpected exceptions (as at
 * EL1, where they are EL0's). The frame holds the nested guest's x0..x30,
 * and ELR/SPSR are its return state: the hook may change them, and they
 * are written back before the eret. Hooks run with DAIF as the exception
 * left it (IRQs masked); one that unmasks IRQs must mask them again before
 * returning, since the restore of ELR/SPSR is not reentrant. */
void rt_lower_irq(struct exc_frame *f);
void rt_lower_sync(u64 esr, struct exc_frame *f);
/* Reports an exception nobody handles ("vtguest: unexpected exception
 * WHAT esr= elr= far=") and exits the guest with EXIT_EXCEPTION. */
void rt_fatal_exception(const char *what, u64 esr, struct exc_frame *f) __attribute__((noreturn));

/* Expected-fault fixup: set rt_fault_expected, do ONE access that may
 * fault; a synchronous exception then skips the instruction, clears the
 * flag and records ESR in rt_fault_esr. Check rt_fault_taken after. */
extern volatile int rt_fault_expected;
extern volatile int rt_fault_taken;
extern volatile u64 rt_fault_esr;
/* A 32-bit load that may fault (skipped as above): 1 if it worked. */
int rt_probe32(uptr addr, u32 *out);

/* IRQ dispatch: handlers run with IRQs masked, after gic_ack and before
 * gic_eoi; a timer handler must drop the line (IMASK, disable or
 * re-arm) before returning. */
typedef void (*irq_handler_t)(u32 intid);
void irq_set_handler(u32 intid, irq_handler_t h);
extern volatile u32 irq_unexpected;      /* IRQs with no handler */
extern volatile u32 irq_spurious;        /* acks returning 1020..1023 */

/* What a check tests (guests/README.md, "Conformance kit"): ARCH, a rule
 * of the Arm architecture or of the Arm specifications the virt machine
 * follows (generic timer, GIC, PSCI, PL011), which any VMM must keep;
 * VTVMM("choice"), a device, a service or a choice of vtvmm's where the
 * architecture allows others (the choice is a fixed word, a string literal:
 * one-offset, pvtime, trace-marker, reset-keeps-time, el2). Every check
 * takes one, so an untagged check does not compile. */
typedef struct { const char *name; } check_tag;
#define ARCH          ((check_tag){ "arch" })
#define VTVMM(choice) ((check_tag){ "vtvmm:" choice })

/* Result lines: "ok - <what>[: key=value...] # <tag>", or "not ok - ...".
 * The tag ends the line, after all the fields, so a `sed 's/.*key=...'`
 * or a grep for the start of a line reads it as before. Each returns cond;
 * failures are counted for rt_status(). `what` is "<program>: <name>",
 * and a name never ends in ": key=value": the details are what follows the
 * last ": " when that starts with "key=". */
int check(check_tag tag, int cond, const char *what);
/* No newline: the caller prints ": key=value..." and ends the line with
 * check_end(), which prints the tag and the newline. */
int check_begin(check_tag tag, int cond, const char *what);
void check_end(void);
int check_u(check_tag tag, int cond, const char *what, const char *key, u64 v);
int check_s(check_tag tag, int cond, const char *what, const char *key, s64 v);
int check_x(check_tag tag, int cond, const char *what, const char *key, u64 v);
int rt_status(void);                     /* EXIT_OK or EXIT_FAIL */

/* Secondary CPUs. rt_cpu_on() records the stack and the function for
 * `slot` (1..RT_MAX_CPUS-1), then calls PSCI CPU_ON(mpidr,
 * rt_secondary_entry, context id = slot) and returns its result (0 on
 * success, a negative PSCI error otherwise; -2 for a bad slot). The new
 * CPU runs fn(slot) on its own stack with DAIF masked and the runtime's
 * vector table, then parks (rt_cpu_park). Secondaries must not print or
 * call guest_exit: that is CPU 0's job. */
#define RT_MAX_CPUS 4                            /* keep in sync with start.S */
typedef void (*rt_secondary_fn_t)(u32 slot);
extern u64 rt_secondary_sp[RT_MAX_CPUS];         /* read by start.S */
void rt_secondary_entry(void);                   /* start.S */
s64 rt_cpu_on(u64 mpidr, u32 slot, void *stack_top, rt_secondary_fn_t fn);
void rt_cpu_park(void) __attribute__((noreturn)); /* PSCI CPU_OFF, else wfe forever */

/* Program entry, provided by each guest. */
int main(void);

void *memset(void *d, int c, unsigned long n);
void *memcpy(void *d, const void *s, unsigned long n);

#endif
