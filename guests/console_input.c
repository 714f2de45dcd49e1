/* console_input: the PL011's receive side, by interrupt. Enables the
 * UART's receiver and FIFO, unmasks its receive and receive-timeout
 * interrupts (SPI 1, INTID 33, as in QEMU virt), and sleeps in WFI; each
 * interrupt drains the FIFO. It counts the bytes and sums them until an
 * end-of-transmission byte (0x04) arrives, then prints
 *   console_input: bytes=<n> sum=<sum of the byte values> irqs=<n>
 * and exits 0, so a test that pipes a known input can check that every
 * byte arrived, in a known number, none lost. */
#include "rt/rt.h"
#include "rt/gic.h"

#define UART_DR   0x000
#define UART_FR   0x018
#define UART_LCRH 0x02c
#define UART_CR   0x030
#define UART_IMSC 0x038
#define UART_ICR  0x044
#define FR_RXFE   (1u << 4)
#define IM_RX     (1u << 4)
#define IM_RT     (1u << 6)
#define UART_INTID 33u
#define EOT       0x04u

static volatile u64 bytes, sum;
static volatile u32 irqs, done, other;

static void uart_irq(u32 intid)
{
    if (intid != UART_INTID) {
        other++;
        return;
    }
    irqs++;
    mmio_write32(UART_BASE + UART_ICR, IM_RX | IM_RT);
    while (!(mmio_read32(UART_BASE + UART_FR) & FR_RXFE)) {
        u32 b = mmio_read32(UART_BASE + UART_DR) & 0xff;
        if (b == EOT) {
            done = 1;
            continue;
        }
        if (!done) {
            bytes++;
            sum += b;
        }
    }
}

int main(void)
{
    gic_init();
    irq_set_handler(UART_INTID, uart_irq);
    if (gic_enable_spi(UART_INTID) != 0) {
        check_u(ARCH, 0, "console_input: SPI 33 enabled", "intid", UART_INTID);
        return rt_status();
    }
    mmio_write32(UART_BASE + UART_LCRH, (1u << 4) | (3u << 5));   /* FIFO, 8 bits */
    mmio_write32(UART_BASE + UART_IMSC, IM_RX | IM_RT);
    mmio_write32(UART_BASE + UART_CR, (1u << 0) | (1u << 8) | (1u << 9));   /* UARTEN TXE RXE */
    uart_puts("console_input: ready\n");
    /* WFI with interrupts masked still wakes on a pending one, which is then
     * taken when they are unmasked: no wake-up is missed between the check
     * and the WFI. */
    while (!done) {
        __asm__ volatile("wfi" : : : "memory");
        irq_enable();
        irq_disable();
    }
    uart_puts("console_input: bytes=");
    uart_putdec(bytes);
    uart_puts(" sum=");
    uart_putdec(sum);
    uart_puts(" irqs=");
    uart_putdec(irqs);
    uart_puts("\n");
    check_u(ARCH, other == 0, "console_input: no other interrupts", "other", other);
    check_u(ARCH, irqs > 0, "console_input: the input came by interrupt", "irqs", irqs);
    return rt_status();
}
