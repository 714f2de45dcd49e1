/* smp: CNTVCT_EL0 and CNTPCT_EL0 agree across vCPUs.
 *
 * CPU 0 starts CPUs 1..3 with PSCI CPU_ON (a CPU that does not exist
 * makes CPU_ON fail and is skipped). With each secondary, in turn, it
 * runs a ping/pong handshake in shared memory:
 *
 *   CPU 0: read (v0, p0); ping = r          secondary: wait ping == r
 *                                           read (vs, ps); publish; pong = r
 *   CPU 0: wait pong == r; read (v1, p1)
 *
 * Causality requires v0 <= vs <= v1 and p0 <= ps <= p1 in every round,
 * which holds only if every vCPU sees the same counter offset. Round 0
 * is the secondary's first reading at entry, bracketed by CPU 0's
 * reading before CPU_ON and after it saw the secondary come alive.
 *
 * The MMU and caches are off, so plain volatile accesses are coherent
 * between CPUs; dsb sy still surrounds every publish. Only CPU 0 prints
 * and exits. Every wait gives up after 2 s of CNTVCT (plus an iteration
 * cap in case a counter does not move). */
#include "rt/rt.h"
#include "rt/timer.h"

#define ROUNDS       20u                /* rounds per secondary, always run */
#define MAX_ROUNDS   200u               /* extra rounds only to tighten the skew bound */
#define STOP         0xffffffffu
#define STACK_SIZE   0x4000u            /* 16 KiB per secondary */
#define SPIN_CAP     (1UL << 28)        /* iteration bound for every wait */

struct share {
    volatile u32 alive;                 /* secondary: 1 once running */
    volatile u32 ping;                  /* CPU 0: round number, or STOP */
    volatile u32 pong;                  /* secondary: round it answered */
    volatile u32 done;                  /* secondary: 1 before parking */
    volatile u64 mpidr;                 /* secondary's MPIDR_EL1 */
    volatile u64 vct[MAX_ROUNDS + 1];   /* [0]: first reading at entry */
    volatile u64 pct[MAX_ROUNDS + 1];
} __attribute__((aligned(64)));

static struct share sh[RT_MAX_CPUS];
static u8 stacks[RT_MAX_CPUS][STACK_SIZE] __attribute__((aligned(16)));  /* [0] unused */
static volatile u64 wait_ticks;         /* set by CPU 0 before any CPU_ON */

/* Both counters, ordered against the memory accesses around them: the
 * dsb/isb before keeps the reads after earlier loads (the ping or pong
 * just seen), the isb/dsb after keeps them before later stores. */
static inline void read_counters(u64 *v, u64 *p)
{
    u64 a, b;
    __asm__ volatile("dsb sy\n\tisb\n\t"
                     "mrs %0, cntvct_el0\n\tisb\n\t"
                     "mrs %1, cntpct_el0\n\tisb\n\tdsb sy"
                     : "=&r"(a), "=&r"(b) : : "memory");
    *v = a;
    *p = b;
}

/* Spin until *f >= want, `timeout` CNTVCT ticks pass or SPIN_CAP
 * iterations run out. Returns the last value read. */
static u32 wait_ge(volatile u32 *f, u32 want, u64 timeout)
{
    u64 start = cntvct();
    for (u64 i = 0; i < SPIN_CAP; i++) {
        u32 v = *f;
        if (v >= want)
            return v;
        if (cntvct() - start >= timeout)
            break;
        cpu_relax();
    }
    return *f;
}

/* ---- secondary side: no printing, no guest_exit ---- */
static void secondary(u32 slot)
{
    struct share *s = &sh[slot];
    u64 v, p;

    read_counters(&v, &p);
    s->vct[0] = v;
    s->pct[0] = p;
    s->mpidr = read_sysreg(mpidr_el1);
    dsb_sy();
    s->alive = 1;
    dsb_sy();

    u64 timeout = wait_ticks;
    for (u32 r = 1; r <= MAX_ROUNDS; r++) {
        u32 got = wait_ge(&s->ping, r, timeout);
        if (got != r)                   /* timeout, STOP or out of step */
            break;
        read_counters(&v, &p);
        s->vct[r] = v;
        s->pct[r] = p;
        dsb_sy();
        s->pong = r;
        dsb_sy();
    }
    s->done = 1;
    dsb_sy();
    /* returns to rt_secondary_main, which parks the CPU */
}

