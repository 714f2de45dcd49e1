// The seam between a VMM and what runs its guest: a hypervisor, its VMs and
// their vCPUs, in the architecture's terms rather than one hypervisor's. The
// KVM backend (src/backend/kvm) and the emulated one (src/backend/emu)
// implement it; vtvmm's machine (src/vmm) sees only this.
//
// Guest time crosses the seam as vtime's model has it: the VM offsets go in
// through ApplyOffsets with the arch::VmClock that decided them, and each
// vCPU's timers come out and go back as state::VcpuTime. "Now" comes from
// the backend's HostClock.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "vtime/arch/sysreg.h"
#include "vtime/arch/vm_clock.h"
#include "vtime/backend/host_clock.h"
#include "vtime/result.h"
#include "vtime/state/saved_state.h"

namespace vtime::backend {

/// What a backend offers a VMM.
struct Capabilities {
  /// One offset for both counters of every vCPU, set any time the vCPUs
  /// are out of the guest (KVM_CAP_COUNTER_OFFSET on KVM).
  bool counter_offset = false;
  /// Where there is no such offset, the legacy counter-value writes also
  /// reach CNTPCT (false: only CNTVCT can be moved).
  bool physical_counter_writes = false;
  /// An interrupt controller inside the backend (a GICv3 with its own
  /// redistributors).
  bool backend_irqchip = false;
  /// A user-space interrupt controller: each vCPU's IRQ input set by the
  /// VMM, its timer lines reported at each exit.
  bool user_irqchip = false;
  /// A user-space GICv3 (IrqChipKind::kUserV3): the CPU interface's system
  /// registers and a virtual IRQ input per vCPU reach the VMM.
  bool user_gic_sysregs = false;
  /// vCPUs that start at EL2 (a guest hypervisor).
  bool el2 = false;
  /// The PV stolen-time service (SMCCC PV_TIME_*), and the record
  /// revisions it writes.
  bool steal_time = false;
  std::vector<std::uint32_t> pvtime_revisions;
};

/// A capability a VMM may ask for (Hypervisor::Explain says why it is not
/// there).
enum class Feature : std::uint8_t { kBackendIrqChip, kUserIrqChip, kEl2, kStealTime };

/// Which interrupt controller a VM has.
enum class IrqChipKind : std::uint8_t {
  kBackend,  ///< the backend's GICv3 (KVM's vGIC)
  kUser,     ///< the VMM's own, fed by the timer lines (TimerLineHandler)
  /// The VMM's own GICv3: as kUser, and the CPU interface's system
  /// registers (ICC_*, ICH_*) go to the SysRegHandler, its virtual IRQ to
  /// SetVirtualIrqLine (Capabilities::user_gic_sysregs).
  kUserV3,
};

/// How a VM is made.
struct VmConfig {
  IrqChipKind irqchip = IrqChipKind::kBackend;
  /// The backend GICv3's distributor and redistributor bases, and its
  /// interrupt count.
  std::uint64_t gic_dist_base = 0;
  std::uint64_t gic_redist_base = 0;
  std::uint32_t gic_irqs = 128;
};

/// How one vCPU is made.
struct VcpuConfig {
  unsigned index = 0;
  /// Off until a PSCI CPU_ON (every secondary).
  bool powered_off = false;
  /// Starts at EL2 (Capabilities::el2).
  bool el2 = false;
  /// Its PV stolen-time record, where the VM serves PV time.
  std::optional<std::uint64_t> pvtime_ipa;
  /// The timers' PPIs (16..31) on the backend's interrupt controller.
  int vtimer_ppi = 27;
  int ptimer_ppi = 30;
};

/// A guest's load or store to an address no memory backs.
struct MmioAccess {
  std::uint64_t address = 0;
  std::uint32_t size = 0;  ///< 1, 2, 4 or 8 bytes
  bool write = false;
  std::uint64_t data = 0;  ///< the value stored (little endian), for a write
};
/// Answers one access on the vCPU's thread: what a load returns (ignored
/// for a store).
using MmioHandler = std::function<std::uint64_t(unsigned vcpu, const MmioAccess&)>;

/// A guest's access to a system register the backend leaves to the VMM:
/// the GICv3 CPU interface of an IrqChipKind::kUserV3 irqchip.
struct SysRegAccess {
  arch::SysRegEncoding encoding;
  bool write = false;
  std::uint64_t value = 0;  ///< the value written, for a write
  unsigned el = 1;          ///< the accessing exception level (1 or 2)
  /// HCR_EL2.IMO and FMO, for an access from EL1 on a vCPU with EL2 (they
  /// send ICC_* names to the virtual CPU interface); false otherwise.
  bool imo = false;
  bool fmo = false;
};
/// Answers one access on the vCPU's thread: the value read (anything for a
/// write), or nothing for a register that does not exist there (the guest
/// takes an UNDEF).
using SysRegHandler =
    std::function<std::optional<std::uint64_t>(unsigned vcpu, const SysRegAccess&)>;

/// Timer output lines, as a TimerLineHandler gets them (user irqchip).
namespace timer_line {
inline constexpr std::uint64_t kVirtual = 1U << 0;
inline constexpr std::uint64_t kPhysical = 1U << 1;
/// The EL2 timers of a vCPU with EL2 (CNTHV, CNTHP), on a backend whose
/// timer lines the VMM's interrupt controller takes (the emulated one).
inline constexpr std::uint64_t kHypVirtual = 1U << 2;
inline constexpr std::uint64_t kHypPhysical = 1U << 3;
}  // namespace timer_line
/// Gets a vCPU's timer line levels (timer_line bits) on that vCPU's thread,
/// at least whenever they changed, and always before an MMIO access that
/// follows the change is answered (so that an interrupt controller never
/// acknowledges a timer interrupt the guest already lowered). A Run made
/// while RequestExit is set reports nothing.
using TimerLineHandler = std::function<void(unsigned vcpu, std::uint64_t levels)>;

/// Why Run returned.
enum class ExitKind : std::uint8_t {
  kMmio,         ///< an access the MMIO handler answered
  kInterrupted,  ///< a kick or an exit request (on KVM also a timer line change)
  kShutdown,     ///< PSCI SYSTEM_OFF
  kReset,        ///< PSCI SYSTEM_RESET
  kOther,        ///< anything else: `detail` says what (the VMM stops)
};

/// A returned Run.
struct Exit {
  ExitKind kind = ExitKind::kOther;
  std::string detail;
};

/// How many writes carrying guest time a call made, by kind (--stats).
struct OffsetWrites {
  unsigned vm_offset_ioctls = 0;
  unsigned counter_value_writes = 0;
};

/// The power state of a vCPU as snapshots keep it (KVM's mp_state values).
namespace power {
inline constexpr std::uint32_t kRunnable = 0;
inline constexpr std::uint32_t kStopped = 5;
inline constexpr std::uint32_t kSuspended = 10;
}  // namespace power

/// A register's id (vtime/backend/registers.h) and its bytes, little endian.
struct RegisterBytes {
  std::uint64_t id = 0;
  std::vector<std::uint8_t> bytes;
};

/// A vCPU. Run, the registers and the timers belong to its own thread (or to
/// any thread while it is not running); Kick and RequestExit to any thread.
class Vcpu {
 public:
  virtual ~Vcpu() = default;
  [[nodiscard]] virtual unsigned index() const = 0;

