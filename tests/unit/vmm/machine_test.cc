// vtvmm's machine (src/vmm/machine.cc and its parts) on the fake backend and the fake host
// clock of fake_backend.h: boot, the pause's capture pair, a restore on a
// host whose counter and wall clock jumped, the start gate, and a restore
// that cannot set the guest's time. Every expected value comes from the fake
// clock and the event log, never from the machine's own arithmetic.
#include "vmm/machine.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "unit/vmm/fake_backend.h"
#include "vmm/layout.h"
#include "vmm/snapshot.h"
#include "vtime/arch/timer.h"
#include "vtime/backend/registers.h"
#include "vtime/state/policy.h"

namespace vtime::vmm {
namespace {

using fake::Event;
using fake::EventKind;
using fake::EventLog;
using fake::FakeClock;
using fake::FakeHypervisor;
using fake::FakeOptions;
using fake::FakeVm;
namespace regs = backend::regs;

constexpr std::uint64_t kGHz = 1'000'000'000;
// The source host's counter when the test starts, and its wall clock
// (2023-11-14), both far from 0 so that an offset of "now" shows.
constexpr std::uint64_t kSourceStart = 5'000'000'000'000;
constexpr std::int64_t kSourceWall = 1'700'000'000'000'000'000;
// What the fake guest's real entries and exit-requested runs move the
// clock by (the guest ran; an exit took time).
constexpr std::uint64_t kRunTicks = 1000;
constexpr std::uint64_t kExitTicks = 777;
// Ticks each clock read moves the source's and the destination's clock by.
constexpr std::uint64_t kSourceStep = 3;
constexpr std::uint64_t kStep = 5;
constexpr std::uint32_t kFinisherStatus = 42;

// A raw program (ImageFormat::kProgram): "nop; b ." (the fake never runs it).
const std::vector<std::uint8_t> kImage = {0x1f, 0x20, 0x03, 0xd5, 0x00, 0x00, 0x00, 0x14};

MachineConfig BaseConfig(unsigned cpus) {
  MachineConfig c;
  c.cpus = cpus;
  c.ram_size = layout::kMinRam;
  c.pvtime = false;
  c.console_input = false;
  c.timeout_s = 10;  // a hang fails (kTimeout) instead of hanging
  return c;
}

// One machine on the fakes; the clock and the log outlive it.
struct World {
  std::shared_ptr<EventLog> log = std::make_shared<EventLog>();
  std::shared_ptr<FakeClock> clock;
  FakeHypervisor* hypervisor = nullptr;  // owned by machine
  std::unique_ptr<Machine> machine;
  FakeVm& vm() const { return *hypervisor->vm(); }
};

Result<World> Build(std::uint64_t count, std::int64_t wall, std::uint64_t step, FakeOptions options,
                    const MachineConfig& config, std::uint64_t hz = kGHz) {
  World w;
  w.clock = std::make_shared<FakeClock>(w.log, count, wall, step, hz);
  auto hv = std::make_unique<FakeHypervisor>(w.clock, w.log, std::move(options));
  w.hypervisor = hv.get();
  auto m = Machine::Create(std::move(hv), config, kImage);
  if (!m) return tl::unexpected(m.error());
  w.machine = std::move(*m);
  return w;
}

// The timers a guest would have programmed on vCPU i: an armed virtual
// timer, a masked physical one.
state::VcpuTime GuestTimers(unsigned i) {
  state::VcpuTime t;
  t.el1_virtual = state::TimerState{arch::ctl::kEnable, 1'000'000 + i};
  t.el1_physical = state::TimerState{arch::ctl::kEnable | arch::ctl::kImask, 2'000'000'000 + i};
  t.cntkctl_el1 = 0x3;
  return t;
}

std::vector<Event> Filter(const std::vector<Event>& events, EventKind kind, int vcpu = -1) {
  std::vector<Event> out;
  for (const Event& e : events) {
    if (e.kind == kind && (vcpu < 0 || e.vcpu == vcpu)) out.push_back(e);
  }
  return out;
}

std::optional<Event> FirstRealRun(const std::vector<Event>& events, int vcpu) {
  for (const Event& e : events) {
    if (e.kind == EventKind::kRun && e.vcpu == vcpu && !e.exit_requested) return e;
  }
  return std::nullopt;
}

// The pause as the log saw it: for each vCPU, the first clock read on its
// thread after its last Run that entered the guest; the latest of these.
std::uint64_t StoppedCount(const std::vector<Event>& events, unsigned cpus) {
  std::uint64_t stopped = 0;
  for (unsigned v = 0; v < cpus; ++v) {
    std::optional<std::size_t> last_end;
    std::thread::id thread;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const Event& e = events[i];
      if (e.kind == EventKind::kRunEnd && e.vcpu == static_cast<int>(v) && !e.exit_requested) {
        last_end = i;
        thread = e.thread;
      }
    }
    if (!last_end) continue;
    for (std::size_t i = *last_end + 1; i < events.size(); ++i) {
      if (events[i].kind == EventKind::kClockRead && events[i].thread == thread) {
        stopped = std::max(stopped, events[i].count);
        break;
      }
    }
  }
  return stopped;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vtime-machine-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  std::vector<std::uint8_t> bytes(
      static_cast<std::size_t>(std::max<std::streamoff>(in.tellg(), 0)));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

// A source machine run until it wrote its snapshot, and what the fakes saw.
struct Source {
  MachineSnapshot snap;
  std::vector<Event> events;
  std::uint64_t build_offset = 0;   // the one offset applied
  std::uint64_t stopped = 0;        // StoppedCount
  std::uint64_t capture_count = 0;  // the capture pair's counter read at the pause
  std::uint64_t final_count = 0;    // the source clock when it ended
};

void RunSource(unsigned cpus, Source* out) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  MachineConfig config = BaseConfig(cpus);
  config.snapshot_path = dir.path() + "/vm.snap";
  config.snapshot_after_ms = 30;
  FakeOptions options;
  options.run_ticks = kRunTicks;
  options.exit_run_ticks = kExitTicks;
  auto w = Build(kSourceStart, kSourceWall, kSourceStep, std::move(options), config);
  ASSERT_TRUE(w) << w.error().Message();
  for (unsigned i = 0; i < cpus; ++i) w->vm().vcpu(i).SetTimers(GuestTimers(i));
  auto r = w->machine->Run();
  ASSERT_TRUE(r) << r.error().Message();
  ASSERT_EQ(r->end, GuestEnd::kSnapshot) << r->detail;
  EXPECT_TRUE(r->started);
  auto snap = DecodeSnapshot(ReadFile(config.snapshot_path));
  ASSERT_TRUE(snap) << snap.error().Message();
  out->snap = std::move(*snap);
  out->events = w->log->Events();
  const auto applies = Filter(out->events, EventKind::kApplyOffsets);
  ASSERT_EQ(applies.size(), 1U);
  out->build_offset = applies[0].virtual_offset;
  out->stopped = StoppedCount(out->events, cpus);
  const auto captures = Filter(out->events, EventKind::kCapture);
  ASSERT_EQ(captures.size(), 1U) << "a source run captures once, at the pause";
  out->capture_count = captures[0].count;
  out->final_count = w->clock->Peek();
  // The pause is the latest count read right after the vCPUs' last real
  // entries, and each exit-requested run after it moved the clock on.
  ASSERT_NE(out->stopped, 0U);
  ASSERT_GE(out->capture_count, out->stopped + kExitTicks);
}

// ---------------------------------------------------------------------------
// 1. Boot

TEST(MachineBoot, RunsUntilTheTestFinisherWithTheGuestCountStartingAtZero) {
  MachineConfig config = BaseConfig(2);
  FakeOptions options;
  options.run_ticks = kRunTicks;
  options.script = fake::FinishAfter(5, kFinisherStatus);
  // Step 0: the counter moves only when the fake guest runs.
  auto w = Build(kSourceStart, kSourceWall, 0, std::move(options), config);
  ASSERT_TRUE(w) << w.error().Message();

  const auto built = w->log->Events();
  const auto applies = Filter(built, EventKind::kApplyOffsets);
  ASSERT_EQ(applies.size(), 1U);
  EXPECT_EQ(applies[0].virtual_offset, kSourceStart);
  EXPECT_EQ(applies[0].physical_offset, kSourceStart);
  EXPECT_EQ(applies[0].count, kSourceStart);
  EXPECT_EQ(w->vm().virtual_offset(), kSourceStart);
  EXPECT_TRUE(Filter(built, EventKind::kRun).empty()) << "Create runs nothing";

  // vCPU 0 starts at the image (a raw program: its first byte) with the
  // device tree's address in x0; the secondaries wait for PSCI CPU_ON.
  FakeVm& vm = w->vm();
  ASSERT_EQ(vm.vcpu_count(), 2U);
  EXPECT_EQ(vm.vcpu(0).Register(regs::Core(regs::kPc)), layout::kRawImageLoad);
  const auto dtb = vm.vcpu(0).Register(regs::Core(0));
  ASSERT_TRUE(dtb.has_value());
  const auto fdt = vm.Memory(*dtb, 4);
  ASSERT_EQ(fdt.size(), 4U) << "x0 is not in guest RAM";
  EXPECT_EQ((std::vector<std::uint8_t>{fdt.begin(), fdt.end()}),
            (std::vector<std::uint8_t>{0xd0, 0x0d, 0xfe, 0xed}))
      << "no device tree at x0";
  const auto image = vm.Memory(layout::kRawImageLoad, kImage.size());
  EXPECT_EQ((std::vector<std::uint8_t>{image.begin(), image.end()}), kImage);
  const auto created = Filter(built, EventKind::kCreateVcpu);
  ASSERT_EQ(created.size(), 2U);
  EXPECT_FALSE(created[0].powered_off);
  EXPECT_TRUE(created[1].powered_off);
  EXPECT_EQ(vm.vcpu(0).GetPowerState().value(), backend::power::kRunnable);
  EXPECT_EQ(vm.vcpu(1).GetPowerState().value(), backend::power::kStopped);
  const auto maps = Filter(built, EventKind::kMapMemory);
  ASSERT_EQ(maps.size(), 1U);
  EXPECT_EQ(maps[0].slot, 0U);
  EXPECT_EQ(maps[0].gpa, layout::kRam);
  EXPECT_EQ(maps[0].size, layout::kMinRam);

  auto r = w->machine->Run();
  ASSERT_TRUE(r) << r.error().Message();
  EXPECT_EQ(r->end, GuestEnd::kTestExit) << r->detail;
  EXPECT_EQ(r->status, static_cast<int>(kFinisherStatus));
  EXPECT_TRUE(r->started);

  // Only vCPU 0 (powered on) moves the clock, kRunTicks per real entry:
  // its k-th entry sees the guest's virtual count at k * kRunTicks.
  const auto events = w->log->Events();
  std::vector<std::uint64_t> seen;
  for (const Event& e : Filter(events, EventKind::kRun, 0)) {
    if (!e.exit_requested) seen.push_back(e.guest_virtual);
  }
  ASSERT_GE(seen.size(), 5U);
  seen.resize(5);
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{0, kRunTicks, 2 * kRunTicks, 3 * kRunTicks,
                                              4 * kRunTicks}));
  const auto mmio = Filter(events, EventKind::kMmio);
  ASSERT_EQ(mmio.size(), 1U);
  EXPECT_EQ(mmio[0].gpa, layout::kTestExit);
  EXPECT_EQ(Filter(events, EventKind::kApplyOffsets).size(), 1U) << "a boot sets the offset once";
}

