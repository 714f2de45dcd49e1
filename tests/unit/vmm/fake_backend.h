// A fake backend (vtime/backend/hypervisor.h) and a fake host clock
// (vtime/backend/host_clock.h) for driving vtvmm's machine without KVM: the
// test owns time (a counter that moves only when the test, a read or a fake
// guest run moves it, and a wall clock it can jump), and every call that
// carries guest time is written to one event log, in the order it happened,
// with the clock's count at that moment. No guest code runs: a real entry
// waits briefly (up to FakeOptions::run_wait) for a kick, and a script can
// make vCPUs store to MMIO (the test finisher, say) through the VM's handler.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "vmm/layout.h"
#include "vtime/arch/vm_clock.h"
#include "vtime/backend/host_clock.h"
#include "vtime/backend/hypervisor.h"
#include "vtime/backend/registers.h"
#include "vtime/result.h"
#include "vtime/state/saved_state.h"
#include "vtime/units.h"

namespace vtime::fake {

/// What an Event records.
enum class EventKind : std::uint8_t {
  kClockRead,     ///< HostClock::Count: `count` is the value returned
  kCapture,       ///< HostClock::CaptureNow: `count` and `wall_ns` returned
  kCreateVcpu,    ///< `vcpu`, `powered_off`
  kMapMemory,     ///< `slot`, `gpa`, `size`, `dirty_log`
  kApplyOffsets,  ///< `virtual_offset`, `physical_offset` asked; `failed`
  kRun,           ///< a Run began: `exit_requested`; for a real entry `guest_virtual`
  kRunEnd,        ///< that Run returns (after any clock advance it made)
  kSetRegister,   ///< `id`, `value`
  kRestoreRegister,
  kSetPowerState,  ///< `value`
  kCaptureTimers,  ///< `timers` returned
  kRestoreTimers,  ///< `timers` written
  kRestoreIrqChip,
  kMmio,  ///< a scripted access: `gpa` address, `value` stored or loaded
};

/// One call into the fakes. `count` is the clock's count at that moment
/// (for a read: the value it returned), `thread` the calling thread.
struct Event {
  std::uint64_t seq = 0;
  EventKind kind = EventKind::kClockRead;
  std::thread::id thread;
  int vcpu = -1;
  std::uint64_t count = 0;
  std::int64_t wall_ns = 0;
  bool exit_requested = false;
  std::uint64_t guest_virtual = 0;
  std::uint64_t virtual_offset = 0;
  std::uint64_t physical_offset = 0;
  bool failed = false;
  bool powered_off = false;
  std::uint64_t id = 0;
  std::uint64_t value = 0;
  std::uint32_t slot = 0;
  std::uint64_t gpa = 0;
  std::uint64_t size = 0;
  bool dirty_log = false;
  bool write = false;  ///< kMmio: a store
  state::VcpuTime timers;
};

/// An event of `kind` on vCPU `vcpu` (-1: none) at clock count `count`.
inline Event MakeEvent(EventKind kind, int vcpu, std::uint64_t count) {
  Event e;
  e.kind = kind;
  e.vcpu = vcpu;
  e.count = count;
  return e;
}

/// Every event, in order (thread-safe).
class EventLog {
 public:
  void Add(Event e) {
    std::lock_guard lock(mu_);
    e.seq = events_.size();
    e.thread = std::this_thread::get_id();
    events_.push_back(std::move(e));
  }
  [[nodiscard]] std::vector<Event> Events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  [[nodiscard]] std::vector<Event> Of(EventKind kind) const {
    std::vector<Event> out;
    for (const Event& e : Events()) {
      if (e.kind == kind) out.push_back(e);
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Event> events_;
};

/// A host clock the test owns. The counter moves only by Set/Advance, by
/// `step` ticks at every Count or CaptureNow (each read returns the count
/// before its step), and by the fake vCPUs' runs; the wall clock only by
/// SetWall/JumpWall. A read and its log entry are one step, so the log's
/// order is the counter's order.
class FakeClock final : public backend::HostClock {
 public:
  FakeClock(std::shared_ptr<EventLog> log, std::uint64_t count, std::int64_t wall_ns,
            std::uint64_t step = 0, std::uint64_t frequency_hz = 1'000'000'000)
      : log_(std::move(log)), count_(count), wall_ns_(wall_ns), step_(step), hz_(frequency_hz) {}

  [[nodiscard]] HostCount Count() const override {
    std::lock_guard lock(mu_);
    const std::uint64_t v = count_;
    count_ += step_;
    if (log_) log_->Add(MakeEvent(EventKind::kClockRead, -1, v));
    return HostCount{v};
  }
  [[nodiscard]] std::uint64_t FrequencyHz() const override { return hz_; }
  [[nodiscard]] state::CapturePair CaptureNow() const override {
    std::lock_guard lock(mu_);
    const state::CapturePair pair{count_, wall_ns_};
    count_ += step_;
    if (log_) {
      Event e = MakeEvent(EventKind::kCapture, -1, pair.host_counter);
      e.wall_ns = pair.wall_clock_ns;
      log_->Add(std::move(e));
    }
    return pair;
  }

  /// The count now, without a step and without a log entry.
  [[nodiscard]] std::uint64_t Peek() const {
    std::lock_guard lock(mu_);
    return count_;
  }
  void Set(std::uint64_t count) {
    std::lock_guard lock(mu_);
    count_ = count;
  }
  void Advance(std::uint64_t ticks) {
    std::lock_guard lock(mu_);
    count_ += ticks;
  }
  void SetStep(std::uint64_t step) {
    std::lock_guard lock(mu_);
    step_ = step;
  }
  [[nodiscard]] std::int64_t Wall() const {
    std::lock_guard lock(mu_);
    return wall_ns_;
  }
  void SetWall(std::int64_t ns) {
    std::lock_guard lock(mu_);
    wall_ns_ = ns;
  }
  void JumpWall(std::int64_t ns) {
    std::lock_guard lock(mu_);
    wall_ns_ += ns;
  }

 private:
  std::shared_ptr<EventLog> log_;
  mutable std::mutex mu_;
  mutable std::uint64_t count_;
  std::int64_t wall_ns_;
  std::uint64_t step_;
  std::uint64_t hz_;
};

/// A store a scripted vCPU makes instead of waiting in a real entry.
/// `real_run` counts that vCPU's real entries from 1.
using RunScript =
    std::function<std::optional<backend::MmioAccess>(unsigned vcpu, std::uint64_t real_run)>;

/// Makes a scripted vCPU 0 write `status` to the test finisher at its
/// `after`-th real entry.
inline RunScript FinishAfter(std::uint64_t after, std::uint32_t status) {
  return [after, status](unsigned vcpu, std::uint64_t run) -> std::optional<backend::MmioAccess> {
    if (vcpu != 0 || run != after) return std::nullopt;
    return backend::MmioAccess{
        .address = vmm::layout::kTestExit, .size = 4, .write = true, .data = status};
  };
}

/// Like FinishAfter, once every one of `cpus` vCPUs has also entered the
/// guest at least once (however late the host schedules its thread).
inline RunScript FinishAfterAllEntered(unsigned cpus, std::uint64_t after, std::uint32_t status) {
  struct Seen {
    std::mutex mu;
    std::vector<bool> entered;
    bool fired = false;
  };
  auto seen = std::make_shared<Seen>();
  seen->entered.assign(cpus, false);
  return [seen, after, status](unsigned vcpu,
                               std::uint64_t run) -> std::optional<backend::MmioAccess> {
    std::lock_guard lock(seen->mu);
    if (vcpu < seen->entered.size()) seen->entered[vcpu] = true;
    const bool all =
        std::all_of(seen->entered.begin(), seen->entered.end(), [](bool e) { return e; });
    if (vcpu != 0 || run < after || !all || seen->fired) return std::nullopt;
    seen->fired = true;
    return backend::MmioAccess{
        .address = vmm::layout::kTestExit, .size = 4, .write = true, .data = status};
  };
}

class FakeVm;

/// How the fakes behave.
struct FakeOptions {
  backend::Capabilities caps{.counter_offset = true,
                             .physical_counter_writes = true,
                             .backend_irqchip = true,
                             .user_irqchip = true,
                             .el2 = false,
                             .steal_time = false,
                             .pvtime_revisions = {}};
  /// How long a real entry waits for a kick or an exit request.
  std::chrono::microseconds run_wait{1000};
  /// Ticks a powered-on vCPU's real entry moves the clock (the guest ran).
  std::uint64_t run_ticks = 0;
  /// Ticks a Run made with an exit requested moves it (the exit's cost).
  std::uint64_t exit_run_ticks = 0;
  RunScript script;
  /// Called at each ApplyOffsets with its number (from 1) and whether any
  /// vCPU ran yet; true makes that call fail (and change nothing).
  std::function<bool(unsigned call, bool any_run)> fail_apply;
  /// What SaveIrqChip returns (a kernel irqchip's snapshot needs some).
  std::vector<std::uint8_t> irqchip_state{0x76, 0x67, 0x69, 0x63};
};

inline constexpr const char* kFakeExplain = "the fake backend has no such feature";

/// A fake vCPU: registers in a map, timers as a state::VcpuTime, the
/// virtual counter derived from the clock and the VM's offset.
class FakeVcpu final : public backend::Vcpu {
 public:
  FakeVcpu(FakeVm& vm, const backend::VcpuConfig& config);

  [[nodiscard]] unsigned index() const override { return index_; }
  Result<void> PrepareThread() override { return Ok(); }
  void AttachThread(std::thread::native_handle_type /*thread*/) override {}
  Result<backend::Exit> Run() override;
  void RequestExit(bool on) override {
    {
      std::lock_guard lock(wait_mu_);
      exit_requested_.store(on);
    }
    wait_cv_.notify_all();
  }
  void Kick() override {
    {
      std::lock_guard lock(wait_mu_);
      kicked_ = true;
    }
    wait_cv_.notify_all();
  }

  Result<std::uint64_t> GetRegister(std::uint64_t id) override;
  Result<void> SetRegister(std::uint64_t id, std::uint64_t value) override;
  Result<std::vector<backend::RegisterBytes>> SaveRegisters(bool counter_values) override;
  Result<void> RestoreRegister(const backend::RegisterBytes& reg) override;
  Result<std::uint32_t> GetPowerState() override {
    std::lock_guard lock(mu_);
    return power_;
  }
  Result<void> SetPowerState(std::uint32_t state) override;
  Result<state::VcpuTime> CaptureTimers() override;
  Result<unsigned> RestoreTimers(const state::VcpuTime& time) override;

  // --- for tests ---
  /// The timers as the guest would have programmed them.
  void SetTimers(const state::VcpuTime& t) {
    std::lock_guard lock(mu_);
    timers_ = t;
  }
  [[nodiscard]] state::VcpuTime Timers() const {
    std::lock_guard lock(mu_);
    return timers_;
  }
  [[nodiscard]] std::optional<std::uint64_t> Register(std::uint64_t id) const {
    std::lock_guard lock(mu_);
    auto it = regs_.find(id);
    if (it == regs_.end()) return std::nullopt;
    return it->second;
  }
  [[nodiscard]] std::uint64_t real_runs() const { return real_runs_.load(); }

 private:
  FakeVm& vm_;
  const unsigned index_;
  mutable std::mutex mu_;  // registers, power state, timers
  std::map<std::uint64_t, std::uint64_t> regs_;
  std::uint32_t power_;
  state::VcpuTime timers_;
  std::mutex wait_mu_;
  std::condition_variable wait_cv_;
  std::atomic<bool> exit_requested_{false};
  bool kicked_ = false;
  std::atomic<std::uint64_t> real_runs_{0};
};

/// A fake VM: it holds the offsets it was given (as KVM does) and answers
/// MMIO through the machine's handler.
class FakeVm final : public backend::Vm {
 public:
  FakeVm(FakeClock& clock, EventLog& log, const FakeOptions& options)
      : clock_(clock), log_(log), options_(options) {}

  Result<void> MapMemory(std::uint32_t slot, std::uint64_t gpa, std::span<std::uint8_t> host,
                         bool dirty_log) override {
    {
      std::lock_guard lock(mu_);
      memory_[slot] = {gpa, host};
    }
    {
      Event e = MakeEvent(EventKind::kMapMemory, -1, clock_.Peek());
      e.slot = slot;
      e.gpa = gpa;
      e.size = host.size();
      e.dirty_log = dirty_log;
      log_.Add(std::move(e));
    }
    return Ok();
  }
  Result<void> DirtyLog(std::uint32_t /*slot*/, std::span<std::uint64_t> bitmap) override {
    // Every page dirty: the fake does not track writes.
    std::fill(bitmap.begin(), bitmap.end(), ~std::uint64_t{0});
    return Ok();
  }
  void SetMmioHandler(backend::MmioHandler handler) override { mmio_ = std::move(handler); }
  void SetTimerLineHandler(backend::TimerLineHandler handler) override {
    lines_ = std::move(handler);
  }
  void SetSysRegHandler(backend::SysRegHandler /*handler*/) override {}
  Result<std::unique_ptr<backend::Vcpu>> CreateVcpu(const backend::VcpuConfig& config) override {
    if (config.index != vcpus_.size()) {
      return Fail(ErrorCode::kInvalidArgument, "fake: vCPUs are created in order");
    }
    {
      Event e = MakeEvent(EventKind::kCreateVcpu, static_cast<int>(config.index), clock_.Peek());
      e.powered_off = config.powered_off;
      log_.Add(std::move(e));
    }
    auto vcpu = std::make_unique<FakeVcpu>(*this, config);
    vcpus_.push_back(vcpu.get());
    return vcpu;
  }
  Result<void> FinishVcpus() override { return Ok(); }

  Result<backend::OffsetWrites> ApplyOffsets(arch::VmClock& clock, std::uint64_t virtual_offset,
                                             std::uint64_t physical_offset) override {
    std::lock_guard lock(mu_);
    ++apply_calls_;
    Event e = MakeEvent(EventKind::kApplyOffsets, -1, clock_.Peek());
    e.virtual_offset = virtual_offset;
    e.physical_offset = physical_offset;
    if (options_.fail_apply && options_.fail_apply(apply_calls_, any_run_.load())) {
      e.failed = true;
      log_.Add(e);
      return Fail(ErrorCode::kSystem, "fake: setting the VM offset failed", 5);
    }
    backend::OffsetWrites done;
    if (clock.features().vm_offset_api) {
      if (auto r = clock.SetVmOffset(Ticks{virtual_offset}); !r) return tl::unexpected(r.error());
      virtual_offset_ = virtual_offset;
      physical_offset_ = clock.features().physical_offset ? virtual_offset : 0;
      ++done.vm_offset_ioctls;
    } else {
      // Legacy counter-value writes, each from "now".
      for (const auto kind : {arch::CounterKind::kVirtual, arch::CounterKind::kPhysical}) {
        const bool physical = kind == arch::CounterKind::kPhysical;
        if (physical && !clock.features().physical_offset) break;
        const HostCount now{clock_.Peek()};
        const Ticks value = GuestView(now, Ticks{physical ? physical_offset : virtual_offset});
        if (auto r = clock.WriteCounterValue(kind, value, now); !r) {
          return tl::unexpected(r.error());
        }
        ++done.counter_value_writes;
      }
      virtual_offset_ = clock.virtual_offset().value;
      physical_offset_ = clock.physical_offset().value;
    }
    log_.Add(e);
    return done;
  }

  Result<void> SetIrqLine(unsigned /*vcpu*/, bool /*level*/) override { return Ok(); }
  Result<void> SetVirtualIrqLine(unsigned /*vcpu*/, bool /*level*/) override { return Ok(); }
  Result<void> SetSpiLine(std::uint32_t /*intid*/, bool /*level*/) override { return Ok(); }
  Result<std::vector<std::uint8_t>> SaveIrqChip() override { return options_.irqchip_state; }
  Result<void> RestoreIrqChip(std::span<const std::uint8_t> bytes) override {
    {
      std::lock_guard lock(mu_);
      restored_irqchip_.assign(bytes.begin(), bytes.end());
    }
    log_.Add(MakeEvent(EventKind::kRestoreIrqChip, -1, clock_.Peek()));
    return Ok();
  }

  // --- for the fake vCPUs and tests ---
  [[nodiscard]] FakeClock& clock() { return clock_; }
  [[nodiscard]] EventLog& log() { return log_; }
  [[nodiscard]] const FakeOptions& options() const { return options_; }
  [[nodiscard]] std::uint64_t virtual_offset() const {
    std::lock_guard lock(mu_);
    return virtual_offset_;
  }
  [[nodiscard]] std::uint64_t physical_offset() const {
    std::lock_guard lock(mu_);
    return physical_offset_;
  }
  [[nodiscard]] std::vector<std::uint8_t> restored_irqchip() const {
    std::lock_guard lock(mu_);
    return restored_irqchip_;
  }
  /// vCPU `i` (owned by the machine: valid while it lives).
  [[nodiscard]] FakeVcpu& vcpu(unsigned i) { return *vcpus_.at(i); }
  [[nodiscard]] std::size_t vcpu_count() const { return vcpus_.size(); }
  /// Guest memory at `gpa` (a mapped slot's host bytes), empty if unmapped.
  [[nodiscard]] std::span<std::uint8_t> Memory(std::uint64_t gpa, std::uint64_t size) const {
    std::lock_guard lock(mu_);
    for (const auto& [slot, m] : memory_) {
      if (gpa >= m.first && gpa + size <= m.first + m.second.size()) {
        return m.second.subspan(gpa - m.first, size);
      }
    }
    return {};
  }
  std::uint64_t Mmio(unsigned vcpu, const backend::MmioAccess& access) {
    return mmio_ ? mmio_(vcpu, access) : 0;
  }
  void NoteRun() { any_run_.store(true); }

 private:
  FakeClock& clock_;
  EventLog& log_;
  const FakeOptions& options_;
  mutable std::mutex mu_;
  std::map<std::uint32_t, std::pair<std::uint64_t, std::span<std::uint8_t>>> memory_;
  backend::MmioHandler mmio_;
  backend::TimerLineHandler lines_;
  std::vector<FakeVcpu*> vcpus_;
  unsigned apply_calls_ = 0;
  std::atomic<bool> any_run_{false};
  std::uint64_t virtual_offset_ = 0;
  std::uint64_t physical_offset_ = 0;
  std::vector<std::uint8_t> restored_irqchip_;
};

inline FakeVcpu::FakeVcpu(FakeVm& vm, const backend::VcpuConfig& config)
    : vm_(vm),
      index_(config.index),
      power_(config.powered_off ? backend::power::kStopped : backend::power::kRunnable) {
  // What a fresh arm64 vCPU has that a snapshot keeps (a few of them).
  regs_[backend::regs::Core(backend::regs::kPc)] = 0;
  regs_[backend::regs::Core(0)] = 0;
  regs_[backend::regs::Pstate()] = 0x3c5;
  regs_[backend::regs::kMpidrEl1] = 0x80000000ULL | config.index;
}

inline Result<backend::Exit> FakeVcpu::Run() {
  vm_.NoteRun();
  const FakeOptions& o = vm_.options();
  FakeClock& clock = vm_.clock();
  auto end = [&](bool requested) {
    {
      Event e = MakeEvent(EventKind::kRunEnd, static_cast<int>(index_), clock.Peek());
      e.exit_requested = requested;
      vm_.log().Add(std::move(e));
    }
  };
  if (exit_requested_.load()) {
    {
      Event e = MakeEvent(EventKind::kRun, static_cast<int>(index_), clock.Peek());
      e.exit_requested = true;
      vm_.log().Add(std::move(e));
    }
    if (o.exit_run_ticks != 0) clock.Advance(o.exit_run_ticks);
    {
      std::lock_guard lock(wait_mu_);
      kicked_ = false;
    }
    end(true);
    return backend::Exit{backend::ExitKind::kInterrupted, {}};
  }
  const std::uint64_t now = clock.Peek();
  {
    Event e = MakeEvent(EventKind::kRun, static_cast<int>(index_), now);
    e.guest_virtual = now - vm_.virtual_offset();
    vm_.log().Add(std::move(e));
  }
  const std::uint64_t run = ++real_runs_;
  if (o.script) {
    if (auto access = o.script(index_, run)) {
      // Answered on this thread, outside every lock of this vCPU (the
      // handler may stop the machine, which requests this vCPU's exit).
      const std::uint64_t loaded = vm_.Mmio(index_, *access);
      {
        Event e = MakeEvent(EventKind::kMmio, static_cast<int>(index_), clock.Peek());
        e.value = access->write ? access->data : loaded;
        e.gpa = access->address;
        e.write = access->write;
        vm_.log().Add(std::move(e));
      }
      end(false);
      return backend::Exit{backend::ExitKind::kMmio, {}};
    }
  }
  {
    std::unique_lock lock(wait_mu_);
    wait_cv_.wait_for(lock, o.run_wait, [this] { return kicked_ || exit_requested_.load(); });
    kicked_ = false;
  }
  bool on = false;
  {
    std::lock_guard lock(mu_);
    on = power_ == backend::power::kRunnable;
  }
  if (on && o.run_ticks != 0) clock.Advance(o.run_ticks);
  end(false);
  return backend::Exit{backend::ExitKind::kInterrupted, {}};
}

inline Result<std::uint64_t> FakeVcpu::GetRegister(std::uint64_t id) {
  namespace regs = backend::regs;
  std::lock_guard lock(mu_);
  switch (id) {
    case regs::kCntvCtl:
      return timers_.el1_virtual.ctl;
    case regs::kCntvCval:
      return timers_.el1_virtual.cval;
    case regs::kCntpCtl:
      return timers_.el1_physical.ctl;
    case regs::kCntpCval:
      return timers_.el1_physical.cval;
    case regs::kCntkctlEl1:
      return timers_.cntkctl_el1;
    case regs::kCntvct:
      return vm_.clock().Peek() - vm_.virtual_offset();
    case regs::kCntpct:
      return vm_.clock().Peek() - vm_.physical_offset();
    case regs::kCntvoffEl2:
      return timers_.cntvoff_el2;
    case regs::kCnthctlEl2:
      return timers_.cnthctl_el2;
    case regs::kCnthpCtl:
      return timers_.el2_physical.ctl;
    case regs::kCnthpCval:
      return timers_.el2_physical.cval;
    case regs::kCnthvCtl:
      return timers_.el2_virtual.ctl;
    case regs::kCnthvCval:
      return timers_.el2_virtual.cval;
    default:
      break;
  }
  auto it = regs_.find(id);
  if (it == regs_.end()) {
    return Fail(ErrorCode::kInvalidArgument,
                "fake: vCPU " + std::to_string(index_) + " has no register " + std::to_string(id));
  }
  return it->second;
}

inline Result<void> FakeVcpu::SetRegister(std::uint64_t id, std::uint64_t value) {
  {
    std::lock_guard lock(mu_);
    regs_[id] = value;
  }
  {
    Event e = MakeEvent(EventKind::kSetRegister, static_cast<int>(index_), vm_.clock().Peek());
    e.id = id;
    e.value = value;
    vm_.log().Add(std::move(e));
  }
  return Ok();
}

inline Result<std::vector<backend::RegisterBytes>> FakeVcpu::SaveRegisters(bool counter_values) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> values;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, v] : regs_) {
      if (!backend::regs::IsTimeRegister(id)) values.emplace_back(id, v);
    }
  }
  if (counter_values) {
    for (std::uint64_t id : {backend::regs::kCntvct, backend::regs::kCntpct}) {
      auto v = GetRegister(id);
      if (!v) return tl::unexpected(v.error());
      values.emplace_back(id, *v);
    }
  }
  std::vector<backend::RegisterBytes> out;
  for (const auto& [id, v] : values) {
    backend::RegisterBytes r{id, std::vector<std::uint8_t>(8)};
    for (unsigned i = 0; i < 8; ++i) r.bytes[i] = static_cast<std::uint8_t>(v >> (8 * i));
    out.push_back(std::move(r));
  }
  return out;
}