  /// On the vCPU's thread, before its first Run: whatever a kick needs
  /// there (a signal mask on KVM).
  virtual Result<void> PrepareThread() = 0;
  /// Which thread runs it (from the thread that started it), so that Kick
  /// can reach it.
  virtual void AttachThread(std::thread::native_handle_type thread) = 0;
  /// Runs the guest until an exit. MMIO is answered through the VM's
  /// handler on this thread before Run returns.
  virtual Result<Exit> Run() = 0;
  /// While set, Run completes what is pending (an MMIO read) and returns
  /// kInterrupted without running the guest any further.
  virtual void RequestExit(bool on) = 0;
  /// Makes a Run in progress return soon (kInterrupted); a Run that starts
  /// after a kick it has not yet seen returns at once.
  virtual void Kick() = 0;

  /// A register by its vtime id (64-bit ones).
  virtual Result<std::uint64_t> GetRegister(std::uint64_t id) = 0;
  virtual Result<void> SetRegister(std::uint64_t id, std::uint64_t value) = 0;
  /// Every register a snapshot keeps but the time registers
  /// (regs::IsTimeRegister); with `counter_values`, CNTVCT and CNTPCT by
  /// value as well (the comparison method).
  virtual Result<std::vector<RegisterBytes>> SaveRegisters(bool counter_values) = 0;
  /// Writes one saved register back.
  virtual Result<void> RestoreRegister(const RegisterBytes& reg) = 0;
  /// The power state (namespace power).
  virtual Result<std::uint32_t> GetPowerState() = 0;
  virtual Result<void> SetPowerState(std::uint32_t state) = 0;

