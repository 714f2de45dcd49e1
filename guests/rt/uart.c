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

char *rt_format_dec(char *out, u64 v, int width)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < width && n < (int)sizeof buf)
        buf[n++] = '0';
    while (n)
        *out++ = buf[--n];
    return out;
}

void uart_putdec(u64 v)
{
    char buf[24];
    char *end = rt_format_dec(buf, v, 0);
    for (char *p = buf; p < end; p++)
        uart_putc(*p);
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

char *rt_format_hex(char *out, u64 v)
{
    char buf[16];
    int n = 0;
    do {
        u32 d = v & 0xf;
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v >>= 4;
    } while (v);
    while (n)
        *out++ = buf[--n];
    return out;
}

void uart_puthex(u64 v)
{
    char buf[16];
    char *end = rt_format_hex(buf, v);
    uart_puts("0x");
    for (char *p = buf; p < end; p++)
        uart_putc(*p);
}

/* vtvmm's bulk print device: write the buffer's guest-physical address to
 * ADDR, then its length to LEN; ID reads "VTDP". Probed once, with a load
 * that may fault (QEMU has nothing there). */
#define DP_ADDR 0x00
#define DP_LEN  0x08
#define DP_ID   0x10
#define DP_MAGIC 0x50445456u    /* "VTDP" little-endian */
#define DP_MAX  0x10000u

static int bulk_state;          /* 0: not probed, 1: present, 2: absent */

static int bulk_present(void)
{
    if (bulk_state == 0) {
        u32 v = 0;
        bulk_state = (rt_probe32(DEBUGPRINT_BASE + DP_ID, &v) && v == DP_MAGIC) ? 1 : 2;
    }
    return bulk_state == 1;
}

void rt_bulk_print(const char *buf, u64 len)
{
    if (!bulk_present()) {
        for (u64 i = 0; i < len; i++)
            uart_putc(buf[i]);
        return;
    }
    while (len) {
        u32 n = len > DP_MAX ? DP_MAX : (u32)len;
        dsb_sy();
        __asm__ volatile("str %0, [%1]" : : "r"((u64)(uptr)buf), "r"(DEBUGPRINT_BASE + DP_ADDR) : "memory");
        mmio_write32(DEBUGPRINT_BASE + DP_LEN, n);
        buf += n;
        len -= n;
    }
}