inline Result<void> FakeVcpu::RestoreRegister(const backend::RegisterBytes& reg) {
  if (reg.bytes.size() != 8) {
    return Fail(ErrorCode::kInvalidArgument, "fake: registers are 8 bytes");
  }
  std::uint64_t v = 0;
  for (unsigned i = 0; i < 8; ++i) v |= std::uint64_t{reg.bytes[i]} << (8 * i);
  {
    std::lock_guard lock(mu_);
    regs_[reg.id] = v;
  }
  {
    Event e = MakeEvent(EventKind::kRestoreRegister, static_cast<int>(index_), vm_.clock().Peek());
    e.id = reg.id;
    e.value = v;
    vm_.log().Add(std::move(e));
  }
  return Ok();
}

inline Result<void> FakeVcpu::SetPowerState(std::uint32_t state) {
  {
    std::lock_guard lock(mu_);
    power_ = state;
  }
  {
    Event e = MakeEvent(EventKind::kSetPowerState, static_cast<int>(index_), vm_.clock().Peek());
    e.value = state;
    vm_.log().Add(std::move(e));
  }
  return Ok();
}

inline Result<state::VcpuTime> FakeVcpu::CaptureTimers() {
  state::VcpuTime t = Timers();
  {
    Event e = MakeEvent(EventKind::kCaptureTimers, static_cast<int>(index_), vm_.clock().Peek());
    e.timers = t;
    vm_.log().Add(std::move(e));
  }
  return t;
}

