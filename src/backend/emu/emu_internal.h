// The emulated backend's VM and vCPU (see vtime/backend/emu.h). Internal to
// src/backend/emu: only CreateEmuHypervisor is public.
#pragma once

#include <unicorn/unicorn.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "vtime/arch/emulate.h"
#include "vtime/arch/vm_clock.h"
#include "vtime/backend/emu.h"
#include "vtime/backend/hypervisor.h"

namespace vtime::emu {

class EmuVm;
class EmuVcpu;

/// One gap between memory regions, mapped as MMIO in one vCPU's engine.
struct MmioGap {
  EmuVcpu* vcpu = nullptr;
  std::uint64_t base = 0;
  std::uint64_t size = 0;
};

/// One mapped region of guest memory and its dirty log.
struct MemoryRegion {
  std::uint32_t slot = 0;
  std::uint64_t gpa = 0;
  std::span<std::uint8_t> host;
  /// Set while the slot logs dirty pages; read by every vCPU's write hook.
  std::atomic<bool> logging{false};
  /// One bit per 4 KiB page, set by the write hooks.
  std::unique_ptr<std::atomic<std::uint64_t>[]> dirty;
  std::size_t dirty_words = 0;

  [[nodiscard]] std::uint64_t end() const { return gpa + host.size(); }
  void MarkDirty(std::uint64_t address, std::uint64_t size);
};

/// A vCPU: one Unicorn engine, run on the thread that calls Run.
class EmuVcpu final : public backend::Vcpu {
 public:
  /// Made by EmuVm::CreateVcpu.
  static Result<std::unique_ptr<EmuVcpu>> Create(EmuVm& vm, const backend::VcpuConfig& config);
  ~EmuVcpu() override;
  EmuVcpu(const EmuVcpu&) = delete;
  EmuVcpu& operator=(const EmuVcpu&) = delete;

  [[nodiscard]] unsigned index() const override { return index_; }
  Result<void> PrepareThread() override { return Ok(); }
  void AttachThread(std::thread::native_handle_type /*thread*/) override {}
  Result<backend::Exit> Run() override;
  void RequestExit(bool on) override;
  void Kick() override;

  Result<std::uint64_t> GetRegister(std::uint64_t id) override;
  Result<void> SetRegister(std::uint64_t id, std::uint64_t value) override;
  Result<std::vector<backend::RegisterBytes>> SaveRegisters(bool counter_values) override;
  Result<void> RestoreRegister(const backend::RegisterBytes& reg) override;
  Result<std::uint32_t> GetPowerState() override;
  Result<void> SetPowerState(std::uint32_t state) override;
  Result<state::VcpuTime> CaptureTimers() override;
  Result<unsigned> RestoreTimers(const state::VcpuTime& time) override;

  // --- for EmuVm (any thread) ---
  /// The user irqchip's output to this vCPU, and its virtual IRQ output.
  void SetIrqLine(bool level);
  void SetVirtualIrqLine(bool level);
  /// The VM's layout or clock changed: pick it up before running on.
  void Resync();
  /// Waits until this vCPU runs no guest code on a layout older than
  /// `generation`; false (at once) when called from inside its own Run.
  bool AwaitLayout(std::uint64_t generation);
  /// PSCI CPU_ON from another vCPU: PSCI's return code.
  std::int64_t PowerOn(std::uint64_t entry, std::uint64_t context_id);
  /// PSCI AFFINITY_INFO's answer for this vCPU: 0 on, 1 off, 2 on pending.
  std::int64_t AffinityInfo();
  [[nodiscard]] std::uint64_t mpidr() const { return mpidr_; }

  // --- Unicorn callbacks (the engine's thread) ---
  void OnBlock(std::uint64_t address);
  void OnInterrupt(std::uint32_t intno);
  /// An UNDEF at a system-register move this file emulates itself (the
  /// *_EL12 names Unicorn lacks): done, and the PC stepped past it.
  bool EmulateUndefinedSysReg();
  std::uint32_t OnSysReg(uc_arm64_reg rt, const uc_arm64_cp_reg& reg, bool is_read);
  std::uint64_t OnMmioRead(std::uint64_t address, unsigned size);
  void OnMmioWrite(std::uint64_t address, unsigned size, std::uint64_t value);
  /// Hands a held 4-byte MMIO store to the VMM (see OnMmioWrite).
  void FlushMmioWrite();

 private:
  // Why the block hook has to look closer (attention_ bits).
  enum Attention : std::uint32_t {
    kAttnKick = 1U << 0,
    kAttnExitRequest = 1U << 1,
    kAttnIrq = 1U << 2,      // the IRQ line is high: deliver when PSTATE.I is clear
    kAttnPending = 1U << 3,  // a PSCI or exception outcome waits for the run loop
    kAttnResync = 1U << 4,   // the VM's memory or clock changed
    kAttnVirq = 1U << 5,     // the virtual IRQ line is high: deliver when it can be taken
  };
  // What the run loop must do next, set by the hooks.
  enum class Pending : std::uint8_t { kNone, kShutdown, kReset, kCpuOff, kException, kFatal };

