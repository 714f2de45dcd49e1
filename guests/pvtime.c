/* pvtime: SMCCC discovery of PV stolen time and the per-vCPU record. */
#include "rt/rt.h"
#include "rt/timer.h"

static int check_ret(u64 r, const char *what)
{
    int ok = r == 0;
    check_s(VTVMM("pvtime"), ok, what, "ret", (s64)r);
    return ok;
}

/* The guest runs with the MMU (and so its caches) off while the host
 * writes the record through a cacheable mapping: clean+invalidate the
 * line to the point of coherency before every read so a host without
 * FEAT_S2FWB cannot leave a stale value visible to us. */
static void record_sync(u64 ipa)
{
    __asm__ volatile("dsb sy; dc civac, %0; dsb sy" : : "r"(ipa) : "memory");
}

int main(void)
{
    u64 frq = cntfrq();
    if (frq == 0)
        frq = 1000000000UL;
    u32 cpu = cpu_index();
    u64 expect = PVTIME_BASE + 64UL * cpu;

    check_ret(smccc_hvc(SMCCC_ARCH_FEATURES, PV_TIME_FEATURES, 0, 0),
              "pvtime: ARCH_FEATURES(PV_TIME_FEATURES) == 0");
    check_ret(smccc_hvc(PV_TIME_FEATURES, PV_TIME_FEATURES, 0, 0),
              "pvtime: PV_TIME_FEATURES(PV_TIME_FEATURES) == 0");
    check_ret(smccc_hvc(PV_TIME_FEATURES, PV_TIME_ST, 0, 0),
              "pvtime: PV_TIME_FEATURES(PV_TIME_ST) == 0");

    /* PV_TIME_ST zeroes the record and restarts the count: call it once. */
    u64 ipa = smccc_hvc(PV_TIME_ST, 0, 0, 0);
    uart_puts("pvtime: ipa=");
    uart_puthex(ipa);
    uart_putc('\n');
    if (!check_x(VTVMM("pvtime"), ipa == expect, "pvtime: PV_TIME_ST returns the expected IPA",
                 "expected", expect)) {
        /* No record to read: the same checks, failed, with the IPA. */
        check_x(VTVMM("pvtime"), 0, "pvtime: record revision == 0", "no_record_ipa", ipa);
        check_x(VTVMM("pvtime"), 0, "pvtime: record attributes == 0", "no_record_ipa", ipa);
        check_x(VTVMM("pvtime"), 0, "pvtime: stolen time does not decrease over 200 ms",
                "no_record_ipa", ipa);
        check_x(VTVMM("pvtime"), 0, "pvtime: revision and attributes still 0", "no_record_ipa", ipa);
        return rt_status();
    }

    record_sync(ipa);
    u32 rev = mmio_read32(ipa + 0);
    u32 attr = mmio_read32(ipa + 4);
    check_u(VTVMM("pvtime"), rev == 0, "pvtime: record revision == 0", "revision", rev);
    check_u(VTVMM("pvtime"), attr == 0, "pvtime: record attributes == 0", "attributes", attr);

    u64 s0 = mmio_read64(ipa + 8);
    spin_ticks(ticks_from_us(frq, 200000));
    record_sync(ipa);
    u64 s1 = mmio_read64(ipa + 8);
    uart_puts("pvtime: stolen_start=");
    uart_putdec(s0);
    uart_puts(" stolen_end=");
    uart_putdec(s1);
    uart_putc('\n');
    check_s(VTVMM("pvtime"), s1 >= s0, "pvtime: stolen time does not decrease over 200 ms",
            "delta_ns", (s64)(s1 - s0));

    record_sync(ipa);
    rev = mmio_read32(ipa + 0);
    attr = mmio_read32(ipa + 4);
    check(VTVMM("pvtime"), rev == 0 && attr == 0, "pvtime: revision and attributes still 0");

    return rt_status();
}