/* ---- CPU 0 side ---- */
/* Per counter: causality violations, and the offset of each secondary
 * relative to CPU 0. A round brackets that offset: d in [sec - after,
 * sec - before]. Intersecting the rounds gives [lo, hi] per secondary,
 * and max(|lo|, |hi|) bounds |d|: the "skew" reported, which the fastest
 * round dominates (unlike a midpoint estimate, which grows with every
 * slow round trip, e.g. when the host deschedules a TCG vCPU thread). */
struct stat {
    u64 samples, viol;
    u64 min_rtt, max_rtt;               /* rounds >= 1 */
    u64 max_skew;                       /* max over secondaries of the bound */
    s64 lo, hi;                         /* current secondary's interval */
    int have_first;                     /* first violation, for the report */
    u32 f_cpu, f_round;
    u64 f_before, f_sec, f_after;
};
static struct stat st_v, st_p;
static u64 missed;

static void bound_begin(struct stat *st)
{
    st->lo = (s64)(1UL << 63);          /* most negative */
    st->hi = (s64)~(1UL << 63);         /* most positive */
}

/* max(|lo|, |hi|); called once round 0 is recorded, so both are finite. */
static u64 bound_now(const struct stat *st)
{
    u64 alo = st->lo < 0 ? -(u64)st->lo : (u64)st->lo;
    u64 ahi = st->hi < 0 ? -(u64)st->hi : (u64)st->hi;
    return alo > ahi ? alo : ahi;
}

static void bound_end(struct stat *st)
{
    u64 b = bound_now(st);
    if (b > st->max_skew)
        st->max_skew = b;
}

static void record(struct stat *st, u32 cpu, u32 round, u64 before, u64 sec, u64 after)
{
    st->samples++;
    if (!(before <= sec && sec <= after)) {
        st->viol++;
        if (!st->have_first) {
            st->have_first = 1;
            st->f_cpu = cpu;
            st->f_round = round;
            st->f_before = before;
            st->f_sec = sec;
            st->f_after = after;
        }
    }
    s64 dlo = (s64)(sec - after), dhi = (s64)(sec - before);
    if (dlo > st->lo)
        st->lo = dlo;
    if (dhi < st->hi)
        st->hi = dhi;
    if (round == 0)                     /* CPU_ON window: not a round trip */
        return;
    u64 rtt = after - before;
    if (st->min_rtt == 0 || rtt < st->min_rtt)
        st->min_rtt = rtt;
    if (rtt > st->max_rtt)
        st->max_rtt = rtt;
}

static void report_first(const char *name, const struct stat *st)
{
    if (!st->have_first)
        return;
    uart_puts("smp: first ");
    uart_puts(name);
    uart_puts(" violation: cpu");
    uart_putdec(st->f_cpu);
    uart_puts(" round=");
    uart_putdec(st->f_round);
    uart_puts(" cpu0_before=");
    uart_putdec(st->f_before);
    uart_puts(" secondary=");
    uart_putdec(st->f_sec);
    uart_puts(" cpu0_after=");
    uart_putdec(st->f_after);
    uart_puts(" sec-before=");
    uart_putsdec((s64)(st->f_sec - st->f_before));
    uart_puts(" after-sec=");
    uart_putsdec((s64)(st->f_after - st->f_sec));
    uart_putc('\n');
}

static void causal_check(const char *what, const struct stat *st, int up)
{
    int ok = up > 0 && st->samples > 0 && st->viol == 0 && missed == 0;
    check_begin(ARCH, ok, what);
    uart_puts(": samples=");
    uart_putdec(st->samples);
    uart_puts(" violations=");
    uart_putdec(st->viol);
    uart_puts(" missed=");
    uart_putdec(missed);
    check_end();
}

