// The emulated backend: the project's guest programs end to end on it, and
// the seam's promises checked with hand-assembled code.
#include "vtime/backend/emu.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <span>
#include <sstream>
#include <thread>
#include <vector>

#include "unit/backend/emu_machine.h"
#include "vmm/layout.h"
#include "vtime/backend/registers.h"
#include "vtime/pvtime/record.h"

#ifndef VTIME_GUEST_DIR
#error "VTIME_GUEST_DIR must name the directory of the built guest programs"
#endif

namespace vtime::emu {
namespace {

namespace regs = backend::regs;
using testing::Machine;
using testing::MachineConfig;
using testing::RunResult;

// A few instructions, assembled by hand.
constexpr std::uint32_t kMrsX1Cntvct = 0xd53be041;  // mrs x1, cntvct_el0
constexpr std::uint32_t kMrsX2Cntpct = 0xd53be022;  // mrs x2, cntpct_el0
constexpr std::uint32_t kMrsX3Cntfrq = 0xd53be003;  // mrs x3, cntfrq_el0
constexpr std::uint32_t kMovzX0_0008 = 0xd2800100;  // movz x0, #0x8
constexpr std::uint32_t kMovkX0_8400 = 0xf2b08000;  // movk x0, #0x8400, lsl #16
constexpr std::uint32_t kHvc0 = 0xd4000002;         // hvc #0

std::vector<std::uint8_t> ReadGuest(const std::string& name) {
  const std::string path = std::string(VTIME_GUEST_DIR) + "/" + name + ".elf";
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    ADD_FAILURE() << "guest program " << path
                  << " is missing: build the vtime_guests target (make -C guests O=...)";
    return {};
  }
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

unsigned CountLines(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  unsigned n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) ++n;
  }
  return n;
}

// Runs a guest program and checks its verdict: finisher status 0, at least
// one "ok" line and no "not ok".
RunResult RunGuest(const std::string& name, MachineConfig config,
                   std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  const std::vector<std::uint8_t> elf = ReadGuest(name);
  if (elf.empty()) return {};
  auto m = Machine::Create(config);
  if (!m) {
    ADD_FAILURE() << m.error().Message();
    return {};
  }
  if (auto r = (*m)->LoadProgram(elf); !r) {
    ADD_FAILURE() << r.error().Message();
    return {};
  }
  RunResult run = (*m)->Run(timeout);
  std::printf("[ emu      ] %s: %.3f s wall, %u reset(s), %llu timer line reports\n", name.c_str(),
              run.wall_seconds, run.resets,
              static_cast<unsigned long long>(run.timer_line_reports));
  // VTIME_EMU_SHOW=1 prints the guest's output.
  if (std::getenv("VTIME_EMU_SHOW") != nullptr) std::printf("%s", run.output.c_str());
  EXPECT_FALSE(run.timed_out) << name << " timed out; output so far:\n" << run.output;
  EXPECT_EQ(run.error, "") << run.output;
  EXPECT_TRUE(run.finisher.has_value()) << run.output;
  if (run.finisher) {
    EXPECT_EQ(*run.finisher, 0U) << run.output;
  }
  EXPECT_GE(CountLines(run.output, "ok - "), 1U) << run.output;
  EXPECT_EQ(CountLines(run.output, "not ok"), 0U) << run.output;
  EXPECT_NE(run.output.find("vtguest: exit 0"), std::string::npos) << run.output;
  return run;
}

TEST(EmuGuest, Counters) { RunGuest("counters", MachineConfig{}); }

TEST(EmuGuest, Timer) { RunGuest("timer", MachineConfig{}); }

TEST(EmuGuest, TimerStormTakesExactlyTheInterruptsItProgrammed) {
  const RunResult run = RunGuest("timer_storm", MachineConfig{});
  EXPECT_NE(run.output.find("timer_storm: irqs=1000 "), std::string::npos) << run.output;
}

TEST(EmuGuest, ResetKeepsTheCounterGoing) {
  const RunResult run = RunGuest("reset", MachineConfig{});
  EXPECT_EQ(run.resets, 1U) << run.output;
}

TEST(EmuGuest, Clockwatch) { RunGuest("clockwatch", MachineConfig{}); }

TEST(EmuGuest, SmpCountersAgreeAcrossFourVcpus) {
  const RunResult run = RunGuest("smp", MachineConfig{.cpus = 4, .vm_offset = {}});
  EXPECT_EQ(CountLines(run.output, "smp: cpu"), 6U) << run.output;  // 3 CPU_ON + 3 reports
}

TEST(EmuGuest, Pvtime) {
  const RunResult run = RunGuest("pvtime", MachineConfig{.pvtime = true, .vm_offset = {}});
  EXPECT_NE(run.output.find("pvtime: ipa=0x90a0000"), std::string::npos) << run.output;
}

