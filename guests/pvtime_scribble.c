/* pvtime_scribble: a guest that writes junk over its own PV stolen-time
 * record and must still snapshot, restore and migrate.
 *
 * The record is the guest's memory, so nothing stops a guest from writing
 * it. KVM only ever adds to the stolen-time count it finds there and never
 * rewrites revision or attributes (it writes them only on PV_TIME_ST), so a
 * VMM that reads the revision back from the record at pause, and checks it,
 * lets the guest make its own snapshots fail. This guest discovers its record
 * through SMCCC as pvtime.c does, checks that the host served revision 0,
 * then overwrites revision, attributes and the stolen-time count with junk,
 * and runs for RUN_SECONDS of guest time (the VMM snapshots or migrates it in
 * that time) watching that:
 *  - CNTVCT and CNTPCT never go backwards;
 *  - the stolen-time count never goes backwards from the junk it was given
 *    (KVM counts on from what is in memory, across the restore too);
 *  - revision and attributes still hold the junk at the end: the restore
 *    kept the record as the guest left it (vtime reports the mismatch and
 *    changes nothing).
 * A loop-count bound worth about BOUND_SECONDS, calibrated at start, ends
 * the run if the counter stops moving. */
#include "rt/rt.h"
#include "rt/timer.h"

#define RUN_SECONDS     3UL
#define BOUND_SECONDS   60UL
#define CAL_ITERS       65536UL
#define STOLEN_EVERY    4096UL          /* loop iterations between stolen-time reads */
#define JUNK_REVISION   0xdeadbeefU
#define JUNK_ATTRIBUTES 0x5ca1ab1eU
#define JUNK_STOLEN     0x5eed000000000000UL   /* far from wrapping */

/* The MMU (and so the data cache) is off in the guest while the host reaches
 * the record through a cacheable mapping: clean and invalidate the line to
 * the point of coherency around every access, so that neither side works
 * on a stale copy. */
static void record_sync(u64 ipa)
{
    __asm__ volatile("dsb sy; dc civac, %0; dsb sy" : : "r"(ipa) : "memory");
}

static void store64(uptr addr, u64 v)
{
    __asm__ volatile("str %0, [%1]" : : "rZ"(v), "r"(addr) : "memory");
}

struct watch {
    u64 vback, pback, sback;   /* reads lower than the one before */
    u64 elapsed;               /* sum of CNTVCT's forward steps, ticks */
    u64 iters;
    u64 stolen_last;
};

static __attribute__((noinline)) void watch(struct watch *w, u64 ipa, u64 dur, u64 bound)
{
    u64 vprev = cntvct(), pprev = cntpct();
    u64 sprev = w->stolen_last;
    while (w->iters < bound && w->elapsed < dur) {
        u64 v = cntvct();
        u64 p = cntpct();
        if (v < vprev)
            w->vback++;
        else
            w->elapsed += v - vprev;
        if (p < pprev)
            w->pback++;
        vprev = v;
        pprev = p;
        w->iters++;
        if (ipa != 0 && w->iters % STOLEN_EVERY == 0) {
            record_sync(ipa);
            u64 s = mmio_read64(ipa + 8);
            if (s < sprev)
                w->sback++;
            sprev = s;
        }
    }
    w->stolen_last = sprev;
}

