/* ipi_storm: CPU 0 sends CPU 1 a stream of SGIs, one at a time, and waits
 * for each to be taken before sending the next; none may be lost.
 *
 * Under the user-space irqchip every SGI is a GICD_SGIR write on CPU 0's
 * vCPU thread that raises CPU 1's interrupt line, while CPU 1's vCPU is
 * in KVM_RUN or sleeping in WFI in it; CPU 1's acknowledge and EOI (its
 * own thread) lower the line again. This is the path of a Linux guest's
 * IPIs. A raised line that KVM drops while the vCPU is being loaded would
 * leave CPU 1 deaf for good: the wait below then times out and says at
 * which SGI. CPU 1 alternates between waiting in WFI (each wake-up loads
 * its vCPU again) and spinning, so both states meet the raises.
 *
 * Prints "ipi_storm: sent=N taken=N elapsed_ticks=T" and checks. */
#include "rt/rt.h"
#include "rt/gic.h"
#include "rt/timer.h"

#define N_SGIS     4000u
#define SGI        1u
#define STACK_SIZE 0x4000u

static u8 stack1[STACK_SIZE] __attribute__((aligned(16)));
static volatile u32 alive;
static volatile u32 taken;
static volatile u32 stop;
static volatile u32 wrong_cpu;

static void sgi_irq(u32 intid)
{
    (void)intid;
    if (cpu_index() != 1)
        wrong_cpu++;
    taken++;
    dsb_sy();
}

static void secondary(u32 slot)
{
    (void)slot;
    gic_init_secondary();
    gic_enable_ppi(SGI);
    irq_enable();
    alive = 1;
    dsb_sy();
    while (!stop) {
        if (taken & 1)
            __asm__ volatile("wfi" : : : "memory");
        else
            cpu_relax();
    }
    irq_disable();
}

int main(void)
{
    u64 frq = cntfrq();
    if (frq == 0)
        frq = 1000000000UL;
    int v = gic_init();
    irq_set_handler(SGI, sgi_irq);
    s64 on = rt_cpu_on(1, 1, &stack1[STACK_SIZE], secondary);
    uart_puts("ipi_storm: gic=v");
    uart_putdec((u64)v);
    uart_puts(" cpu_on=");
    uart_putsdec(on);
    uart_putc('\n');
    if (!check_s(ARCH, on == 0 && wait_flag(&alive, 1, 2 * frq), "ipi_storm: CPU 1 came up", "cpu_on", on))
        return rt_status();

    u64 t0 = cntvct(), slowest = 0;
    u32 sent = 0, stalled_at = 0;
    for (u32 i = 0; i < N_SGIS; i++) {
        u64 s = cntvct();
        gic_send_sgi(1, SGI);
        sent++;
        /* 2 s: an SGI takes about a millisecond in the emulated lab. */
        if (!wait_flag(&taken, i + 1, 2 * frq)) {
            stalled_at = i + 1;
            break;
        }
        u64 d = cntvct() - s;
        if (d > slowest)
            slowest = d;
    }
    u64 elapsed = cntvct() - t0;
    spin_ticks(ticks_from_us(frq, 5000)); /* nothing more may come */
    u32 final = taken;
    stop = 1;
    dsb_sy();
    gic_send_sgi(1, SGI); /* out of a WFI */

    uart_puts("ipi_storm: sent=");
    uart_putdec(sent);
    uart_puts(" taken=");
    uart_putdec(final);
    uart_puts(" elapsed_ticks=");
    uart_putdec(elapsed);
    uart_puts(" us_per_sgi=");
    uart_putdec(sent ? us_from_ticks(frq, elapsed) / sent : 0);
    uart_puts(" slowest_us=");
    uart_putdec(us_from_ticks(frq, slowest));
    uart_putc('\n');
    check_u(ARCH, stalled_at == 0, "ipi_storm: every SGI was taken within 2 s (stalled at SGI n)", "n",
            stalled_at);
    check_u(ARCH, final == N_SGIS, "ipi_storm: CPU 1 took each SGI once", "taken", final);
    check_u(ARCH, wrong_cpu == 0, "ipi_storm: only CPU 1 took them", "wrong_cpu", wrong_cpu);
    check_u(ARCH, irq_unexpected == 0, "ipi_storm: no unexpected interrupts", "unexpected", irq_unexpected);
    return rt_status();
}