TEST(MachineBoot, AGivenCounterOffsetIsTheOneApplied) {
  constexpr std::uint64_t kOffset = kSourceStart - 7'000'000;
  MachineConfig config = BaseConfig(1);
  config.counter_offset = kOffset;
  FakeOptions options;
  options.script = fake::FinishAfter(1, 3);
  auto w = Build(kSourceStart, kSourceWall, 0, std::move(options), config);
  ASSERT_TRUE(w) << w.error().Message();
  auto r = w->machine->Run();
  ASSERT_TRUE(r) << r.error().Message();
  EXPECT_EQ(r->end, GuestEnd::kTestExit) << r->detail;
  EXPECT_EQ(r->status, 3);
  const auto events = w->log->Events();
  const auto applies = Filter(events, EventKind::kApplyOffsets);
  ASSERT_EQ(applies.size(), 1U);
  EXPECT_EQ(applies[0].virtual_offset, kOffset);
  const auto entry = FirstRealRun(events, 0);
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->guest_virtual, 7'000'000U);
}

TEST(MachineBoot, AMissingCapabilityIsExplainedByTheBackend) {
  FakeOptions options;
  options.caps.backend_irqchip = false;
  auto w = Build(kSourceStart, kSourceWall, 0, std::move(options), BaseConfig(1));
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().context.find(fake::kFakeExplain), std::string::npos) << w.error().context;
}