  EmuVcpu(EmuVm& vm, const backend::VcpuConfig& config, uc_engine* uc);
  Result<void> InstallHooks();
  Result<void> SyncLayout();
  void SyncClock();
  void StopHere();

  // Registers.
  std::uint64_t ReadReg(uc_arm64_reg reg);
  void WriteReg(uc_arm64_reg reg, std::uint64_t value);
  Result<std::uint64_t> ReadSys(arch::SysRegEncoding e);
  Result<void> WriteSys(arch::SysRegEncoding e, std::uint64_t value);
  unsigned LiveSpIndex();
  std::uint64_t ReadSpEl(unsigned el);
  void WriteSpEl(unsigned el, std::uint64_t value);
  void WritePstate(std::uint64_t value);
  /// The exception level in PSTATE.
  unsigned CurrentEl();
  /// Moves the vCPU to `pstate` (another exception level) at `pc`, through
  /// an ERET on the trampoline page, so that Unicorn's cached translation
  /// state follows (a PSTATE write alone leaves it at the old level). The
  /// guest's ELR and SPSR registers are left as they were.
  Result<void> SwitchEl(std::uint64_t pstate, std::uint64_t pc);
  /// Takes an exception to `target_el` (1, or 2 on a vCPU with EL2) at
  /// vector `offset` (0x000 sync, 0x080 IRQ) of the right group for the
  /// current EL and SP; `esr` for a sync one.
  Result<void> TakeException(unsigned target_el, std::uint64_t offset,
                             std::optional<std::uint64_t> esr);
  /// Where a pending IRQ is taken now, if one can be: the physical one at
  /// EL1 or EL2 (HCR_EL2.IMO/TGE route it from EL1 to EL2, unmaskable
  /// there), else the virtual one at EL1 (under IMO, unless PSTATE.I).
  std::optional<unsigned> IrqTarget();
  /// The model's view of the accessing context (EL, and HCR_EL2's E2H, TGE, NV).
  arch::GuestContext Context();

  // Time.
  [[nodiscard]] HostCount Now() const;
  arch::EmulationEnv Env(HostCount now) const;
  /// Reports the timer lines to the VMM if they differ from the last report
  /// (or always with `force`), and recomputes the next deadline.
  void UpdateTimerLines(HostCount now, bool force = false);
  /// When the next timer line rises, in host counts (~0: never).
  std::uint64_t NextDeadline(HostCount now) const;
  void UpdateStolenTime();

  // SMCCC / PSCI.
  void HandleHypercall();
  std::int64_t PvTimeSt();

  // Sleeping (WFI, powered off).
  enum class Wake : std::uint8_t { kRun, kInterrupted };
  Wake WaitForInterrupt();
  Wake WaitForPowerOn();
  bool Interrupted();

  EmuVm& vm_;
  const unsigned index_;
  uc_engine* uc_;
  const std::uint64_t mpidr_;
  const std::optional<std::uint64_t> pvtime_ipa_;
  // Starts at EL2 (a guest hypervisor): a CPU with VHE, four timers.
  const bool el2_;
  std::vector<uc_hook> hooks_;
  std::vector<std::pair<MemoryRegion*, uc_hook>> write_hooks_;
  std::uint64_t layout_generation_ = 0;
  std::vector<MemoryRegion*> mapped_;
  std::vector<std::unique_ptr<MmioGap>> gaps_;

  // The model: this vCPU's timers and the VM's offsets (a copy).
  arch::VcpuTimerState timers_;
  arch::VmClock clock_;
  std::uint64_t clock_generation_ = ~std::uint64_t{0};
  std::uint64_t reported_lines_ = 0;
  bool lines_dirty_ = true;
  std::uint64_t next_deadline_ = ~std::uint64_t{0};
  unsigned blocks_until_clock_check_ = 1;

  // Cross-thread state.
  std::atomic<std::uint32_t> attention_{0};
  std::atomic<bool> irq_line_{false};
  std::atomic<bool> virq_line_{false};
  [[nodiscard]] bool ExitRequested() const { return (attention_.load() & kAttnExitRequest) != 0; }
  std::atomic<bool> in_guest_{false};  // inside uc_emu_start
  std::atomic<std::uint64_t> synced_generation_{0};
  std::atomic<std::thread::id> runner_{};
  std::mutex mu_;  // guards the power state and wakes sleepers
  std::condition_variable wake_;
  bool powered_on_ = true;
  bool on_pending_ = false;
  std::uint64_t on_entry_ = 0;
  std::uint64_t on_context_ = 0;

  // A 4-byte MMIO store at an 8-byte aligned address, held until it is
  // known whether the next callback is its upper half (OnMmioWrite).
  struct HeldWrite {
    std::uint64_t address = 0;
    std::uint64_t value = 0;
  };
  std::optional<HeldWrite> held_write_;