TEST(EmuGuest, IpiStormBetweenTwoVcpus) {
  RunGuest("ipi_storm", MachineConfig{.cpus = 2, .vm_offset = {}});
}

TEST(EmuGuest, TimerMigrateWithoutAPause) { RunGuest("timer_migrate", MachineConfig{}); }

TEST(EmuGuest, PvtimeScribble) {
  RunGuest("pvtime_scribble", MachineConfig{.pvtime = true, .vm_offset = {}});
}

// A snapshot through the seam mid-run (registers, timers, power states,
// RAM, the GIC), restored into a new VM whose offset hides the pause
// (freeze): timer_migrate's timers, armed before the pause, fire once each,
// neither early nor late, after it.
TEST(EmuGuest, TimerMigrateAcrossASnapshotIntoANewVm) {
  const std::vector<std::uint8_t> elf = ReadGuest("timer_migrate");
  ASSERT_FALSE(elf.empty());
  auto a = Machine::Create(MachineConfig{});
  ASSERT_TRUE(a) << a.error().Message();
  ASSERT_TRUE((*a)->LoadProgram(elf));
  backend::Vcpu& va = (*a)->vcpu(0);
  // The guest arms its timers after calibrating a loop bound (about 0.35 s
  // here, longer under the sanitizers): run in slices until it has, then
  // once more, so that the pause falls inside its watching loop.
  Result<state::VcpuTime> armed = va.CaptureTimers();
  std::string early;
  for (int slice = 0; slice < 100 && armed && (armed->el1_virtual.ctl & 1) == 0; ++slice) {
    const RunResult part = (*a)->RunFor(std::chrono::milliseconds(100));
    ASSERT_TRUE(part.paused) << part.output;
    ASSERT_EQ(part.error, "");
    early += part.output;
    armed = va.CaptureTimers();
  }
  ASSERT_TRUE(armed);
  ASSERT_NE(armed->el1_virtual.ctl & 1, 0U) << "the guest never armed its timers";
  const RunResult first = (*a)->RunFor(std::chrono::milliseconds(300));
  ASSERT_TRUE(first.paused) << first.output;
  ASSERT_EQ(first.error, "");
  const std::uint64_t paused_at = (*a)->hypervisor().Clock().Count().value;
  auto saved_regs = va.SaveRegisters(false);
  ASSERT_TRUE(saved_regs) << saved_regs.error().Message();
  auto saved_timers = va.CaptureTimers();
  ASSERT_TRUE(saved_timers);
  EXPECT_NE(saved_timers->el1_virtual.ctl & 1, 0U) << "the guest armed its timers by now";
  const std::vector<std::uint8_t> gic = (*a)->SaveGic();
  const std::vector<std::uint8_t> ram((*a)->ram().begin(), (*a)->ram().end());
  const std::uint64_t old_offset = (*a)->clock().virtual_offset().value;

  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto b = Machine::Create(MachineConfig{});
  ASSERT_TRUE(b) << b.error().Message();
  std::memcpy((*b)->ram().data(), ram.data(), ram.size());
  backend::Vcpu& vb = (*b)->vcpu(0);
  for (const auto& r : *saved_regs) ASSERT_TRUE(vb.RestoreRegister(r)) << std::hex << r.id;
  // Offsets before timers; the new offset hides the pause (freeze).
  const std::uint64_t now = (*b)->hypervisor().Clock().Count().value;
  const std::uint64_t offset = old_offset + (now - paused_at);
  auto applied = (*b)->vm().ApplyOffsets((*b)->clock(), offset, offset);
  ASSERT_TRUE(applied) << applied.error().Message();
  auto restored = vb.RestoreTimers(*saved_timers);
  ASSERT_TRUE(restored) << restored.error().Message();
  ASSERT_TRUE((*b)->RestoreGic(gic));
  const RunResult second = (*b)->Run(std::chrono::seconds(30));
  const std::string output = early + first.output + second.output;
  EXPECT_EQ(second.error, "") << output;
  EXPECT_EQ(second.finisher.value_or(1), 0U) << output;
  EXPECT_EQ(CountLines(output, "not ok"), 0U) << output;
  EXPECT_EQ(CountLines(output, "ok - timer_migrate"), 7U) << output;
  // The pause is hidden: no step of 100 ms or more in the guest's counter.
  const std::size_t at = output.find("max_step_ticks=");
  ASSERT_NE(at, std::string::npos) << output;
  EXPECT_LT(std::stoull(output.substr(at + 15)), 100'000'000ULL) << output;
  if (std::getenv("VTIME_EMU_SHOW") != nullptr) std::printf("%s", output.c_str());
}

