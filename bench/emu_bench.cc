// What a trapped counter read costs on the emulated backend, next to the
// model alone on the same access. The guest runs a loop of N `mrs x0,
// cntvct_el0` (and, for the loop's own cost, the same loop with a NOP); each
// benchmark iteration is one Run of N reads, reported per read.
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <cstring>
#include <memory>

#include "vtime/arch/emulate.h"
#include "vtime/backend/emu.h"
#include "vtime/backend/registers.h"

namespace vtime::emu {
namespace {

namespace regs = backend::regs;

constexpr std::uint64_t kRam = 0x40000000;
constexpr std::size_t kRamSize = 1 << 20;
constexpr std::uint64_t kCode = kRam + 0x1000;
constexpr std::uint64_t kReads = 1'000'000;

constexpr std::uint32_t kMrsX0Cntvct = 0xd53be040;  // mrs x0, cntvct_el0
constexpr std::uint32_t kNop = 0xd503201f;
std::uint32_t Loop(std::uint32_t body, std::size_t i) {
  const std::uint32_t code[] = {
      body,        // 0: the access
      0xf1000463,  // subs x3, x3, #1
      0x54ffffc1,  // b.ne 0
      0xd2800100,  // movz x0, #0x8
      0xf2b08000,  // movk x0, #0x8400, lsl #16 (PSCI SYSTEM_OFF)
      0xd4000002,  // hvc #0
  };
  return code[i];
}

// One VM with one vCPU and a megabyte of RAM holding the loop.
struct Emu {
  std::unique_ptr<backend::Hypervisor> hv;
  std::unique_ptr<backend::Vm> vm;
  std::unique_ptr<backend::Vcpu> vcpu;
  std::uint8_t* ram = nullptr;
  arch::VmClock clock;

  explicit Emu(std::uint32_t body) {
    hv = std::move(CreateEmuHypervisor().value());
    vm = std::move(hv->CreateVm({.irqchip = backend::IrqChipKind::kUser}).value());
    ram = static_cast<std::uint8_t*>(
        mmap(nullptr, kRamSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (std::size_t i = 0; i < 6; ++i) {
      const std::uint32_t word = Loop(body, i);
      std::memcpy(ram + (kCode - kRam) + 4 * i, &word, 4);
    }
    (void)vm->MapMemory(0, kRam, {ram, kRamSize});
    vcpu = std::move(vm->CreateVcpu({}).value());
    (void)vm->ApplyOffsets(clock, hv->Clock().Count().value, 0);
  }
  ~Emu() {
    vcpu.reset();
    vm.reset();
    munmap(ram, kRamSize);
  }
  void RunLoop(std::uint64_t n) {
    (void)vcpu->SetRegister(regs::Pstate(), 0x3c5);
    (void)vcpu->SetRegister(regs::Core(3), n);
    (void)vcpu->SetRegister(regs::Core(regs::kPc), kCode);
    auto exit = vcpu->Run();
    if (!exit || exit->kind != backend::ExitKind::kShutdown) std::abort();
  }
};

void Report(benchmark::State& state) {
  const auto reads = state.iterations() * static_cast<benchmark::IterationCount>(kReads);
  state.SetItemsProcessed(reads);
  state.counters["ns_per_read"] = benchmark::Counter(
      static_cast<double>(reads), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// The whole trapped path: Unicorn's hook, the decode, the model, the host
// clock read, the write of Xt.
void BM_EmuTrappedCntvctRead(benchmark::State& state) {
  Emu emu(kMrsX0Cntvct);
  for (auto _ : state) emu.RunLoop(kReads);
  Report(state);
}
BENCHMARK(BM_EmuTrappedCntvctRead)->Unit(benchmark::kMillisecond);

// The same loop with a NOP for the read: what the loop itself costs.
void BM_EmuLoopWithNop(benchmark::State& state) {
  Emu emu(kNop);
  for (auto _ : state) emu.RunLoop(kReads);
  Report(state);
}
BENCHMARK(BM_EmuLoopWithNop)->Unit(benchmark::kMillisecond);

// The same NOP loop with the virtual timer armed far ahead, so that every
// block boundary checks the deadline against the host clock.
void BM_EmuLoopWithNopTimerArmed(benchmark::State& state) {
  Emu emu(kNop);
  (void)emu.vcpu->SetRegister(regs::kCntvCval, ~std::uint64_t{0} >> 1);
  (void)emu.vcpu->SetRegister(regs::kCntvCtl, 1);
  for (auto _ : state) emu.RunLoop(kReads);
  Report(state);
}
BENCHMARK(BM_EmuLoopWithNopTimerArmed)->Unit(benchmark::kMillisecond);

// A store to RAM for the body: what the dirty-log write hook (always
// installed, logging off here) adds to every store.
void BM_EmuLoopWithStore(benchmark::State& state) {
  Emu emu(0xf90000e3);  // str x3, [x7]
  (void)emu.vcpu->SetRegister(regs::Core(7), kRam + 0x8000);
  for (auto _ : state) emu.RunLoop(kReads);
  Report(state);
}
BENCHMARK(BM_EmuLoopWithStore)->Unit(benchmark::kMillisecond);

// The model alone on the same access (the decode done, as Unicorn hands the
// encoding over), with "now" a fixed count.
void BM_ModelCntvctRead(benchmark::State& state) {
  arch::VmClock clock;
  (void)clock.SetVmOffset(Ticks{123'456'789});
  arch::VcpuTimerState vcpu;
  arch::SysRegAccess access;
  access.encoding = arch::EncodingOf(arch::SysReg::CNTVCT_EL0);
  access.reg = arch::SysReg::CNTVCT_EL0;
  access.is_read = true;
  HostCount now{1'000'000'000'000};
  for (auto _ : state) {
    const arch::Emulation e = arch::EmulateSysRegAccess(access, 0, vcpu, {}, {&clock, now});
    benchmark::DoNotOptimize(e);
    ++now.value;
  }
}
BENCHMARK(BM_ModelCntvctRead);

// The model with "now" from the emulated host clock, as the hook does it.
void BM_ModelCntvctReadWithHostClock(benchmark::State& state) {
  const EmuHostClock host(FrequencyHz(1'000'000'000));
  arch::VmClock clock;
  (void)clock.SetVmOffset(Ticks{123'456'789});
  arch::VcpuTimerState vcpu;
  arch::SysRegAccess access;
  access.encoding = arch::EncodingOf(arch::SysReg::CNTVCT_EL0);
  access.reg = arch::SysReg::CNTVCT_EL0;
  access.is_read = true;
  for (auto _ : state) {
    const arch::Emulation e =
        arch::EmulateSysRegAccess(access, 0, vcpu, {}, {&clock, host.Count()});
    benchmark::DoNotOptimize(e);
  }
}
BENCHMARK(BM_ModelCntvctReadWithHostClock);

}  // namespace
}  // namespace vtime::emu

BENCHMARK_MAIN();
