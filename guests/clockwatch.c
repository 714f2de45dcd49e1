/* clockwatch: watch CNTVCT_EL0 and CNTPCT_EL0 while the VMM pauses the
 * guest (snapshot/restore, migration) and resumes it later, maybe on
 * another host.
 *
 * A tight loop reads CNTVCT then CNTPCT (isb before each) and, for each
 * counter, counts the reads that were lower than the previous read of the
 * same counter ("backwards") and tracks the largest and smallest forward
 * step between consecutive reads. A pause between two reads shows up as
 * one big step: that is the event being measured, so nothing here times
 * out on a big step.
 *
 * The run lasts D = 3 s of guest time: the sum of CNTVCT's forward steps
 * (so a counter that jumps backwards cannot make the run end early or
 * late). A loop-count bound worth about 600 s of iterations, calibrated at
 * start, ends the run if the counter stops moving; that prints a not ok
 * line. Every PROGRESS_MS of guest time the loop prints one short progress
 * line (each UART byte is a VM exit).
 *
 * So that a test can find the step at each pause among the host's own
 * hiccups (its timer ticks alone cost the guest ~40 us each), every step of
 * either counter above 2/3 of an exit round trip (at least LOG_US) is kept in
 * a log in guest RAM (it travels with the guest) and printed at the end,
 * one short "cws V0 DV P0 DP" line each, in hex: the CNTVCT read before
 * the step and its step, then the same for CNTPCT. The host's hiccups number in
 * the hundreds per second, so the log goes out through vtvmm's bulk print
 * device (the UART would take an exit per byte). Before the run the guest also measures the two figures a
 * pause is judged against: its loop period (mean over a calibration run)
 * and one exit-to-the-VMM round trip (an MMIO read of the UART's flag
 * register, handled by the VMM: median of RTT_SAMPLES). */
#include "rt/rt.h"
#include "rt/timer.h"

#ifndef RUN_SECONDS                   /* clockwatch_long: 40 s, for migration round trips */
#define RUN_SECONDS     3UL
#endif
#ifndef BOUND_SECONDS                 /* EXTRA_CFLAGS=-DBOUND_SECONDS=1UL tests the bound */
#define BOUND_SECONDS   600UL
#endif
#ifndef PROGRESS_MS                   /* clockwatch_long: 10 s, so a pause rarely lands in a print */
#define PROGRESS_MS     500UL
#endif
#define LOG_US          20UL          /* log threshold floor; it is 2/3 of an exit round trip */
#define LOG_MAX         32768         /* log entries kept (the first ones) */
#define LOG_LINE        72            /* longest "cws" line */
#define RTT_SAMPLES     31
#define UART_FR         0x18UL
#define CAL_ITERS       65536UL
#define CAL_RUNS        3
#define BOUND_FALLBACK  (1UL << 34)   /* counter did not move during calibration */
#define BOUND_MAX       (1UL << 44)

struct ctr {
    u64 back;       /* reads lower than the previous read */
    u64 max_step;   /* largest forward step, ticks */
    u64 min_step;   /* smallest forward step, ticks (~0: none yet) */
};

struct step {
    u64 v0, p0;     /* the CNTVCT and CNTPCT reads before the step */
    u64 dv, dp;     /* the step of each counter (unsigned: backwards is huge) */
};

static struct step step_log[LOG_MAX];
static char log_text[LOG_MAX * LOG_LINE];
static u64 step_lost;   /* logged steps beyond LOG_MAX */

struct result {
    struct ctr v, p;
    u64 iters;      /* loop iterations (each reads both counters once) */
    u64 elapsed;    /* sum of CNTVCT forward steps, ticks */
};

/* One progress line; out of line so that the loop keeps nothing but
 * counter state in registers. */
static __attribute__((noinline, cold)) void progress(u64 frq, u64 elapsed)
{
    uart_puts("clockwatch: t=");
    uart_putdec(us_from_ticks(frq, elapsed) / 1000);
    uart_puts(" ms\n");
}

/* The measuring loop. All its state is in locals (registers); the result
 * is written out once at the end. Runs until `elapsed` reaches `dur`
 * ticks or `bound` iterations; with half == 0 it prints nothing (used for
 * calibration, so that calibration times the very same code). */
static __attribute__((noinline, cold)) void log_step(u64 n, u64 v0, u64 v1, u64 p0, u64 p1)
{
    if (n >= LOG_MAX) {
        step_lost++;
        return;
    }
    step_log[n].v0 = v0;
    step_log[n].p0 = p0;
    step_log[n].dv = v1 - v0;
    step_log[n].dp = p1 - p0;
}


static __attribute__((noinline)) u64 watch(struct result *r, u64 dur, u64 bound, u64 half,
                                           u64 frq, u64 log_ticks)
{
    u64 vprev = cntvct();
    u64 pprev = cntpct();
    u64 vback = 0, vmax = 0, vmin = ~0UL;
    u64 pback = 0, pmax = 0, pmin = ~0UL;
    u64 elapsed = 0, iters = 0, logged = 0;
    u64 mark = half ? (half < dur ? half : dur) : dur;

    while (iters < bound) {
        u64 v = cntvct();
        u64 p = cntpct();
        iters++;

        /* Unsigned: a backwards read is a huge step, so it is logged too. */
        if (v - vprev > log_ticks || p - pprev > log_ticks)
            log_step(logged++, vprev, v, pprev, p);

        if (v < vprev) {
            vback++;
        } else {
            u64 s = v - vprev;
            elapsed += s;
            if (s > vmax)
                vmax = s;
            if (s < vmin)
                vmin = s;
        }
        vprev = v;

        if (p < pprev) {
            pback++;
        } else {
            u64 s = p - pprev;
            if (s > pmax)
                pmax = s;
            if (s < pmin)
                pmin = s;
        }
        pprev = p;

        if (elapsed >= mark) {
            if (elapsed >= dur)
                break;
            /* Progress. The time spent printing counts in the next step
             * like any other gap: a pause that lands here is not hidden. */
            progress(frq, elapsed);
            mark = (elapsed / half + 1) * half;
            if (mark > dur)
                mark = dur;
        }
    }

    r->v.back = vback;
    r->v.max_step = vmax;
    r->v.min_step = vmin;
    r->p.back = pback;
    r->p.max_step = pmax;
    r->p.min_step = pmin;
    r->iters = iters;
    r->elapsed = elapsed;
    return logged;
}