/* Run the handshake with the secondary in `slot`; returns 1 if it came up. */
static int run_cpu(u32 slot, u64 timeout, int *started)
{
    struct share *s = &sh[slot];
    u64 bv, bp, av, ap;

    read_counters(&bv, &bp);
    u64 on_v = bv;
    s64 ret = rt_cpu_on(slot, slot, &stacks[slot][STACK_SIZE], secondary);
    uart_puts("smp: cpu");
    uart_putdec(slot);
    uart_puts(" CPU_ON ret=");
    uart_putsdec(ret);
    if (ret != 0) {
        uart_puts(" (not present)\n");
        return 0;
    }
    uart_putc('\n');
    (*started)++;

    if (wait_ge(&s->alive, 1, timeout) < 1) {
        uart_puts("smp: cpu");
        uart_putdec(slot);
        uart_puts(" did not come up within 2 s\n");
        s->ping = STOP;                 /* if it shows up late, it parks */
        dsb_sy();
        return 0;
    }
    read_counters(&av, &ap);
    bound_begin(&st_v);
    bound_begin(&st_p);
    record(&st_v, slot, 0, bv, s->vct[0], av);
    record(&st_p, slot, 0, bp, s->pct[0], ap);

    /* ROUNDS rounds, then more (up to MAX_ROUNDS, for at most 1 s) while
     * the skew bound is still >= 1 ms: on a loaded host a TCG vCPU thread
     * can be descheduled for milliseconds, and only one fast round trip
     * is needed to tighten the bound. Every round is checked for causality. */
    u64 lim = timeout / 2000, t_start = cntvct();     /* 1 ms; timeout is 2 s */
    u32 r, rounds = 0;
    for (r = 1; r <= MAX_ROUNDS; r++) {
        if (r > ROUNDS && ((bound_now(&st_v) < lim && bound_now(&st_p) < lim)
                           || cntvct() - t_start >= timeout / 2))
            break;
        read_counters(&bv, &bp);
        s->ping = r;
        dsb_sy();
        if (wait_ge(&s->pong, r, timeout) < r) {
            uart_puts("smp: cpu");
            uart_putdec(slot);
            uart_puts(" no reply in round ");
            uart_putdec(r);
            uart_putc('\n');
            missed += r <= ROUNDS ? ROUNDS - r + 1 : 1;
            break;
        }
        read_counters(&av, &ap);
        record(&st_v, slot, r, bv, s->vct[r], av);
        record(&st_p, slot, r, bp, s->pct[r], ap);
        rounds = r;
    }
    bound_end(&st_v);
    bound_end(&st_p);
    s->ping = STOP;
    dsb_sy();
    int done = wait_ge(&s->done, 1, timeout) >= 1;

    uart_puts("smp: cpu");
    uart_putdec(slot);
    uart_puts(" mpidr=");
    uart_puthex(s->mpidr);
    uart_puts(" rounds=");
    uart_putdec(rounds);
    uart_puts(" boot_ticks=");               /* CPU 0 before CPU_ON -> first read */
    uart_putsdec((s64)(s->vct[0] - on_v));
    uart_puts(done ? " parked\n" : " not parked\n");
    return 1;
}

int main(void)
{
    u64 frq = cntfrq();
    if (frq == 0)
        frq = 1000000000UL;
    u64 timeout = 2 * frq;
    wait_ticks = timeout;
    dsb_sy();

    uart_puts("smp: cntfrq=");
    uart_putdec(frq);
    uart_puts(" rounds=");
    uart_putdec(ROUNDS);
    uart_puts(" cpu0_mpidr=");
    uart_puthex(read_sysreg(mpidr_el1));
    uart_putc('\n');

    int started = 0, up = 0;
    for (u32 slot = 1; slot < RT_MAX_CPUS; slot++)
        up += run_cpu(slot, timeout, &started);

    check_begin(ARCH, up >= 1 && up == started,
                "smp: at least one secondary came up, all that CPU_ON started");
    uart_puts(": cpus=");
    uart_putdec(1 + (u64)up);
    uart_puts(" cpu_on_ok=");
    uart_putdec((u64)started);
    check_end();

    report_first("cntvct", &st_v);
    report_first("cntpct", &st_p);
    causal_check("smp: cntvct causal across vCPUs (cpu0 before ping <= secondary <= cpu0 after reply)", &st_v, up);
    causal_check("smp: cntpct causal across vCPUs (cpu0 before ping <= secondary <= cpu0 after reply)", &st_p, up);

    /* The skew bound is a figure, not a check: the vCPUs share one counter
     * and one VM offset, so any bound only measures how fast a round trip
     * was on this host (milliseconds when an emulator descheduled a vCPU).
     * Causality above is the property that must hold. */
    uart_puts("smp: max skew bound vs cpu0 (tightest rounds): cntvct_ticks=");
    uart_putdec(st_v.max_skew);
    uart_puts(" cntpct_ticks=");
    uart_putdec(st_p.max_skew);
    uart_puts(" min_rtt_ticks=");
    uart_putdec(st_v.min_rtt);
    uart_puts(" max_rtt_ticks=");
    uart_putdec(st_v.max_rtt);
    uart_putc('\n');

    return rt_status();
}
