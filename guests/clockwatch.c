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
 * line. Every 0.5 s of guest time the loop prints one short progress line
 * (each UART byte is a VM exit). */
#include "rt/rt.h"
#include "rt/timer.h"

#ifndef RUN_SECONDS                   /* clockwatch_long: 40 s, for migration round trips */
#define RUN_SECONDS     3UL
#endif
#ifndef BOUND_SECONDS                 /* EXTRA_CFLAGS=-DBOUND_SECONDS=1UL tests the bound */
#define BOUND_SECONDS   600UL
#endif
#define CAL_ITERS       65536UL
#define CAL_RUNS        3
#define BOUND_FALLBACK  (1UL << 34)   /* counter did not move during calibration */
#define BOUND_MAX       (1UL << 44)

struct ctr {
    u64 back;       /* reads lower than the previous read */
    u64 max_step;   /* largest forward step, ticks */
    u64 min_step;   /* smallest forward step, ticks (~0: none yet) */
};

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
static __attribute__((noinline)) void watch(struct result *r, u64 dur, u64 bound, u64 half, u64 frq)
{
    u64 vprev = cntvct();
    u64 pprev = cntpct();
    u64 vback = 0, vmax = 0, vmin = ~0UL;
    u64 pback = 0, pmax = 0, pmin = ~0UL;
    u64 elapsed = 0, iters = 0;
    u64 mark = half ? (half < dur ? half : dur) : dur;

    while (iters < bound) {
        u64 v = cntvct();
        u64 p = cntpct();
        iters++;

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
        watch(&r, ~0UL, CAL_ITERS, 0, frq);
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

    uart_puts("clockwatch: run_ms=");
    uart_putdec(RUN_SECONDS * 1000);
    uart_puts(" loop_bound=");
    uart_putdec(bound);
    uart_putc('\n');

    watch(&r, RUN_SECONDS * frq, bound, frq / 2, frq);

    /* Each iteration reads each counter once, plus the first read. */
    print_ctr("cntvct", &r.v, r.iters + 1);
    print_ctr("cntpct", &r.p, r.iters + 1);
    uart_puts("clockwatch: cntfrq=");
    uart_putdec(hz);
    uart_putc('\n');

    check(r.v.back == 0, "clockwatch: cntvct never went backwards");
    check(r.p.back == 0, "clockwatch: cntpct never went backwards");
    if (r.elapsed < RUN_SECONDS * frq)
        check(0, "clockwatch: ended by the loop bound");

    guest_exit(rt_status());
}