int main(void)
{
    u64 frq = cntfrq();
    if (frq == 0)
        frq = 1000000000UL;
    u32 cpu = cpu_index();
    u64 expect = PVTIME_BASE + 64UL * cpu;

    check(VTVMM("pvtime"), smccc_hvc(SMCCC_ARCH_FEATURES, PV_TIME_FEATURES, 0, 0) == 0,
          "pvtime_scribble: ARCH_FEATURES(PV_TIME_FEATURES) == 0");
    check(VTVMM("pvtime"), smccc_hvc(PV_TIME_FEATURES, PV_TIME_ST, 0, 0) == 0,
          "pvtime_scribble: PV_TIME_FEATURES(PV_TIME_ST) == 0");
    u64 ipa = smccc_hvc(PV_TIME_ST, 0, 0, 0), got = ipa;
    /* Without the record (no PV time: QEMU TCG, --pvtime off) the record
     * checks fail, saying so, and the counter checks still run, on the
     * same loop without the record's reads. */
    int have = check_x(VTVMM("pvtime"), ipa == expect,
                       "pvtime_scribble: PV_TIME_ST returns the expected IPA", "ipa", ipa);
    u64 stolen = 0;
    if (have) {
        record_sync(ipa);
        u32 rev = mmio_read32(ipa + 0);
        u32 attr = mmio_read32(ipa + 4);
        check(VTVMM("pvtime"), rev == 0 && attr == 0,
              "pvtime_scribble: the host served revision 0, attributes 0");

        /* Scribble. */
        record_sync(ipa);
        mmio_write32(ipa + 0, JUNK_REVISION);
        mmio_write32(ipa + 4, JUNK_ATTRIBUTES);
        store64(ipa + 8, JUNK_STOLEN);
        record_sync(ipa);
        rev = mmio_read32(ipa + 0);
        attr = mmio_read32(ipa + 4);
        stolen = mmio_read64(ipa + 8);
        check(VTVMM("pvtime"), rev == JUNK_REVISION && attr == JUNK_ATTRIBUTES && stolen >= JUNK_STOLEN,
              "pvtime_scribble: the record holds the junk written over it");
        uart_puts("pvtime_scribble: scribbled revision=");
        uart_puthex(rev);
        uart_puts(" attributes=");
        uart_puthex(attr);
        uart_puts(" stolen_ns=");
        uart_puthex(stolen);
        uart_putc('\n');
    } else {
        check_x(VTVMM("pvtime"), 0, "pvtime_scribble: the host served revision 0, attributes 0",
                "no_record_ipa", ipa);
        check_x(VTVMM("pvtime"), 0, "pvtime_scribble: the record holds the junk written over it",
                "no_record_ipa", got);
        ipa = 0;                        /* watch() reads no record */
    }

    /* Calibrate the loop bound on the same loop, without the record. */
    struct watch w = {0};
    u64 t0 = cntvct();
    watch(&w, 0, ~0UL, CAL_ITERS);
    u64 t = cntvct() - t0;
    u64 bound = (t == 0 || t > BOUND_SECONDS * frq) ? (1UL << 34)
                                                    : BOUND_SECONDS * frq / t * CAL_ITERS;

    struct watch run = {0};
    run.stolen_last = stolen;
    watch(&run, ipa, RUN_SECONDS * frq, bound);
    check_u(ARCH, run.elapsed >= RUN_SECONDS * frq, "pvtime_scribble: ran its guest time",
            "iterations", run.iters);
    check_u(ARCH, run.vback == 0, "pvtime_scribble: cntvct never went backwards", "backwards",
            run.vback);
    check_u(ARCH, run.pback == 0, "pvtime_scribble: cntpct never went backwards", "backwards",
            run.pback);
    if (!have) {
        check_x(VTVMM("pvtime"), 0, "pvtime_scribble: stolen time never went backwards from the junk",
                "no_record_ipa", got);
        check_x(VTVMM("pvtime"), 0,
                "pvtime_scribble: revision and attributes still hold the guest's junk",
                "no_record_ipa", got);
        return rt_status();
    }
    check_u(VTVMM("pvtime"), run.sback == 0 && run.stolen_last >= JUNK_STOLEN,
            "pvtime_scribble: stolen time never went backwards from the junk", "backwards",
            run.sback);

    record_sync(ipa);
    u32 rev = mmio_read32(ipa + 0);
    u32 attr = mmio_read32(ipa + 4);
    check_x(VTVMM("pvtime"), rev == JUNK_REVISION && attr == JUNK_ATTRIBUTES,
            "pvtime_scribble: revision and attributes still hold the guest's junk", "revision",
            rev);
    return rt_status();
}