  /// The guest-visible timers: CTL (no ISTATUS) and CVAL of the EL1 timers
  /// and CNTKCTL_EL1; for a vCPU with EL2 the EL2 time registers too.
  virtual Result<state::VcpuTime> CaptureTimers() = 0;
  /// Writes them back (after the offsets); returns how many registers.
  virtual Result<unsigned> RestoreTimers(const state::VcpuTime& time) = 0;
};

/// A VM.
class Vm {
 public:
  virtual ~Vm() = default;

  /// Guest RAM (or any region) at `gpa`, backed by `host` (page aligned);
  /// slot names it for DirtyLog. Called again with the same slot, place and
  /// memory, `dirty_log` starts or stops logging; a slot is never moved or
  /// removed.
  virtual Result<void> MapMemory(std::uint32_t slot, std::uint64_t gpa,
                                 std::span<std::uint8_t> host, bool dirty_log = false) = 0;
  /// The pages of `slot` written since the last call or since logging
  /// started, one bit per 4 KiB page, written over `bitmap` (which must hold
  /// the slot's pages); the log starts again empty.
  virtual Result<void> DirtyLog(std::uint32_t slot, std::span<std::uint64_t> bitmap) = 0;
  /// Who answers MMIO, and who gets the timer lines (user irqchip); both
  /// set before any vCPU runs.
  virtual void SetMmioHandler(MmioHandler handler) = 0;
  virtual void SetTimerLineHandler(TimerLineHandler handler) = 0;
  /// Who answers the GIC's system registers (IrqChipKind::kUserV3 only; a
  /// backend without Capabilities::user_gic_sysregs never calls it).
  virtual void SetSysRegHandler(SysRegHandler handler) = 0;
  /// Creates vCPU `config.index` (in order, 0 first).
  virtual Result<std::unique_ptr<Vcpu>> CreateVcpu(const VcpuConfig& config) = 0;
  /// After every vCPU exists: the backend irqchip is made ready.
  virtual Result<void> FinishVcpus() = 0;

  /// Carries offsets decided by `clock` to the backend and into `clock`:
  /// the VM offset where the clock's host has it (then `virtual_offset` is
  /// the one both counters take), else counter-value writes on vCPU 0. The
  /// clock changes only once the backend took each step.
  virtual Result<OffsetWrites> ApplyOffsets(arch::VmClock& clock, std::uint64_t virtual_offset,
                                            std::uint64_t physical_offset) = 0;

  /// The user irqchip's output to vCPU `vcpu`'s IRQ input. On KVM a change
  /// made from another thread while that vCPU runs can be undone (KVM
  /// rewrites the word holding the line when it loads the vCPU), so vtvmm
  /// sets a line only on its own vCPU's thread outside Run (or before any
  /// vCPU runs); the emulated backend takes it from any thread.
  virtual Result<void> SetIrqLine(unsigned vcpu, bool level) = 0;
  /// The user GICv3's virtual IRQ output to vCPU `vcpu` (its list
  /// registers' signal to a nested guest at EL1; kUserV3 only).
  virtual Result<void> SetVirtualIrqLine(unsigned vcpu, bool level) = 0;
  /// A device's line to the backend irqchip (SPI `intid`, 32 and up).
  virtual Result<void> SetSpiLine(std::uint32_t intid, bool level) = 0;
  /// The backend irqchip's state (empty without one), and its restore (after
  /// the vCPUs' registers).
  virtual Result<std::vector<std::uint8_t>> SaveIrqChip() = 0;
  virtual Result<void> RestoreIrqChip(std::span<const std::uint8_t> bytes) = 0;
};

/// A hypervisor: what it offers, its clock, and its VMs.
class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  /// "kvm", "emu".
  [[nodiscard]] virtual std::string Name() const = 0;
  [[nodiscard]] virtual const Capabilities& Caps() const = 0;
  /// One line per capability, for logs and --probe.
  [[nodiscard]] virtual std::string Describe() const = 0;
  /// Why `feature` is missing here and what would bring it, in this
  /// backend's terms ("KVM_CAP_ARM_USER_IRQ, which this kernel lacks").
  [[nodiscard]] virtual std::string Explain(Feature feature) const = 0;
  /// The host time the VMs' offsets refer to.
  [[nodiscard]] virtual const HostClock& Clock() const = 0;
  /// Creates a VM (one at a time: a guest reset makes the next).
  virtual Result<std::unique_ptr<Vm>> CreateVm(const VmConfig& config) = 0;
};

}  // namespace vtime::backend
