// What the C API costs over the C++ path on the hottest call a VMM makes
// through it: a trapped counter or timer access, decoded from its ESR and
// emulated. Each pair runs the same access against the same state, once
// through vtime::arch directly (linked statically) and once through
// vtime_emulate_trap in libvtime.so (a PLT call, handle checks, the
// exception guard and the output struct; the library is built with LTO, so
// the model is inlined into it); the difference is the overhead.
//
// The BM_Overhead_* benchmarks measure that difference directly, robustly
// on a busy machine: each iteration times a short batch of C++ calls and a
// batch of C API calls back to back (alternating which goes first), and the
// fastest batch of each kind over the run is reported (counters cxx_ns,
// capi_ns and overhead_ns, per call). Interference from other processes
// only ever adds time, so the minimum is the cost itself.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>

#include "vtime/arch/emulate.h"
#include "vtime/arch/esr.h"
#include "vtime/arch/vm_clock.h"
#include "vtime/vtime.h"

namespace vtime::arch {
namespace {

constexpr std::uint64_t kFrequency = 1'000'000'000;
constexpr std::uint64_t kOffset = 123'456'789;
constexpr std::uint64_t kStart = 1'000'000'000'000;

// The C++ model: a VM offset set, a nested vCPU with all four timers armed.
struct CxxFixture {
  VmClock clock{HostTimerFeatures{}};
  VcpuTimerState vcpu;
  HostCount now{kStart};
  CxxFixture() {
    (void)clock.SetVmOffset(Ticks{kOffset});
    vcpu.features.el2 = true;
    for (TimerId id : kAllTimers) {
      vcpu.timers[id].WriteCval(Ticks{now.value + 1'000 * (static_cast<std::uint64_t>(id) + 1)});
      vcpu.timers[id].WriteCtl(ctl::kEnable);
    }
  }
};

// The same state behind C handles.
struct CFixture {
  vtime_clock* clock = nullptr;
  vtime_vcpu* vcpu = nullptr;
  std::uint64_t now = kStart;
  CFixture() {
    if (vtime_clock_create(kFrequency, VTIME_HOST_LINUX_6_4, &clock) != VTIME_OK ||
        vtime_clock_set_vm_offset(clock, kOffset) != VTIME_OK ||
        vtime_vcpu_create(VTIME_VCPU_EL2, &vcpu) != VTIME_OK) {
      std::abort();
    }
    for (std::uint32_t t = 0; t < 4; ++t) {
      if (vtime_vcpu_set_timer(vcpu, t, VTIME_CTL_ENABLE, now + 1'000 * (t + 1)) != VTIME_OK) {
        std::abort();
      }
    }
  }
  CFixture(const CFixture&) = delete;
  CFixture& operator=(const CFixture&) = delete;
  ~CFixture() {
    vtime_vcpu_destroy(vcpu);
    vtime_clock_destroy(clock);
  }
};

void BM_Cxx_TrappedCntvctRead(benchmark::State& state) {
  CxxFixture f;
  const std::uint64_t esr = EncodeSysRegTrap(EncodingOf(SysReg::CNTVCT_EL0), true, 2);
  const GuestContext ctx{};
  for (auto _ : state) {
    benchmark::DoNotOptimize(esr);
    const auto access = DecodeSysRegTrap(esr);
    const Emulation e =
        EmulateSysRegAccess(*access, 0, f.vcpu, ctx, {&f.clock, f.now, FrequencyHz{kFrequency}});
    benchmark::DoNotOptimize(e);
    ++f.now.value;
  }
}
BENCHMARK(BM_Cxx_TrappedCntvctRead);

void BM_CApi_TrappedCntvctRead(benchmark::State& state) {
  CFixture f;
  vtime_trap trap{};
  if (vtime_encode_trap(VTIME_SYSREG_CNTVCT_EL0, 1, 2, &trap.esr) != VTIME_OK) std::abort();
  trap.el = VTIME_EL1;
  trap.host_count = f.now;
  vtime_emulation e;
  for (auto _ : state) {
    benchmark::DoNotOptimize(trap);
    const vtime_status s = vtime_emulate_trap(f.vcpu, f.clock, &trap, &e);
    benchmark::DoNotOptimize(s);
    benchmark::DoNotOptimize(e);
    ++trap.host_count;
  }
}
BENCHMARK(BM_CApi_TrappedCntvctRead);

void BM_Cxx_TrappedCntvCvalWrite(benchmark::State& state) {
  CxxFixture f;
  const std::uint64_t esr = EncodeSysRegTrap(EncodingOf(SysReg::CNTV_CVAL_EL0), false, 5);
  const GuestContext ctx{};
  std::uint64_t value = 42;
  for (auto _ : state) {
    benchmark::DoNotOptimize(esr);
    const auto access = DecodeSysRegTrap(esr);
    const Emulation e = EmulateSysRegAccess(*access, value++, f.vcpu, ctx,
                                            {&f.clock, f.now, FrequencyHz{kFrequency}});
    benchmark::DoNotOptimize(e);
  }
}
BENCHMARK(BM_Cxx_TrappedCntvCvalWrite);

void BM_CApi_TrappedCntvCvalWrite(benchmark::State& state) {
  CFixture f;
  vtime_trap trap{};
  if (vtime_encode_trap(VTIME_SYSREG_CNTV_CVAL_EL0, 0, 5, &trap.esr) != VTIME_OK) std::abort();
  trap.el = VTIME_EL1;
  trap.host_count = f.now;
  trap.write_value = 42;
  vtime_emulation e;
  for (auto _ : state) {
    benchmark::DoNotOptimize(trap);
    const vtime_status s = vtime_emulate_trap(f.vcpu, f.clock, &trap, &e);
    benchmark::DoNotOptimize(s);
    benchmark::DoNotOptimize(e);
    ++trap.write_value;
  }
}
BENCHMARK(BM_CApi_TrappedCntvCvalWrite);

void BM_Cxx_NextDeadline(benchmark::State& state) {
  CxxFixture f;
  for (auto _ : state) {
    const TimerCounts counts = f.clock.CountsFor(f.now, f.vcpu.nested());
    const auto deadline = f.vcpu.timers.NextDeadline(counts, f.vcpu.active_timers());
    // The C API also reports the delta in nanoseconds: the same work here.
    const Nanoseconds ns = TicksToNanosecondsCeil(deadline->delta, FrequencyHz{kFrequency});
    benchmark::DoNotOptimize(deadline);
    benchmark::DoNotOptimize(ns);
    ++f.now.value;
  }
}
BENCHMARK(BM_Cxx_NextDeadline);

void BM_CApi_NextDeadline(benchmark::State& state) {
  CFixture f;
  vtime_deadline d;
  for (auto _ : state) {
    const vtime_status s = vtime_vcpu_next_deadline(f.vcpu, f.clock, f.now, &d);
    benchmark::DoNotOptimize(s);
    benchmark::DoNotOptimize(d);
    ++f.now;
  }
}
BENCHMARK(BM_CApi_NextDeadline);

// Times `batch` calls of cxx and of capi back to back per iteration and
// reports the fastest batch of each, per call.
template <class Cxx, class CApi>
void Paired(benchmark::State& state, Cxx&& cxx, CApi&& capi) {
  using Clock = std::chrono::steady_clock;
  constexpr int kBatch = 200;
  double best_cxx = std::numeric_limits<double>::infinity();
  double best_capi = best_cxx;
  auto time = [](auto& body) {
    const auto start = Clock::now();
    for (int i = 0; i < kBatch; ++i) body();
    return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / kBatch;
  };
  bool cxx_first = true;
  for (auto _ : state) {
    if (cxx_first) {
      best_cxx = std::min(best_cxx, time(cxx));
      best_capi = std::min(best_capi, time(capi));
    } else {
      best_capi = std::min(best_capi, time(capi));
      best_cxx = std::min(best_cxx, time(cxx));
    }
    cxx_first = !cxx_first;
  }
  state.counters["cxx_ns"] = best_cxx;
  state.counters["capi_ns"] = best_capi;
  state.counters["overhead_ns"] = best_capi - best_cxx;
}

void BM_Overhead_TrappedCntvctRead(benchmark::State& state) {
  CxxFixture cf;
  CFixture f;
  const std::uint64_t esr = EncodeSysRegTrap(EncodingOf(SysReg::CNTVCT_EL0), true, 2);
  const GuestContext ctx{};
  vtime_trap trap{};
  trap.esr = esr;
  trap.el = VTIME_EL1;
  trap.host_count = f.now;
  vtime_emulation e;
  Paired(
      state,
      [&] {
        benchmark::DoNotOptimize(esr);
        const auto access = DecodeSysRegTrap(esr);
        const Emulation em = EmulateSysRegAccess(*access, 0, cf.vcpu, ctx,
                                                 {&cf.clock, cf.now, FrequencyHz{kFrequency}});
        benchmark::DoNotOptimize(em);
        benchmark::DoNotOptimize(access->rt);  // where the VMM puts the value
        ++cf.now.value;
      },
      [&] {
        benchmark::DoNotOptimize(trap);
        const vtime_status s = vtime_emulate_trap(f.vcpu, f.clock, &trap, &e);
        benchmark::DoNotOptimize(s);
        benchmark::DoNotOptimize(e);
        ++trap.host_count;
      });
}
BENCHMARK(BM_Overhead_TrappedCntvctRead)->Iterations(20000);

void BM_Overhead_TrappedCntvCvalWrite(benchmark::State& state) {
  CxxFixture cf;
  CFixture f;
  const std::uint64_t esr = EncodeSysRegTrap(EncodingOf(SysReg::CNTV_CVAL_EL0), false, 5);
  const GuestContext ctx{};
  std::uint64_t value = 42;
  vtime_trap trap{};
  trap.esr = esr;
  trap.el = VTIME_EL1;
  trap.host_count = f.now;
  trap.write_value = 42;
  vtime_emulation e;
  Paired(
      state,
      [&] {
        benchmark::DoNotOptimize(esr);
        const auto access = DecodeSysRegTrap(esr);
        const Emulation em = EmulateSysRegAccess(*access, value++, cf.vcpu, ctx,
                                                 {&cf.clock, cf.now, FrequencyHz{kFrequency}});
        benchmark::DoNotOptimize(em);
        benchmark::DoNotOptimize(access->rt);
      },
      [&] {
        benchmark::DoNotOptimize(trap);
        const vtime_status s = vtime_emulate_trap(f.vcpu, f.clock, &trap, &e);
        benchmark::DoNotOptimize(s);
        benchmark::DoNotOptimize(e);
        ++trap.write_value;
      });
}
BENCHMARK(BM_Overhead_TrappedCntvCvalWrite)->Iterations(20000);

// The floor under every pair above: one call into libvtime.so that does
// nothing (vtime_version returns a constant) against the same value inline.
// A call into a shared library is an indirect jump through the PLT plus
// call and return; no wrapper can cost less than this.
void BM_Overhead_EmptyLibraryCall(benchmark::State& state) {
  const std::uint32_t version = VTIME_VERSION;
  Paired(
      state, [&] { benchmark::DoNotOptimize(version); },
      [&] {
        const std::uint32_t v = vtime_version();
        benchmark::DoNotOptimize(v);
      });
}
BENCHMARK(BM_Overhead_EmptyLibraryCall)->Iterations(20000);

}  // namespace
}  // namespace vtime::arch

BENCHMARK_MAIN();