  // Registers of a restored snapshot this CPU has no place for (RestoreRegister).
  unsigned skipped_registers_ = 0;

  // Run-loop state (the vCPU's thread).
  bool stop_requested_ = false;
  Pending pending_ = Pending::kNone;
  std::string pending_detail_;
  std::uint64_t pending_esr_ = 0;
  unsigned pending_el_ = 1;     // where a kException is taken
  bool in_trampoline_ = false;  // SwitchEl's run: the hooks stand aside

  // PV stolen time.
  bool pvtime_started_ = false;
  std::uint64_t last_run_delay_ns_ = 0;
  std::uint64_t next_steal_update_ = 0;
};

/// The VM: memory, MMIO and the offsets all vCPUs share.
class EmuVm final : public backend::Vm {
 public:
  EmuVm(std::shared_ptr<const EmuHostClock> clock, const backend::VmConfig& config);
  ~EmuVm() override;

  Result<void> MapMemory(std::uint32_t slot, std::uint64_t gpa, std::span<std::uint8_t> host,
                         bool dirty_log) override;
  Result<void> DirtyLog(std::uint32_t slot, std::span<std::uint64_t> bitmap) override;
  void SetMmioHandler(backend::MmioHandler handler) override { mmio_ = std::move(handler); }
  void SetTimerLineHandler(backend::TimerLineHandler handler) override {
    lines_ = std::move(handler);
  }
  void SetSysRegHandler(backend::SysRegHandler handler) override { sysregs_ = std::move(handler); }
  Result<std::unique_ptr<backend::Vcpu>> CreateVcpu(const backend::VcpuConfig& config) override;
  Result<void> FinishVcpus() override { return Ok(); }
  Result<backend::OffsetWrites> ApplyOffsets(arch::VmClock& clock, std::uint64_t virtual_offset,
                                             std::uint64_t physical_offset) override;
  Result<void> SetIrqLine(unsigned vcpu, bool level) override;
  Result<void> SetVirtualIrqLine(unsigned vcpu, bool level) override;
  Result<void> SetSpiLine(std::uint32_t intid, bool level) override;
  Result<std::vector<std::uint8_t>> SaveIrqChip() override { return std::vector<std::uint8_t>{}; }
  Result<void> RestoreIrqChip(std::span<const std::uint8_t> bytes) override;

  // --- for the vCPUs ---
  [[nodiscard]] const EmuHostClock& host_clock() const { return *clock_; }
  /// The regions, in address order, and their generation (bumped on every
  /// change); the caller holds no lock while using them: regions are only
  /// ever added or re-flagged, never moved or freed while the VM lives.
  std::vector<MemoryRegion*> Regions(std::uint64_t* generation);
  [[nodiscard]] std::uint64_t layout_generation() const { return layout_generation_.load(); }
  /// A copy of the VM's offsets and its generation.
  arch::VmClock ClockCopy(std::uint64_t* generation);
  [[nodiscard]] std::uint64_t clock_generation() const { return clock_generation_.load(); }
  /// A host pointer for `size` bytes of guest RAM at `gpa` (nullptr if not
  /// wholly inside one region), and that region.
  std::uint8_t* HostPointer(std::uint64_t gpa, std::uint64_t size, MemoryRegion** region);
  /// A counter-value write by the VMM (legacy rule, or ignored once the VM
  /// offset is set).
  Result<void> WriteCounterValue(arch::CounterKind kind, std::uint64_t value);
  const backend::MmioHandler& mmio() const { return mmio_; }
  const backend::TimerLineHandler& lines() const { return lines_; }
  const backend::SysRegHandler& sysregs() const { return sysregs_; }
  /// The VMM's irqchip is a GICv3 with system registers (kUserV3).
  [[nodiscard]] bool gic_sysregs() const { return gic_sysregs_; }
  /// The vCPU with this MPIDR affinity, if any.
  EmuVcpu* VcpuByMpidr(std::uint64_t mpidr);
  void ForgetVcpu(EmuVcpu* vcpu);

 private:
  void AwaitWriteHooks(MemoryRegion& region, const std::vector<EmuVcpu*>& vcpus,
                       std::uint64_t generation);

  std::shared_ptr<const EmuHostClock> clock_;
  std::mutex mu_;
  std::vector<std::unique_ptr<MemoryRegion>> regions_;
  std::atomic<std::uint64_t> layout_generation_{1};
  arch::VmClock clock_model_;
  std::atomic<std::uint64_t> clock_generation_{1};
  backend::MmioHandler mmio_;
  backend::TimerLineHandler lines_;
  backend::SysRegHandler sysregs_;
  const bool gic_sysregs_;
  std::vector<EmuVcpu*> vcpus_;
};

/// "Unicorn error 7 (UC_ERR_...): ..." for a context.
std::string UcError(uc_err err);

}  // namespace vtime::emu
