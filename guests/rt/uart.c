/* PL011 output only. The UART is left as firmware/VMM set it up.
 * Every access is a VM exit under KVM, so TXFF polling is optional. */
#include "rt.h"

#ifndef UART_POLL_TXFF
#define UART_POLL_TXFF 0
#endif

#define UARTDR  0x00
#define UARTFR  0x18
#define FR_TXFF (1u << 5)

void uart_putc(char c)
{
#if UART_POLL_TXFF
    for (u32 i = 0; i < 1000000 && (mmio_read32(UART_BASE + UARTFR) & FR_TXFF); i++)
        cpu_relax();
#endif
    mmio_write32(UART_BASE + UARTDR, (u8)c);
}

void uart_puts(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

void uart_putdec(u64 v)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        uart_putc(buf[--n]);
}

void uart_putsdec(s64 v)
{
    if (v < 0) {
        uart_putc('-');
        uart_putdec(-(u64)v);
    } else {
        uart_putdec((u64)v);
    }
}

void uart_puthex(u64 v)
{
    char buf[16];
    int n = 0;
    uart_puts("0x");
    do {
        u32 d = v & 0xf;
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v >>= 4;
    } while (v);
    while (n)
        uart_putc(buf[--n]);
}