inline Result<unsigned> FakeVcpu::RestoreTimers(const state::VcpuTime& time) {
  SetTimers(time);
  {
    Event e = MakeEvent(EventKind::kRestoreTimers, static_cast<int>(index_), vm_.clock().Peek());
    e.timers = time;
    vm_.log().Add(std::move(e));
  }
  // CTL and CVAL of two timers and CNTKCTL_EL1, and at vEL2 six more.
  return time.nested ? 11U : 5U;
}

/// A fake hypervisor; its clock and log outlive it (shared with the test).
class FakeHypervisor final : public backend::Hypervisor {
 public:
  FakeHypervisor(std::shared_ptr<FakeClock> clock, std::shared_ptr<EventLog> log,
                 FakeOptions options = {})
      : clock_(std::move(clock)), log_(std::move(log)), options_(std::move(options)) {}

  [[nodiscard]] std::string Name() const override { return "fake"; }
  [[nodiscard]] const backend::Capabilities& Caps() const override { return options_.caps; }
  [[nodiscard]] std::string Describe() const override { return "fake backend"; }
  [[nodiscard]] std::string Explain(backend::Feature /*feature*/) const override {
    return kFakeExplain;
  }
  [[nodiscard]] const backend::HostClock& Clock() const override { return *clock_; }
  Result<std::unique_ptr<backend::Vm>> CreateVm(const backend::VmConfig& config) override {
    if (vm_ != nullptr) return Fail(ErrorCode::kBadState, "fake: one VM per hypervisor");
    config_ = config;
    auto vm = std::make_unique<FakeVm>(*clock_, *log_, options_);
    vm_ = vm.get();
    return vm;
  }

  /// The VM (owned by the machine: valid while it lives), null before one.
  [[nodiscard]] FakeVm* vm() const { return vm_; }
  [[nodiscard]] const backend::VmConfig& vm_config() const { return config_; }

 private:
  std::shared_ptr<FakeClock> clock_;
  std::shared_ptr<EventLog> log_;
  FakeOptions options_;
  backend::VmConfig config_;
  FakeVm* vm_ = nullptr;
};

}  // namespace vtime::fake