// The record counts the vCPU thread's run delay: with more busy host
// threads than CPUs for the whole run, it must have grown.
TEST(EmuGuest, PvtimeStolenTimeGrowsWhenTheHostIsBusy) {
  const std::vector<std::uint8_t> elf = ReadGuest("pvtime");
  ASSERT_FALSE(elf.empty());
  auto m = Machine::Create(MachineConfig{.pvtime = true, .vm_offset = {}});
  ASSERT_TRUE(m) << m.error().Message();
  ASSERT_TRUE((*m)->LoadProgram(elf));
  std::atomic<bool> stop{false};
  std::vector<std::thread> hogs;
  const unsigned n = 2 * std::max(1U, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) {
    hogs.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
      }
    });
  }
  const RunResult run = (*m)->Run(std::chrono::seconds(60));
  stop.store(true);
  for (auto& t : hogs) t.join();
  ASSERT_EQ(run.error, "") << run.output;
  EXPECT_EQ(run.finisher.value_or(1), 0U) << run.output;
  auto record = pvtime::ReadRecord((*m)->pvtime_page().subspan(0, pvtime::kRecordSize));
  ASSERT_TRUE(record);
  EXPECT_EQ(record->revision, 0U);
  EXPECT_GT(record->stolen_ns, 0U) << run.output;
  std::printf("[ emu      ] pvtime under %u busy threads: stolen_ns=%llu over %.3f s\n", n,
              static_cast<unsigned long long>(record->stolen_ns), run.wall_seconds);
}