TEST(MachineBoot, AnOffsetTheBackendRefusesFailsCreate) {
  FakeOptions options;
  options.fail_apply = [](unsigned, bool) { return true; };
  std::shared_ptr<EventLog> log = std::make_shared<EventLog>();
  auto clock = std::make_shared<FakeClock>(log, kSourceStart, kSourceWall);
  auto m = Machine::Create(std::make_unique<FakeHypervisor>(clock, log, std::move(options)),
                           BaseConfig(1), kImage);
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().Message().find("fake: setting the VM offset failed"), std::string::npos);
  EXPECT_TRUE(log->Of(EventKind::kRun).empty());
}

// The PL031 is guest-visible time: it should count the injected host
// clock's wall clock (vtime/backend/host_clock.h: "The VMM takes 'now' only
// from here"). Disabled: src/vmm/mmio_devices.cc reads CLOCK_REALTIME for
// it, so this fails until the RTC takes HostClock::CaptureNow's wall clock.
TEST(MachineBoot, TheRtcCountsTheInjectedWallClock) {
  constexpr std::int64_t kWall = 1'000'000'000LL * kGHz;  // 2001-09-09
  FakeOptions options;
  options.script = [](unsigned vcpu, std::uint64_t run) -> std::optional<backend::MmioAccess> {
    if (vcpu != 0) return std::nullopt;
    if (run == 1)
      return backend::MmioAccess{
          .address = layout::kRtc, .size = 4, .write = false, .data = 0};  // RTCDR
    if (run == 2) {
      return backend::MmioAccess{.address = layout::kTestExit, .size = 4, .write = true, .data = 0};
    }
    return std::nullopt;
  };
  auto w = Build(kSourceStart, kWall, 0, std::move(options), BaseConfig(1));
  ASSERT_TRUE(w) << w.error().Message();
  auto r = w->machine->Run();
  ASSERT_TRUE(r) << r.error().Message();
  const auto mmio = w->log->Of(EventKind::kMmio);
  ASSERT_GE(mmio.size(), 1U);
  EXPECT_EQ(mmio[0].gpa, layout::kRtc);
  EXPECT_EQ(mmio[0].value, 1'000'000'000U) << "the RTC does not count the host clock's wall clock";
}

// ---------------------------------------------------------------------------
// 2. Capture at pause

TEST(MachineSnapshot, CapturesThePauseAtTheLastExitTheOffsetsAndTheTimers) {
  constexpr unsigned kCpus = 2;
  Source src;
  ASSERT_NO_FATAL_FAILURE(RunSource(kCpus, &src));
  const state::SavedState& t = src.snap.time;
  EXPECT_EQ(t.counter_frequency_hz, kGHz);
  EXPECT_EQ(t.offset_api, state::OffsetApi::kVmOffset);
  // The offset Build applied is the count it read (step kSourceStep).
  EXPECT_GE(src.build_offset, kSourceStart);
  EXPECT_LT(src.build_offset, kSourceStart + 100 * kSourceStep);
  EXPECT_EQ(t.virtual_offset, src.build_offset);
  EXPECT_EQ(t.physical_offset, src.build_offset);
  // Not "now" at the capture, but where the guest stopped: the latest count
  // read right after the vCPUs' last real entries...
  EXPECT_EQ(t.pause.host_counter, src.stopped);
  // ...and the wall clock (which did not move) taken back to that count.
  EXPECT_EQ(t.pause.wall_clock_ns,
            kSourceWall - static_cast<std::int64_t>(src.capture_count - src.stopped));
  EXPECT_EQ(t.VirtualCountAtPause(), src.stopped - src.build_offset);
  // The guest ran: its count at the pause is past its last entry's.
  std::uint64_t last_entry = 0;
  for (const Event& e : Filter(src.events, EventKind::kRun, 0)) {
    if (!e.exit_requested) last_entry = e.guest_virtual;
  }
  EXPECT_GE(t.VirtualCountAtPause(), last_entry + kRunTicks);

  // The timers as the fake vCPUs held them, read once each while paused.
  ASSERT_EQ(t.vcpus.size(), kCpus);
  for (unsigned i = 0; i < kCpus; ++i) EXPECT_EQ(t.vcpus[i], GuestTimers(i)) << "vCPU " << i;
  const auto captured = Filter(src.events, EventKind::kCaptureTimers);
  ASSERT_EQ(captured.size(), kCpus);
  const auto capture = Filter(src.events, EventKind::kCapture);
  for (const Event& e : captured) EXPECT_GT(e.seq, capture[0].seq);

  // The rest of each vCPU, and the machine.
  EXPECT_EQ(src.snap.cpus, kCpus);
  EXPECT_EQ(src.snap.ram_size, layout::kMinRam);
  EXPECT_EQ(src.snap.irqchip, IrqChip::kKernel);
  EXPECT_EQ(src.snap.vgic, FakeOptions{}.irqchip_state);
  ASSERT_EQ(src.snap.vcpus.size(), kCpus);
  EXPECT_EQ(src.snap.vcpus[0].mp_state, backend::power::kRunnable);
  EXPECT_EQ(src.snap.vcpus[1].mp_state, backend::power::kStopped);
  bool pc = false;
  for (const RegisterValue& r : src.snap.vcpus[0].registers) {
    EXPECT_FALSE(regs::IsTimeRegister(r.id)) << r.id;
    if (r.id == regs::Core(regs::kPc)) {
      pc = true;
      EXPECT_EQ(r.bytes, (std::vector<std::uint8_t>{0x00, 0x00, 0x08, 0x40, 0, 0, 0, 0}));
    }
  }
  EXPECT_TRUE(pc);
  EXPECT_EQ(src.snap.ram.size(), layout::kMinRam);
}

// ---------------------------------------------------------------------------
// 3. Restore on a host whose counter and wall clock jumped

struct Jump {
  const char* name;
  state::Policy policy;
  // The destination's counter: the source's end plus this (modulo 2^64).
  std::uint64_t counter_delta;
  // The destination's wall clock: the source's plus this.
  std::int64_t wall_delta_ns;
  std::uint64_t hz;
};

constexpr std::uint64_t kHour = 3600 * kGHz;

std::string JumpName(const ::testing::TestParamInfo<Jump>& p) { return p.param.name; }
void PrintTo(const Jump& j, std::ostream* os) { *os << j.name; }

class MachineRestore : public ::testing::TestWithParam<Jump> {};

TEST_P(MachineRestore, TheGuestResumesWhereThePolicySays) {
  const Jump& p = GetParam();
  ASSERT_EQ(kGHz % p.hz, 0U);
  const std::uint64_t ns_per_tick = kGHz / p.hz;
  Source src;
  if (p.hz == kGHz) {
    ASSERT_NO_FATAL_FAILURE(RunSource(1, &src));
  } else {
    // The same source at another counter frequency.
    TempDir dir;
    MachineConfig config = BaseConfig(1);
    config.snapshot_path = dir.path() + "/vm.snap";
    config.snapshot_after_ms = 30;
    FakeOptions options;
    options.run_ticks = kRunTicks;
    auto w = Build(kSourceStart, kSourceWall, kSourceStep, std::move(options), config, p.hz);
    ASSERT_TRUE(w) << w.error().Message();
    w->vm().vcpu(0).SetTimers(GuestTimers(0));
    auto r = w->machine->Run();
    ASSERT_TRUE(r && r->end == GuestEnd::kSnapshot);
    auto snap = DecodeSnapshot(ReadFile(config.snapshot_path));
    ASSERT_TRUE(snap) << snap.error().Message();
    src.snap = std::move(*snap);
    src.final_count = w->clock->Peek();
  }
  const state::SavedState& saved = src.snap.time;
  const std::uint64_t paused = saved.VirtualCountAtPause();
  const std::int64_t dest_wall = kSourceWall + p.wall_delta_ns;

  MachineConfig config = BaseConfig(1);
  config.restore = &src.snap;
  config.policy = p.policy;
  FakeOptions options;
  options.run_ticks = kRunTicks;
  // The warm-up run costs time (KVM's one-time set-up): the final offset
  // comes after it, so the guest does not see it.
  options.exit_run_ticks = kExitTicks;
  options.script = fake::FinishAfter(5, 7);
  auto w =
      Build(src.final_count + p.counter_delta, dest_wall, kStep, std::move(options), config, p.hz);
  ASSERT_TRUE(w) << w.error().Message();
  const auto built = w->log->Events();
  auto r = w->machine->Run();
  ASSERT_TRUE(r) << r.error().Message();
  EXPECT_EQ(r->end, GuestEnd::kTestExit) << r->detail;
  EXPECT_EQ(r->status, 7);
  EXPECT_TRUE(r->started);

  const auto events = w->log->Events();
  const auto applies = Filter(events, EventKind::kApplyOffsets);
  ASSERT_GE(applies.size(), 2U) << "a restore's first offsets, then the final ones";
  const Event& final_apply = applies.back();
  const auto entry = FirstRealRun(events, 0);
  ASSERT_TRUE(entry);
  ASSERT_GT(entry->seq, final_apply.seq);
  const auto warm_up = Filter(events, EventKind::kRunEnd, 0);
  ASSERT_FALSE(warm_up.empty());
  EXPECT_TRUE(warm_up.front().exit_requested);
  EXPECT_LT(warm_up.front().seq, final_apply.seq) << "the final offset came before the warm-up";
  // The capture pair the final offset was planned from: the last one before it.
  std::optional<Event> capture;
  for (const Event& e : events) {
    if (e.kind == EventKind::kCapture && e.seq < final_apply.seq) capture = e;
  }
  ASSERT_TRUE(capture);

  // Under freeze no time passed for the guest; under wallclock the time the
  // two wall clocks say passed since the pause (none if this one is behind),
  // in ticks, floored.
  std::uint64_t advanced = 0;
  const std::int64_t away = dest_wall - saved.pause.wall_clock_ns;
  if (p.policy == state::Policy::kWallClock && away > 0) {
    advanced = static_cast<std::uint64_t>(away) / ns_per_tick;
  }
  const std::uint64_t resume_at = paused + advanced;
  EXPECT_EQ(final_apply.virtual_offset, capture->count - resume_at);
  EXPECT_EQ(final_apply.physical_offset, capture->count - resume_at);
  // At its first entry the guest reads the count it resumes at plus what the
  // clock moved since that capture pair: the capture's own step, then the
  // machine's two reads between the final offset and the entry.
  EXPECT_EQ(entry->guest_virtual, resume_at + (entry->count - capture->count));
  EXPECT_EQ(final_apply.count - capture->count, kStep) << "a clock read between the capture "
                                                          "pair and the final offset";
  EXPECT_LE(entry->count - final_apply.count, 2 * kStep);
  EXPECT_GE(entry->guest_virtual, paused) << "guest time went backwards";
  if (p.policy == state::Policy::kWallClock && away > 0) {
    // The jump itself: an hour (plus the source's stop-to-capture time).
    EXPECT_GE(entry->guest_virtual - paused,
              static_cast<std::uint64_t>(p.wall_delta_ns) / ns_per_tick);
  } else {
    EXPECT_LE(entry->guest_virtual - paused, 3 * kStep);
  }

  // The timers came back exactly, after the first offsets.
  const auto restored = Filter(built, EventKind::kRestoreTimers);
  ASSERT_EQ(restored.size(), 1U);
  EXPECT_EQ(restored[0].timers, GuestTimers(0));
  EXPECT_GT(restored[0].seq, applies.front().seq);
  EXPECT_EQ(w->vm().vcpu(0).Timers(), GuestTimers(0));
  for (const Event& e : Filter(events, EventKind::kRestoreTimers)) {
    EXPECT_LT(e.seq, final_apply.seq) << "timers are written before the guest's final offsets";
  }
  // Registers and power state from the snapshot, the backend's GIC last.
  EXPECT_EQ(w->vm().vcpu(0).Register(regs::Core(regs::kPc)), layout::kRawImageLoad);
  EXPECT_EQ(w->vm().vcpu(0).GetPowerState().value(), backend::power::kRunnable);
  EXPECT_EQ(w->vm().restored_irqchip(), FakeOptions{}.irqchip_state);
  const auto gic = Filter(built, EventKind::kRestoreIrqChip);
  ASSERT_EQ(gic.size(), 1U);
  for (const Event& e : Filter(built, EventKind::kRestoreRegister)) EXPECT_LT(e.seq, gic[0].seq);
}

INSTANTIATE_TEST_SUITE_P(
    Jumps, MachineRestore,
    ::testing::Values(
        Jump{"FreezeCounterAnHourAhead", state::Policy::kFreeze, kHour, kHour + 123, kGHz},
        // A destination whose counter is far behind the source's (a host
        // booted since): the offset wraps, the guest does not go back.
        Jump{"FreezeCounterBehind", state::Policy::kFreeze, ~kSourceStart, 5 * kGHz, kGHz},
        Jump{"WallClockAnHourLater", state::Policy::kWallClock, kHour, kHour + 123, kGHz},
        Jump{"WallClockBehindThePause", state::Policy::kWallClock, kHour,
             -static_cast<std::int64_t>(kHour), kGHz},
        // 62.5 MHz (16 ns a tick): the jump is converted, floored.
        Jump{"WallClockAt62500000Hz", state::Policy::kWallClock, kHour / 16, kHour + 123,
             62'500'000}),
    JumpName);

// ---------------------------------------------------------------------------
// 4. The start gate

std::string ExpectedReport(std::uint64_t paused, unsigned cpus) {
  std::string out = "restore: policy freeze, CNTVCT resumes at " + std::to_string(paused) +
                    ", CNTPCT at " + std::to_string(paused) + "\n";
  for (unsigned i = 0; i < cpus; ++i) {
    const state::VcpuTime t = GuestTimers(i);
    out += "restore: vcpu" + std::to_string(i) + " cntv_ctl=" + std::to_string(t.el1_virtual.ctl) +
           " cntv_cval=" + std::to_string(t.el1_virtual.cval) +
           " cntp_ctl=" + std::to_string(t.el1_physical.ctl) +
           " cntp_cval=" + std::to_string(t.el1_physical.cval) +
           " cntkctl_el1=" + std::to_string(t.cntkctl_el1) + "\n";
  }
  return out;
}

TEST(MachineStartGate, TheFinalOffsetIsSetAfterEveryWarmUpAndBeforeAnyEntry) {
  constexpr unsigned kCpus = 4;
  Source src;
  ASSERT_NO_FATAL_FAILURE(RunSource(kCpus, &src));
  const std::uint64_t paused = src.snap.time.VirtualCountAtPause();

  MachineConfig config = BaseConfig(1);
  config.restore = &src.snap;
  FakeOptions options;
  options.run_ticks = kRunTicks;
  options.exit_run_ticks = kExitTicks;
  options.script = fake::FinishAfterAllEntered(kCpus, 5, 9);
  auto w = Build(src.final_count + kHour, kSourceWall + kHour, kStep, options, config);
  ASSERT_TRUE(w) << w.error().Message();

  // Before running: the restored timers as the backend holds them, the
  // same text twice, and the same on a second restore of the snapshot onto
  // a host whose clocks are elsewhere again.
  auto report = w->machine->RestoredTimeReport();
  ASSERT_TRUE(report) << report.error().Message();
  EXPECT_EQ(*report, ExpectedReport(paused, kCpus));
  auto again = w->machine->RestoredTimeReport();
  ASSERT_TRUE(again) << again.error().Message();
  EXPECT_EQ(*again, *report);
  {
    auto other = Build(src.final_count + 7 * kHour, kSourceWall - kHour, 1, options, config);
    ASSERT_TRUE(other) << other.error().Message();
    auto text = other->machine->RestoredTimeReport();
    ASSERT_TRUE(text) << text.error().Message();
    EXPECT_EQ(*text, *report);
  }

  auto r = w->machine->Run();
  ASSERT_TRUE(r) << r.error().Message();
  EXPECT_EQ(r->end, GuestEnd::kTestExit) << r->detail;
  EXPECT_EQ(r->status, 9);
  EXPECT_TRUE(r->started);

  const auto events = w->log->Events();
  const auto applies = Filter(events, EventKind::kApplyOffsets);
  ASSERT_GE(applies.size(), 2U);
  const Event& final_apply = applies.back();
  for (unsigned v = 0; v < kCpus; ++v) {
    const auto runs = Filter(events, EventKind::kRun, static_cast<int>(v));
    ASSERT_FALSE(runs.empty()) << "vCPU " << v << " never ran";
    EXPECT_TRUE(runs.front().exit_requested) << "vCPU " << v << ": no warm-up run first";
    EXPECT_LT(runs.front().seq, final_apply.seq) << "vCPU " << v << " warmed up after the offset";
    const auto ends = Filter(events, EventKind::kRunEnd, static_cast<int>(v));
    ASSERT_FALSE(ends.empty());
    EXPECT_LT(ends.front().seq, final_apply.seq);
    const auto entry = FirstRealRun(events, static_cast<int>(v));
    ASSERT_TRUE(entry) << "vCPU " << v << " never entered the guest";
    EXPECT_GT(entry->seq, final_apply.seq) << "vCPU " << v << " entered before the final offset";
    // Every vCPU resumes on the one final offset.
    EXPECT_EQ(entry->guest_virtual, entry->count - final_apply.virtual_offset);
    EXPECT_GE(entry->guest_virtual, paused);
  }
  for (const Event& e : events) {
    if (e.kind == EventKind::kApplyOffsets && e.seq > final_apply.seq) ADD_FAILURE();
    if (e.kind == EventKind::kRun && !e.exit_requested) {
      EXPECT_GT(e.seq, final_apply.seq);
    }
  }
  // The timers of every vCPU came back exactly.
  const auto restored = Filter(events, EventKind::kRestoreTimers);
  ASSERT_EQ(restored.size(), kCpus);
  for (const Event& e : restored) {
    EXPECT_EQ(e.timers, GuestTimers(static_cast<unsigned>(e.vcpu)));
    EXPECT_GT(e.seq, applies.front().seq);
  }
}

// ---------------------------------------------------------------------------
// 5. A restore that cannot set the guest's final time does not start it

TEST(MachineStartGate, AFinalOffsetThatFailsStartsNoVcpu) {
  constexpr unsigned kCpus = 2;
  Source src;
  ASSERT_NO_FATAL_FAILURE(RunSource(kCpus, &src));

  MachineConfig config = BaseConfig(1);
  config.restore = &src.snap;
  FakeOptions options;
  options.script = fake::FinishAfter(1, 9);
  // Every offset set once a vCPU ran (the start gate's) fails.
  options.fail_apply = [](unsigned, bool any_run) { return any_run; };
  auto w = Build(src.final_count + kHour, kSourceWall + kHour, kStep, std::move(options), config);
  ASSERT_TRUE(w) << w.error().Message();
  auto r = w->machine->Run();
  ASSERT_TRUE(r) << r.error().Message();
  EXPECT_EQ(r->end, GuestEnd::kError);
  EXPECT_NE(r->status, 0);
  EXPECT_FALSE(r->started);
  EXPECT_NE(r->detail.find("fake: setting the VM offset failed"), std::string::npos) << r->detail;

  const auto events = w->log->Events();
  for (const Event& e : Filter(events, EventKind::kRun)) {
    EXPECT_TRUE(e.exit_requested) << "vCPU " << e.vcpu << " entered the guest with wrong time";
  }
  const auto applies = Filter(events, EventKind::kApplyOffsets);
  ASSERT_FALSE(applies.empty());
  EXPECT_TRUE(applies.back().failed);
  unsigned failed = 0;
  for (const Event& e : applies) failed += e.failed ? 1 : 0;
  EXPECT_EQ(failed, 1U);
  // The backend keeps the last offset it took, which the guest never ran on.
  EXPECT_EQ(w->vm().virtual_offset(), applies[applies.size() - 2].virtual_offset);
  EXPECT_EQ(w->vm().vcpu(0).real_runs(), 0U);
  EXPECT_EQ(w->vm().vcpu(1).real_runs(), 0U);
}

}  // namespace
}  // namespace vtime::vmm
