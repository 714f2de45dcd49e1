/* trace_marker: marks MARKS moments for the host's trace. At each it reads
 * CNTVCT (isb first), stores that value to vtvmm's trace marker with one
 * 8-byte write (the host's kvm:kvm_mmio event of that exit carries it) and
 * prints the moment as a raw ftrace text line on its own trace clock:
 *
 *   guest-0 [000] .....  SECONDS.NANOS: tracing_mark_write: vtime-mark I VALUE
 *
 * The clock is the counter scaled to nanoseconds the way Linux's perf page
 * describes a trace clock (time_zero 0, time_mult, time_shift), and the
 * guest prints that description as a clock-samples file (version 1, its
 * samples exact: the clock *is* the conversion), so that vtime-trace maps
 * this trace like a Linux guest's. The store comes before the print: the
 * line carries VALUE's own time, so printing first would only widen the gap
 * between the guest's moment and the host's event by the print's exit.
 * MARKS and INTERVAL_US may be set when building (-D): trace_marker_long
 * (guests/Makefile) marks for 15 s of guest time, long enough for the
 * two-machine proof to move the guest while it marks. */
#include "rt/rt.h"
#include "rt/timer.h"

#ifndef MARKS
#define MARKS 20u
#endif
#ifndef INTERVAL_US
#define INTERVAL_US 10000u /* guest time between two marks */
#endif

/* The largest shift (at most 32, so that the remainder's product fits in
 * 64 bits) whose multiplier 10^9 * 2^shift / frq fits in 32 bits. */
static void clock_conversion(u64 frq, u32 *mult, u32 *shift) {
  u32 s = 32;
  while (s > 0 && (1000000000UL << s) / frq > 0xffffffffUL) s--;
  *shift = s;
  *mult = (u32)((1000000000UL << s) / frq);
}

/* Linux's perf-clock arithmetic: quotient and remainder at the shift. */
static u64 trace_ns(u64 ticks, u32 mult, u32 shift) {
  u64 quot = ticks >> shift;
  u64 rem = ticks & ((1UL << shift) - 1);
  return quot * mult + ((rem * mult) >> shift);
}

static char *put_str(char *p, const char *s) {
  while (*s) *p++ = *s++;
  return p;
}

/* One 8-byte store (no writeback: KVM needs a valid syndrome). Under QEMU
 * the address is unassigned and the store takes a synchronous external
 * abort, which the runtime skips: returns 0 then. */
static int marker_write64(u64 v) {
  rt_fault_taken = 0;
  rt_fault_expected = 1;
  __asm__ volatile("str %0, [%1]" : : "r"(v), "r"(TRACEMARKER_BASE) : "memory");
  rt_fault_expected = 0;
  return !rt_fault_taken;
}

static char line[160];

static void print_mark(u32 i, u64 value, u32 mult, u32 shift) {
  u64 ns = trace_ns(value, mult, shift);
  char *p = put_str(line, "         guest-0     [000] ..... ");
  p = rt_format_dec(p, ns / 1000000000UL, 1);
  *p++ = '.';
  p = rt_format_dec(p, ns % 1000000000UL, 9);
  p = put_str(p, ": tracing_mark_write: vtime-mark ");
  p = rt_format_dec(p, i, 1);
  *p++ = ' ';
  p = rt_format_dec(p, value, 1);
  *p++ = '\n';
  rt_bulk_print(line, (u64)(p - line));
}

static void print_sample(u64 ticks, u32 mult, u32 shift) {
  uart_puts("sample before=");
  uart_putdec(ticks);
  uart_puts(" monotonic_ns=");
  uart_putdec(trace_ns(ticks, mult, shift));
  uart_puts(" after=");
  uart_putdec(ticks);
  uart_putc('\n');
}

int main(void) {
  u64 frq = cntfrq();
  if (!check_u(ARCH, frq != 0, "trace_marker: cntfrq non-zero", "cntfrq", frq)) return rt_status();
  u32 mult, shift;
  clock_conversion(frq, &mult, &shift);

  uart_puts("trace_marker: marks=");
  uart_putdec(MARKS);
  uart_puts(" interval_us=");
  uart_putdec(INTERVAL_US);
  uart_puts(" marker=");
  uart_puthex(TRACEMARKER_BASE);
  uart_puts(" cntfrq=");
  uart_putdec(frq);
  uart_putc('\n');

  u64 first = 0, last = 0, back = 0, faults = 0;
  u64 wait = ticks_from_us(frq, INTERVAL_US);
  for (u32 i = 0; i < MARKS; i++) {
    u64 v = cntvct();
    if (!marker_write64(v)) faults++;
    print_mark(i, v, mult, shift);
    if (i == 0)
      first = v;
    else if (v <= last)
      back++;
    last = v;
    spin_ticks(wait);
  }
  check_u(VTVMM("trace-marker"), faults == 0, "trace_marker: every marker write was taken (vtvmm)",
          "faults", faults);
  check_u(ARCH, back == 0, "trace_marker: marks in increasing counter order", "out_of_order", back);
  check_u(ARCH, last - first >= (MARKS - 1) * wait, "trace_marker: marks at least the interval apart",
          "span_ticks", last - first);

  /* The trace clock's description, in the form vtime-clocksample writes
   * (include/vtime/trace/clock_sample.h, version 1): perf conversion and
   * three samples, at the first and last mark and now. */
  uart_puts("vtime-clocksample 1\nmachine vtvmm guest trace_marker\nfrequency hz=");
  uart_putdec(frq);
  uart_puts("\nperf time_zero=0 time_mult=");
  uart_putdec(mult);
  uart_puts(" time_shift=");
  uart_putdec(shift);
  uart_puts(" time_cycles=0 time_mask=0\n");
  print_sample(first, mult, shift);
  print_sample(last, mult, shift);
  print_sample(cntvct(), mult, shift);
  return rt_status();
}
