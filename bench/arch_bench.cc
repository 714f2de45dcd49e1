// Cost of the model on the paths a VMM runs per trapped access or per exit.
// Each figure covers the whole path: ESR decode plus emulation.
#include <benchmark/benchmark.h>

#include "vtime/arch/emulate.h"
#include "vtime/arch/esr.h"
#include "vtime/arch/vm_clock.h"

namespace vtime::arch {
namespace {

struct Fixture {
  VmClock clock{HostTimerFeatures{}};
  VcpuTimerState vcpu;
  HostCount now{1'000'000'000'000};
  Fixture() {
    (void)clock.SetVmOffset(Ticks{123'456'789});
    vcpu.features.el2 = true;
    for (TimerId id : kAllTimers) {
      vcpu.timers[id].WriteCval(Ticks{now.value + 1'000 * (static_cast<std::uint64_t>(id) + 1)});
      vcpu.timers[id].WriteCtl(ctl::kEnable);
    }
  }
};

void BM_TrappedCntvctRead(benchmark::State& state) {
  Fixture f;
  const std::uint64_t esr = EncodeSysRegTrap(EncodingOf(SysReg::CNTVCT_EL0), true, 2);
  const GuestContext ctx{};
  for (auto _ : state) {
    benchmark::DoNotOptimize(esr);
    const auto access = DecodeSysRegTrap(esr);
    const Emulation e = EmulateSysRegAccess(*access, 0, f.vcpu, ctx, {&f.clock, f.now});
    benchmark::DoNotOptimize(e);
    ++f.now.value;
  }
}
BENCHMARK(BM_TrappedCntvctRead);

void BM_TrappedCntvCvalWrite(benchmark::State& state) {
  Fixture f;
  const std::uint64_t esr = EncodeSysRegTrap(EncodingOf(SysReg::CNTV_CVAL_EL0), false, 5);
  const GuestContext ctx{};
  std::uint64_t value = 42;
  for (auto _ : state) {
    benchmark::DoNotOptimize(esr);
    const auto access = DecodeSysRegTrap(esr);
    const Emulation e = EmulateSysRegAccess(*access, value++, f.vcpu, ctx, {&f.clock, f.now});
    benchmark::DoNotOptimize(e);
  }
}
BENCHMARK(BM_TrappedCntvCvalWrite);

void BM_NextDeadlineFourTimers(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) {
    const TimerCounts counts = f.clock.CountsFor(f.now, f.vcpu.nested());
    const auto deadline = f.vcpu.timers.NextDeadline(counts, f.vcpu.active_timers());
    benchmark::DoNotOptimize(deadline);
    ++f.now.value;
  }
}
BENCHMARK(BM_NextDeadlineFourTimers);

}  // namespace
}  // namespace vtime::arch

BENCHMARK_MAIN();