TEST(EmuBackend, CounterIsHostCountMinusTheVmOffset) {
  auto m = Machine::Create(MachineConfig{.vm_offset = 12345});
  ASSERT_TRUE(m) << m.error().Message();
  // Move the offset once more, the way a VMM restoring a snapshot does.
  const std::uint64_t now = (*m)->hypervisor().Clock().Count().value;
  const std::uint64_t offset = now - 5'000'000'000ULL;  // the guest counter at 5 s
  auto applied = (*m)->vm().ApplyOffsets((*m)->clock(), offset, offset);
  ASSERT_TRUE(applied) << applied.error().Message();
  EXPECT_EQ(applied->vm_offset_ioctls, 1U);
  EXPECT_EQ(applied->counter_value_writes, 0U);
  EXPECT_TRUE((*m)->clock().vm_offset_set());
  EXPECT_EQ((*m)->clock().virtual_offset().value, offset);
  const std::uint32_t code[] = {kMrsX1Cntvct, kMrsX2Cntpct, kMrsX3Cntfrq,
                                kMovzX0_0008, kMovkX0_8400, kHvc0};
  ASSERT_TRUE((*m)->LoadCode(vmm::layout::kRam + 0x1000, code));
  const std::uint64_t before = (*m)->hypervisor().Clock().Count().value;
  const RunResult run = (*m)->Run(std::chrono::seconds(10));
  const std::uint64_t after = (*m)->hypervisor().Clock().Count().value;
  ASSERT_EQ(run.error, "");
  EXPECT_TRUE(run.shutdown);
  backend::Vcpu& v = (*m)->vcpu(0);
  const std::uint64_t vct = v.GetRegister(regs::Core(1)).value();
  const std::uint64_t pct = v.GetRegister(regs::Core(2)).value();
  EXPECT_GE(vct, before - offset);
  EXPECT_LE(vct, after - offset);
  EXPECT_GE(pct, vct);
  EXPECT_LE(pct, after - offset);
  EXPECT_EQ(v.GetRegister(regs::Core(3)).value(), 1'000'000'000U);
  // Counter-value writes after the VM offset are accepted and ignored.
  ASSERT_TRUE(v.SetRegister(regs::kCntvct, 7));
  const std::uint64_t read = v.GetRegister(regs::kCntvct).value();
  EXPECT_GT(read, 5'000'000'000ULL);
}

TEST(EmuBackend, BackendIrqChipIsRefusedWithTheWayOut) {
  auto hv = CreateEmuHypervisor();
  ASSERT_TRUE(hv) << hv.error().Message();
  EXPECT_EQ((*hv)->Name(), "emu");
  EXPECT_TRUE((*hv)->Caps().counter_offset);
  EXPECT_TRUE((*hv)->Caps().user_irqchip);
  EXPECT_FALSE((*hv)->Caps().backend_irqchip);
  auto vm = (*hv)->CreateVm(backend::VmConfig{.irqchip = backend::IrqChipKind::kBackend});
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(vm.error().context.find("--irqchip user"), std::string::npos) << vm.error().context;
}

TEST(EmuBackend, FrequencyIsTheVmmsChoice) {
  EXPECT_FALSE(CreateEmuHypervisor(EmuOptions{.counter_frequency_hz = 0}));
  auto hv = CreateEmuHypervisor(EmuOptions{.counter_frequency_hz = 62'500'000});
  ASSERT_TRUE(hv);
  EXPECT_EQ((*hv)->Clock().FrequencyHz(), 62'500'000U);
  const state::CapturePair a = (*hv)->Clock().CaptureNow();
  const state::CapturePair b = (*hv)->Clock().CaptureNow();
  EXPECT_LE(a.host_counter, b.host_counter);
  EXPECT_GT(a.wall_clock_ns, 0);
}

TEST(EmuBackend, DirtyLogReportsEveryPageStoredTo) {
  auto m = Machine::Create(MachineConfig{});
  ASSERT_TRUE(m) << m.error().Message();
  const std::uint64_t ram = vmm::layout::kRam;
  ASSERT_TRUE((*m)->vm().MapMemory(0, ram, (*m)->ram(), /*dirty_log=*/true));
  std::vector<std::uint64_t> bitmap((*m)->ram().size() / 4096 / 64);
  ASSERT_TRUE((*m)->vm().DirtyLog(0, bitmap));  // empty the log
  // x4 = 0x40100000, x5 = 0x40203ff8: str x4, [x4]; str x4, [x5]; then SYSTEM_OFF.
  const std::uint32_t code[] = {0xd2a80204,  // movz x4, #0x4010, lsl #16
                                0xd287ff05,  // movz x5, #0x3ff8
                                0xf2a80405,  // movk x5, #0x4020, lsl #16
                                0xf9000084,  // str x4, [x4]
                                0xf90000a4,  // str x4, [x5]
                                kMovzX0_0008, kMovkX0_8400, kHvc0};
  ASSERT_TRUE((*m)->LoadCode(ram + 0x1000, code));
  ASSERT_TRUE((*m)->vm().DirtyLog(0, bitmap));  // the test's own copy of the code
  const RunResult run = (*m)->Run(std::chrono::seconds(10));
  ASSERT_EQ(run.error, "");
  ASSERT_TRUE((*m)->vm().DirtyLog(0, bitmap));
  std::vector<std::uint64_t> pages;
  for (std::size_t w = 0; w < bitmap.size(); ++w) {
    for (unsigned b = 0; b < 64; ++b) {
      if ((bitmap[w] >> b) & 1) pages.push_back(w * 64 + b);
    }
  }
  EXPECT_EQ(pages, (std::vector<std::uint64_t>{0x100, 0x203}));
  // Logging off: the log is refused.
  ASSERT_TRUE((*m)->vm().MapMemory(0, ram, (*m)->ram(), /*dirty_log=*/false));
  EXPECT_FALSE((*m)->vm().DirtyLog(0, bitmap));
}

// Logging turned on while the guest runs: MapMemory returns once the running
// vCPU has its write hook, so the page it keeps storing to is in the log.
TEST(EmuBackend, DirtyLogStartedWhileTheGuestRunsMissesNoStore) {
  auto m = Machine::Create(MachineConfig{});
  ASSERT_TRUE(m) << m.error().Message();
  const std::uint32_t code[] = {
      0xd2860007,  // movz x7, #0x3000
      0xf2a80007,  // movk x7, #0x4000, lsl #16
      0xf94000e6,  // 1: ldr x6, [x7]
      0x910004c6,  // add x6, x6, #1
      0xf90000e6,  // str x6, [x7]
      0x17fffffd,  // b 1b
  };
  ASSERT_TRUE((*m)->LoadCode(vmm::layout::kRam + 0x1000, code));
  backend::Vcpu& v = (*m)->vcpu(0);
  std::string how;
  std::thread runner([&] {
    auto exit = v.Run();
    how = exit ? (exit->kind == backend::ExitKind::kInterrupted ? "" : exit->detail)
               : exit.error().Message();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::uint64_t ram = vmm::layout::kRam;
  ASSERT_TRUE((*m)->vm().MapMemory(0, ram, (*m)->ram(), /*dirty_log=*/true));
  // A store made after MapMemory returned: the counter moved since.
  auto counter = [&] {
    std::atomic_ref<std::uint64_t> c(
        *reinterpret_cast<std::uint64_t*>((*m)->ram().data() + 0x3000));
    return c.load();
  };
  const std::uint64_t at_start = counter();
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (counter() == at_start && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  std::vector<std::uint64_t> bitmap((*m)->ram().size() / 4096 / 64);
  ASSERT_TRUE((*m)->vm().DirtyLog(0, bitmap));
  v.RequestExit(true);
  runner.join();
  EXPECT_EQ(how, "");
  std::uint64_t stores = 0;
  std::memcpy(&stores, (*m)->ram().data() + 0x3000, 8);
  EXPECT_GT(stores, 0U);
  EXPECT_EQ(bitmap[0], std::uint64_t{1} << 3);  // page 3 only: the code page is never written
  for (std::size_t w = 1; w < bitmap.size(); ++w) ASSERT_EQ(bitmap[w], 0U) << w;
}

TEST(EmuBackend, TimersCaptureAndRestoreWithoutIstatus) {
  auto m = Machine::Create(MachineConfig{});
  ASSERT_TRUE(m) << m.error().Message();
  backend::Vcpu& v = (*m)->vcpu(0);
  state::VcpuTime t;
  t.el1_virtual = state::TimerState{1, 100};  // enabled, long expired
  t.el1_physical = state::TimerState{3, ~std::uint64_t{0}};
  t.cntkctl_el1 = 0x3;
  auto n = v.RestoreTimers(t);
  ASSERT_TRUE(n) << n.error().Message();
  EXPECT_EQ(*n, 5U);
  EXPECT_EQ(v.GetRegister(regs::kCntvCtl).value(), 5U);  // ISTATUS reads back
  auto back = v.CaptureTimers();
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, t);
  state::VcpuTime nested = t;
  nested.nested = true;
  EXPECT_FALSE(v.RestoreTimers(nested));
}

TEST(EmuBackend, RegistersSaveAndRestore) {
  auto m = Machine::Create(MachineConfig{});
  ASSERT_TRUE(m) << m.error().Message();
  backend::Vcpu& v = (*m)->vcpu(0);
  ASSERT_TRUE(v.SetRegister(regs::Core(7), 0x1234));
  ASSERT_TRUE(v.SetRegister(regs::SpEl1(), 0x40010000));
  ASSERT_TRUE(v.SetRegister(regs::Core(regs::kSp), 0x40020000));
  auto saved = v.SaveRegisters(false);
  ASSERT_TRUE(saved) << saved.error().Message();
  for (const auto& r : *saved) EXPECT_FALSE(regs::IsTimeRegister(r.id)) << std::hex << r.id;
  ASSERT_TRUE(v.SetRegister(regs::Core(7), 0));
  ASSERT_TRUE(v.SetRegister(regs::SpEl1(), 0));
  for (const auto& r : *saved) {
    auto ok = v.RestoreRegister(r);
    EXPECT_TRUE(ok) << std::hex << r.id << ": " << (ok ? "" : ok.error().Message());
  }
  EXPECT_EQ(v.GetRegister(regs::Core(7)).value(), 0x1234U);
  EXPECT_EQ(v.GetRegister(regs::SpEl1()).value(), 0x40010000U);
  EXPECT_EQ(v.GetRegister(regs::Core(regs::kSp)).value(), 0x40020000U);
  EXPECT_EQ(v.GetRegister(regs::kMpidrEl1).value(), 0x80000000U);
  auto with_counters = v.SaveRegisters(true);
  ASSERT_TRUE(with_counters);
  EXPECT_EQ(with_counters->size(), saved->size() + 2);
  EXPECT_FALSE(v.GetRegister(0x6030000000990000));
}

TEST(EmuBackend, UndefinedInstructionsAndRegistersTrapIntoTheGuest) {
  auto m = Machine::Create(MachineConfig{});
  ASSERT_TRUE(m) << m.error().Message();
  const std::uint64_t code = vmm::layout::kRam + 0x1000;
  // The sync vector (current EL, SP_ELx) counts in x5 and steps over.
  const std::uint32_t handler[] = {
      0xd5384022,  // mrs x2, elr_el1
      0x91001042,  // add x2, x2, #4
      0xd5184022,  // msr elr_el1, x2
      0x910004a5,  // add x5, x5, #1
      0xd5385201,  // mrs x1, esr_el1
      0xd69f03e0,  // eret
  };
  std::memcpy((*m)->ram().data() + 0x2200, handler, sizeof(handler));
  const std::uint32_t main_code[] = {0xd2840001,  // movz x1, #0x2000
                                     0xf2a80001,  // movk x1, #0x4000, lsl #16
                                     0xd518c001,  // msr vbar_el1, x1
                                     0xd5033fdf,  // isb
                                     0x00000000,  // udf #0
                                     0xd53ce100,  // mrs x0, cnthctl_el2 (EL2 only)
                                     0xd538cca0,  // mrs x0, icc_sre_el1 (no GICv3 here)
                                     kMovzX0_0008, kMovkX0_8400, kHvc0};
  ASSERT_TRUE((*m)->LoadCode(code, main_code));
  const RunResult run = (*m)->Run(std::chrono::seconds(10));
  ASSERT_EQ(run.error, "");
  EXPECT_TRUE(run.shutdown);
  backend::Vcpu& v = (*m)->vcpu(0);
  EXPECT_EQ(v.GetRegister(regs::Core(5)).value(), 3U);
  EXPECT_EQ(v.GetRegister(regs::Core(1)).value(), 0x02000000U);   // EC 0 (unknown), IL
  EXPECT_EQ(v.GetRegister(regs::Core(2)).value(), code + 7 * 4);  // past the last one
}

// A vCPU with EL2 starts at EL2h (E2H settable: the CPU has VHE), enters
// a nested guest at EL1 with ERET, and the nested guest's HVC is taken by
// the guest hypervisor's vector (lower EL, sync) with ESR_EL2 EC 0x16 and
// the immediate; the guest hypervisor's own HVC reaches the VMM (PSCI).
// The end of a guest hypervisor's set-up: enter the nested guest at
// RAM + 0x1100, at EL1h with DAIF masked.
constexpr std::uint32_t kEretToEl1At1100[] = {
    0xd2822003,  // movz x3, #0x1100
    0xf2a80003,  // movk x3, #0x4000, lsl #16
    0xd51c4023,  // msr elr_el2, x3
    0xd28078a4,  // movz x4, #0x3c5 (EL1h, DAIF masked)
    0xd51c4004,  // msr spsr_el2, x4
    0xd69f03e0,  // eret
};

std::vector<std::uint32_t> ThenEnterEl1(std::span<const std::uint32_t> setup) {
  std::vector<std::uint32_t> code(setup.begin(), setup.end());
  code.insert(code.end(), std::begin(kEretToEl1At1100), std::end(kEretToEl1At1100));
  return code;
}

TEST(EmuBackend, AVel2VcpuStartsAtEl2AndTakesItsNestedGuestsHvc) {
  auto m = Machine::Create(MachineConfig{.vm_offset = std::nullopt, .el2 = true});
  ASSERT_TRUE(m) << m.error().Message();
  const std::uint64_t ram = vmm::layout::kRam;
  const std::uint32_t el2_main[] = {
      0xd5384249,  // mrs x9, CurrentEL
      0xd2840001,  // movz x1, #0x2000
      0xf2a80001,  // movk x1, #0x4000, lsl #16
      0xd2b00002,  // movz x2, #0x8000, lsl #16 (HCR_EL2.RW)
      0xf2c00082,  // movk x2, #0x4, lsl #32 (HCR_EL2.E2H)
      0xd51c1102,  // msr hcr_el2, x2
      0xd5033fdf,  // isb
      0xd518c001,  // msr vbar_el1, x1 (E2H: VBAR_EL2)
      0xd2810001,  // movz x1, #0x800
      0xd51dc001,  // msr vbar_el12, x1 (E2H: VBAR_EL1)
      0xd53c1108,  // mrs x8, hcr_el2
  };
  const std::uint32_t el1[] = {
      0xd538424a,  // mrs x10, CurrentEL
      0xd4000842,  // hvc #0x42
  };
  const std::uint32_t lower_sync[] = {
      0xd53c520b,  // mrs x11, esr_el2
      0xd53c402c,  // mrs x12, elr_el2
      0xd538424d,  // mrs x13, CurrentEL
      kMovzX0_0008, kMovkX0_8400, kHvc0,
  };
  std::memcpy((*m)->ram().data() + 0x1100, el1, sizeof(el1));
  std::memcpy((*m)->ram().data() + 0x2400, lower_sync, sizeof(lower_sync));
  ASSERT_TRUE((*m)->LoadCode(ram + 0x1000, ThenEnterEl1(el2_main)));
  const RunResult run = (*m)->Run(std::chrono::seconds(10));
  ASSERT_EQ(run.error, "");
  EXPECT_TRUE(run.shutdown);
  backend::Vcpu& v = (*m)->vcpu(0);
  EXPECT_EQ(v.GetRegister(regs::Core(9)).value(), 2U << 2);       // started at EL2
  EXPECT_EQ(v.GetRegister(regs::Core(8)).value(), 0x480000000U);  // RW | E2H kept
  EXPECT_EQ(v.GetRegister(regs::Core(10)).value(), 1U << 2);      // the nested guest at EL1
  EXPECT_EQ(v.GetRegister(regs::Core(11)).value(), (0x16U << 26) | (1U << 25) | 0x42U);
  EXPECT_EQ(v.GetRegister(regs::Core(12)).value(), ram + 0x1108);  // past the HVC
  EXPECT_EQ(v.GetRegister(regs::Core(13)).value(), 2U << 2);
  // VHE's redirections: the EL1 name reached VBAR_EL2, the EL12 name VBAR_EL1.
  EXPECT_EQ(v.GetRegister(regs::Sys(arch::SysRegEncoding{3, 4, 12, 0, 0})).value(), ram + 0x2000);
  EXPECT_EQ(v.GetRegister(regs::Sys(arch::SysRegEncoding{3, 0, 12, 0, 0})).value(), 0x800U);
}

// With HCR_EL2.IMO a physical IRQ that arrives while the nested guest runs
// at EL1 with PSTATE.I set goes to EL2 (lower EL, IRQ vector): EL1's mask
// does not hold an interrupt routed above it. Without the routing the
// guest would spin at EL1 until the timeout.
TEST(EmuBackend, ImoRoutesAnIrqFromAMaskedEl1ToEl2) {
  auto m = Machine::Create(MachineConfig{.vm_offset = std::nullopt, .el2 = true});
  ASSERT_TRUE(m) << m.error().Message();
  const std::uint64_t ram = vmm::layout::kRam;
  const std::uint32_t el2_main[] = {
      0xd2840001,  // movz x1, #0x2000
      0xf2a80001,  // movk x1, #0x4000, lsl #16
      0xd51cc001,  // msr vbar_el2, x1
      0xd2a10005,  // movz x5, #0x0800, lsl #16 (GICD)
      0x52800026,  // mov w6, #1
      0xb90000a6,  // str w6, [x5] (GICD_CTLR)
      0x52a10006,  // mov w6, #0x8000000
      0xb90100a6,  // str w6, [x5, #0x100] (GICD_ISENABLER0: PPI 27)
      0xd2a10025,  // movz x5, #0x0801, lsl #16 (GICC)
      0x52801f06,  // mov w6, #0xf8
      0xb90004a6,  // str w6, [x5, #4] (GICC_PMR)
      0x52800026,  // mov w6, #1
      0xb90000a6,  // str w6, [x5] (GICC_CTLR)
      0xd2b00002,  // movz x2, #0x8000, lsl #16 (RW)
      0xf2c00082,  // movk x2, #0x4, lsl #32 (E2H)
      0xb27c0042,  // orr x2, x2, #0x10 (IMO)
      0xd51c1102,  // msr hcr_el2, x2
      0xd5033fdf,  // isb
  };
  const std::uint32_t el1[] = {
      0xd538424a,  // mrs x10, CurrentEL
      0xd51be35f,  // msr cntv_cval_el0, xzr
      0xd2800027,  // mov x7, #1
      0xd51be327,  // msr cntv_ctl_el0, x7 (enabled, due at once)
      0xd5033fdf,  // isb
      0x14000000,  // b . (IRQs masked at EL1)
  };
  const std::uint32_t lower_irq[] = {
      0xd2a10025,  // movz x5, #0x0801, lsl #16
      0xb9400cae,  // ldr w14, [x5, #0xc] (GICC_IAR)
      0xd53c402c,  // mrs x12, elr_el2
      0xd538424d,  // mrs x13, CurrentEL
      0xd53c400f,  // mrs x15, spsr_el2
      kMovzX0_0008, kMovkX0_8400, kHvc0,
  };
  std::memcpy((*m)->ram().data() + 0x1100, el1, sizeof(el1));
  std::memcpy((*m)->ram().data() + 0x2480, lower_irq, sizeof(lower_irq));
  ASSERT_TRUE((*m)->LoadCode(ram + 0x1000, ThenEnterEl1(el2_main)));
  const RunResult run = (*m)->Run(std::chrono::seconds(10));
  ASSERT_EQ(run.error, "");
  EXPECT_TRUE(run.shutdown);
  backend::Vcpu& v = (*m)->vcpu(0);
  EXPECT_EQ(v.GetRegister(regs::Core(10)).value(), 1U << 2);
  EXPECT_EQ(v.GetRegister(regs::Core(14)).value(), 27U);  // the EL1 virtual timer's PPI
  // Taken after the CTL write: at the ISB or at the loop.
  EXPECT_GE(v.GetRegister(regs::Core(12)).value(), ram + 0x1110);
  EXPECT_LE(v.GetRegister(regs::Core(12)).value(), ram + 0x1114);
  EXPECT_EQ(v.GetRegister(regs::Core(13)).value(), 2U << 2);
  EXPECT_EQ(v.GetRegister(regs::Core(15)).value() & 0x3cfU, 0x3c5U);  // from EL1h, masked
}

// The VMM may move a vEL2 vCPU between EL2 and EL1 through PSTATE (a
// restore does); EL0, which the emulated backend does not run, is refused.
TEST(EmuBackend, PstateMovesAVel2VcpuBetweenEl2AndEl1) {
  auto m = Machine::Create(MachineConfig{.vm_offset = std::nullopt, .el2 = true});
  ASSERT_TRUE(m) << m.error().Message();
  backend::Vcpu& v = (*m)->vcpu(0);
  EXPECT_EQ(v.GetRegister(regs::Pstate()).value() & 0xfU, 0x9U);  // EL2h at reset
  // EL1 is AArch32 until the guest hypervisor sets HCR_EL2.RW: refused.
  auto aarch32 = v.SetRegister(regs::Pstate(), 0x3c5);
  ASSERT_FALSE(aarch32);
  EXPECT_NE(aarch32.error().context.find("HCR_EL2.RW"), std::string::npos)
      << aarch32.error().context;
  EXPECT_EQ(v.GetRegister(regs::Pstate()).value() & 0x10000fU, 0x9U);  // still EL2h, no IL
  const std::uint64_t hcr = regs::Sys(arch::SysRegEncoding{3, 4, 1, 1, 0});
  ASSERT_TRUE(v.SetRegister(hcr, (1ULL << 31) | (1ULL << 34)));  // RW | E2H
  auto to_el1 = v.SetRegister(regs::Pstate(), 0x3c5);
  ASSERT_TRUE(to_el1) << to_el1.error().Message();
  EXPECT_EQ(v.GetRegister(regs::Pstate()).value() & 0xfU, 0x5U);
  auto back = v.SetRegister(regs::Pstate(), 0x3c9);
  ASSERT_TRUE(back) << back.error().Message();
  EXPECT_EQ(v.GetRegister(regs::Pstate()).value() & 0xfU, 0x9U);
  EXPECT_FALSE(v.SetRegister(regs::Pstate(), 0x3c0));  // EL0t
  auto plain = Machine::Create(MachineConfig{});
  ASSERT_TRUE(plain);
  EXPECT_FALSE((*plain)->vcpu(0).SetRegister(regs::Pstate(), 0x3c9));  // no EL2 there
}

TEST(EmuBackend, AnAccessBeyondTheIpaSpaceStopsTheVcpuNotTheHost) {
  auto m = Machine::Create(MachineConfig{});
  ASSERT_TRUE(m) << m.error().Message();
  const std::uint32_t code[] = {0xd2c04001,  // movz x1, #0x200, lsl #32 (2 TiB)
                                0xf9400020,  // ldr x0, [x1]
                                kMovzX0_0008, kMovkX0_8400, kHvc0};
  ASSERT_TRUE((*m)->LoadCode(vmm::layout::kRam + 0x1000, code));
  const RunResult run = (*m)->Run(std::chrono::seconds(10));
  EXPECT_NE(run.error.find("vCPU 0: Unicorn error"), std::string::npos) << run.error;
  EXPECT_FALSE(run.shutdown);
}

TEST(EmuBackend, KickEndsARunInWfiOrInALoopAndExitRequestsHoldIt) {
  auto m = Machine::Create(MachineConfig{});
  ASSERT_TRUE(m) << m.error().Message();
  const std::uint32_t code[] = {
      0xd503207f,  // wfi
      0x14000000,  // b .
  };
  ASSERT_TRUE((*m)->LoadCode(vmm::layout::kRam + 0x1000, code));
  backend::Vcpu& v = (*m)->vcpu(0);
  for (int round = 0; round < 2; ++round) {  // in the WFI, then in the loop
    std::thread kicker([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      v.Kick();
    });
    auto exit = v.Run();
    kicker.join();
    ASSERT_TRUE(exit) << exit.error().Message();
    EXPECT_EQ(exit->kind, backend::ExitKind::kInterrupted);
  }
  EXPECT_EQ(v.GetRegister(regs::Core(regs::kPc)).value(), vmm::layout::kRam + 0x1004);
  v.RequestExit(true);
  auto held = v.Run();
  ASSERT_TRUE(held);
  EXPECT_EQ(held->kind, backend::ExitKind::kInterrupted);
  v.RequestExit(false);
  // A kick nobody saw yet ends the next Run at once.
  v.Kick();
  auto at_once = v.Run();
  ASSERT_TRUE(at_once);
  EXPECT_EQ(at_once->kind, backend::ExitKind::kInterrupted);
}

// A stop must land between blocks: one taken mid-block would run part of
// the block twice, and the counter in memory would get ahead of the one in
// x8 (Unicorn 2.0.1 does exactly that when stopped from anywhere else).
TEST(EmuBackend, ThousandsOfStopsNeverRunAnInstructionTwice) {
  auto m = Machine::Create(MachineConfig{});
  ASSERT_TRUE(m) << m.error().Message();
  const std::uint32_t code[] = {
      0xd2860007,  // movz x7, #0x3000
      0xf2a80007,  // movk x7, #0x4000, lsl #16
      0xf94000e6,  // 1: ldr x6, [x7]
      0x910004c6,  // add x6, x6, #1
      0xf90000e6,  // str x6, [x7]
      0x91000508,  // add x8, x8, #1
      0x17fffffc,  // b 1b
  };
  ASSERT_TRUE((*m)->LoadCode(vmm::layout::kRam + 0x1000, code));
  backend::Vcpu& v = (*m)->vcpu(0);
  std::atomic<bool> done{false};
  std::atomic<unsigned> runs{0};
  std::thread runner([&] {
    while (!done.load()) {
      auto exit = v.Run();
      if (!exit || exit->kind != backend::ExitKind::kInterrupted) break;
      ++runs;
    }
  });
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (runs.load() < 2000 && std::chrono::steady_clock::now() < give_up) {
    v.Kick();
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  done.store(true);
  v.RequestExit(true);
  runner.join();
  std::uint64_t in_memory = 0;
  std::memcpy(&in_memory, (*m)->ram().data() + 0x3000, 8);
  EXPECT_GE(runs.load(), 2000U);
  EXPECT_GT(in_memory, 0U);
  EXPECT_EQ(v.GetRegister(regs::Core(8)).value(), in_memory);
}

}  // namespace
}  // namespace vtime::emu
