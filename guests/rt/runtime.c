/* vtime guests: C side of start-up, exit, exceptions and result lines. */
#include "rt.h"
#include "fdt.h"
#include "gic.h"

u64 rt_dtb;
u64 rt_el2_e2h_at_entry;
int rt_psci_smc;
volatile int rt_fault_expected;
volatile int rt_fault_taken;
volatile u64 rt_fault_esr;

int rt_probe32(uptr addr, u32 *out)
{
    u32 v = 0;
    rt_fault_taken = 0;
    rt_fault_expected = 1;
    __asm__ volatile("ldr %w0, [%1]" : "+r"(v) : "r"(addr) : "memory");
    rt_fault_expected = 0;
    *out = v;
    return !rt_fault_taken;
}
volatile u32 irq_unexpected;
volatile u32 irq_spurious;

static irq_handler_t irq_handlers[64];
static int rt_failures;
static volatile int exc_depth;

void *memset(void *d, int c, unsigned long n)
{
    volatile u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, unsigned long n)
{
    volatile u8 *p = d;
    const volatile u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

u64 rt_psci(u64 fid, u64 a1, u64 a2, u64 a3)
{
    return rt_psci_smc ? smccc_smc(fid, a1, a2, a3) : smccc_hvc(fid, a1, a2, a3);
}

void psci_system_off(void)
{
    rt_psci(PSCI_SYSTEM_OFF, 0, 0, 0);
    for (;;)
        __asm__ volatile("wfi");
}

void guest_exit(int code)
{
    __asm__ volatile("msr daifset, #0xf" : : : "memory");
    uart_puts("vtguest: exit ");
    uart_putdec((u32)code);
    uart_putc('\n');
    /* Under QEMU the finisher address is unassigned and the store takes a
     * synchronous external abort: skip it and fall through to PSCI. */
    rt_fault_expected = 1;
    mmio_write32(FINISHER_BASE, (u32)code);
    rt_fault_expected = 0;
    psci_system_off();
}

/* ---- secondary CPUs ---- */
u64 rt_secondary_sp[RT_MAX_CPUS];
static rt_secondary_fn_t rt_secondary_fns[RT_MAX_CPUS];

s64 rt_cpu_on(u64 mpidr, u32 slot, void *stack_top, rt_secondary_fn_t fn)
{
    if (slot == 0 || slot >= RT_MAX_CPUS || stack_top == NULL)
        return -2;                               /* PSCI INVALID_PARAMETERS */
    rt_secondary_sp[slot] = (u64)stack_top & ~15UL;
    rt_secondary_fns[slot] = fn;
    dsb_sy();
    return (s64)rt_psci(PSCI_CPU_ON, mpidr, (u64)rt_secondary_entry, slot);
}

void rt_cpu_park(void)
{
    __asm__ volatile("msr daifset, #0xf" : : : "memory");
    dsb_sy();
    rt_psci(PSCI_CPU_OFF, 0, 0, 0);              /* returns only on error */
    for (;;)
        __asm__ volatile("wfe" : : : "memory");
}

void rt_secondary_main(u64 slot);                /* called from start.S */
void rt_secondary_main(u64 slot)
{
    rt_secondary_fn_t fn = rt_secondary_fns[slot];
    if (fn)
        fn((u32)slot);
    rt_cpu_park();
}

/* A guest that may run at EL2 (a guest hypervisor, vtvmm --el2) defines
 * rt_el2_ok as 1; every other one needs EL1. */
extern const int rt_el2_ok __attribute__((weak));

/* The PSCI conduit: the device tree's, else (no DTB: QEMU's bare ELF)
 * HVC at EL1 and SMC at EL2, as QEMU's virt machine chooses. */
static void psci_conduit_init(u64 el)
{
    rt_psci_smc = el == 2;
    uptr addr = rt_dtb_addr();
    if (addr == 0)
        return;
    const char *why = "?";
    int smc;
    if (fdt_psci_smc(addr, &smc, &why) == 0) {
        rt_psci_smc = smc;
        return;
    }
    uart_puts("psci: dtb at ");
    uart_puthex(addr);
    uart_puts(" ");
    uart_puts(why);
    uart_puts(rt_psci_smc ? ", using smc\n" : ", using hvc\n");
}

void rt_main(u64 dtb, u64 e2h_at_entry)
{
    rt_dtb = dtb;
    rt_el2_e2h_at_entry = e2h_at_entry;
    u64 el = (read_sysreg(CurrentEL) >> 2) & 3;
    psci_conduit_init(el);
    if (el != 1 && !(el == 2 && &rt_el2_ok != NULL && rt_el2_ok)) {
        uart_puts("vtguest: started at EL");
        uart_putdec(el);
        uart_puts(", need EL1\n");
        guest_exit(EXIT_BAD_EL);
    }
    if (el == 2 && ((read_sysreg(hcr_el2) >> 34) & 1) == 0) {
        uart_puts("vtguest: at EL2 without VHE (HCR_EL2.E2H stays 0)\n");
        guest_exit(EXIT_BAD_EL);
    }
    guest_exit(main());
}

void irq_set_handler(u32 intid, irq_handler_t h)
{
    if (intid < sizeof(irq_handlers) / sizeof(irq_handlers[0]))
        irq_handlers[intid] = h;
}

static void irq_dispatch(void)
{
    u32 iar = gic_ack();
    u32 intid = gic_intid(iar);
    if (intid >= 1020) {
        irq_spurious++;
        return;
    }
    irq_handler_t h = intid < sizeof(irq_handlers) / sizeof(irq_handlers[0]) ? irq_handlers[intid] : NULL;
    if (h) {
        h(intid);
    } else {
        irq_unexpected++;
        gic_disable_irq(intid);   /* keep an unknown level source from storming */
    }
    gic_eoi(iar);
}

static const char *const exc_names[16] = {
    "EL1t sync", "EL1t irq", "EL1t fiq", "EL1t serror",
    "EL1h sync", "EL1h irq", "EL1h fiq", "EL1h serror",
    "EL0/64 sync", "EL0/64 irq", "EL0/64 fiq", "EL0/64 serror",
    "EL0/32 sync", "EL0/32 irq", "EL0/32 fiq", "EL0/32 serror",
};

/* Hooks a guest hypervisor may define (rt.h); without them a lower-EL
 * exception is unexpected, as it always is at EL1. */
void rt_lower_irq(struct exc_frame *f) __attribute__((weak));
void rt_lower_sync(u64 esr, struct exc_frame *f) __attribute__((weak));

void rt_exception(u64 kind, struct exc_frame *f)
{
    if (kind == 5) {
        irq_dispatch();
        return;
    }
    if (kind == 9 && rt_lower_irq) {
        rt_lower_irq(f);
        return;
    }
    u64 esr = read_sysreg(esr_el1);
    if (kind == 8 && rt_lower_sync) {
        rt_lower_sync(esr, f);
        return;
    }
    if (kind == 4 && rt_fault_expected) {
        rt_fault_expected = 0;
        rt_fault_taken = 1;
        rt_fault_esr = esr;
        f->elr += 4;
        return;
    }
    rt_fatal_exception(exc_names[kind & 15], esr, f);
}

void rt_fatal_exception(const char *what, u64 esr, struct exc_frame *f)
{
    if (++exc_depth > 2)
        psci_system_off();
    uart_puts("vtguest: unexpected exception ");
    uart_puts(what);
    uart_puts(" esr=");
    uart_puthex(esr);
    uart_puts(" elr=");
    uart_puthex(f->elr);
    uart_puts(" far=");
    uart_puthex(read_sysreg(far_el1));
    uart_putc('\n');
    guest_exit(EXIT_EXCEPTION);
}

static const char *line_tag;       /* of the line check_begin started */

static void line_start(check_tag tag, int cond, const char *what)
{
    if (!cond)
        rt_failures++;
    line_tag = tag.name;
    uart_puts(cond ? "ok - " : "not ok - ");
    uart_puts(what);
}

void check_end(void)
{
    uart_puts(" # ");
    uart_puts(line_tag ? line_tag : "untagged");
    uart_putc('\n');
    line_tag = NULL;
}

static void line_field(const char *key, char base, u64 v)
{
    uart_puts(": ");
    uart_puts(key);
    uart_putc('=');
    if (base == 'x')
        uart_puthex(v);
    else if (base == 's')
        uart_putsdec((s64)v);
    else
        uart_putdec(v);
    check_end();
}

int check_begin(check_tag tag, int cond, const char *what)
{
    line_start(tag, cond, what);
    return cond;
}

int check(check_tag tag, int cond, const char *what)
{
    line_start(tag, cond, what);
    check_end();
    return cond;
}

int check_u(check_tag tag, int cond, const char *what, const char *key, u64 v)
{
    line_start(tag, cond, what);
    line_field(key, 'u', v);
    return cond;
}

int check_s(check_tag tag, int cond, const char *what, const char *key, s64 v)
{
    line_start(tag, cond, what);
    line_field(key, 's', (u64)v);
    return cond;
}

int check_x(check_tag tag, int cond, const char *what, const char *key, u64 v)
{
    line_start(tag, cond, what);
    line_field(key, 'x', v);
    return cond;
}

int rt_status(void)
{
    return rt_failures ? EXIT_FAIL : EXIT_OK;
}