static void print_ctr(const char *name, const struct ctr *c, u64 reads)
{
    uart_puts("clockwatch: ");
    uart_puts(name);
    uart_puts(" backwards=");
    uart_putdec(c->back);
    uart_puts(" max_step_ticks=");
    uart_putdec(c->max_step);
    uart_puts(" min_step_ticks=");
    uart_putdec(c->min_step == ~0UL ? 0 : c->min_step);
    uart_puts(" reads=");
    uart_putdec(reads);
    uart_putc('\n');
}

int main(void)
{
    u64 hz = cntfrq();
    u64 frq = hz ? hz : 1000000000UL;   /* keep going with the lab's value */
    struct result r;

    /* Calibrate the loop bound: time CAL_ITERS iterations of the same
     * loop, a few times, and keep the fastest run (a pause during one of
     * them only makes that run slower). */
    u64 best = ~0UL;
    for (int i = 0; i < CAL_RUNS; i++) {
        u64 t0 = cntvct();
        watch(&r, ~0UL, CAL_ITERS, 0, frq, ~0UL);
        u64 t1 = cntvct();
        u64 t = t1 - t0;
        if (t1 >= t0 && t < best)
            best = t;
    }
    u64 bound;
    if (best == 0 || best == ~0UL) {
        bound = BOUND_FALLBACK;
    } else {
        u64 per = BOUND_SECONDS * frq / best;   /* calibration runs in 600 s */
        bound = per > BOUND_MAX / CAL_ITERS ? BOUND_MAX : per * CAL_ITERS;
        if (bound < CAL_ITERS)
            bound = CAL_ITERS;
    }

    /* One exit to the VMM and back, as the guest sees it. */
    u64 rtt[RTT_SAMPLES];
    for (int i = 0; i < RTT_SAMPLES; i++) {
        isb();
        u64 t0 = cntvct();
        (void)mmio_read32(UART_BASE + UART_FR);
        u64 t1 = cntvct();
        u64 d = t1 - t0;
        int j = i;
        for (; j > 0 && rtt[j - 1] > d; j--)    /* insertion sort */
            rtt[j] = rtt[j - 1];
        rtt[j] = d;
    }

    uart_puts("clockwatch: run_ms=");
    uart_putdec(RUN_SECONDS * 1000);
    uart_puts(" loop_bound=");
    uart_putdec(bound);
    uart_putc('\n');
    /* Mean loop period over the fastest calibration run. */
    uart_puts("clockwatch: loop_period_ns=");
    uart_putdec(best == ~0UL ? 0 : us_from_ticks(frq, best) * 1000UL / CAL_ITERS);
    uart_puts(" exit_round_trip_us median=");
    uart_putdec(us_from_ticks(frq, rtt[RTT_SAMPLES / 2]));
    uart_puts(" min=");
    uart_putdec(us_from_ticks(frq, rtt[0]));
    uart_puts(" max=");
    uart_putdec(us_from_ticks(frq, rtt[RTT_SAMPLES - 1]));
    u64 log_ticks = rtt[RTT_SAMPLES / 2] * 2 / 3;
    if (log_ticks < ticks_from_us(frq, LOG_US))
        log_ticks = ticks_from_us(frq, LOG_US);
    uart_puts(" log_us=");
    uart_putdec(us_from_ticks(frq, log_ticks));
    uart_putc('\n');

    u64 logged = watch(&r, RUN_SECONDS * frq, bound, frq * PROGRESS_MS / 1000, frq, log_ticks);

    /* Each iteration reads each counter once, plus the first read. */
    print_ctr("cntvct", &r.v, r.iters + 1);
    print_ctr("cntpct", &r.p, r.iters + 1);
    uart_puts("clockwatch: cntfrq=");
    uart_putdec(hz);
    uart_putc('\n');
    char *t = log_text;
    for (u64 i = 0; i < logged && i < LOG_MAX; i++) {
        *t++ = 'c';
        *t++ = 'w';
        *t++ = 's';
        *t++ = ' ';
        t = rt_format_hex(t, step_log[i].v0);
        *t++ = ' ';
        t = rt_format_hex(t, step_log[i].dv);
        *t++ = ' ';
        t = rt_format_hex(t, step_log[i].p0);
        *t++ = ' ';
        t = rt_format_hex(t, step_log[i].dp);
        *t++ = '\n';
    }
    rt_bulk_print(log_text, (u64)(t - log_text));
    uart_puts("clockwatch: steps_logged=");
    uart_putdec(logged);
    uart_puts(" lost=");
    uart_putdec(step_lost);
    uart_putc('\n');

    check(ARCH, r.v.back == 0, "clockwatch: cntvct never went backwards");
    check(ARCH, r.p.back == 0, "clockwatch: cntpct never went backwards");
    if (r.elapsed < RUN_SECONDS * frq)
        check(ARCH, 0, "clockwatch: ended by the loop bound");

    guest_exit(rt_status());
}
