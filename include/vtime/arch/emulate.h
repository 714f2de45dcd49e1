// Emulation of a trapped counter or timer system-register access against the
// pure model: which accesses are allowed, which UNDEF, which belong to the
// guest's own EL1 or EL2, and what a read returns or a write changes.
#pragma once

#include <cstdint>
#include <string_view>

#include "vtime/arch/esr.h"
#include "vtime/arch/timer.h"
#include "vtime/arch/vm_clock.h"
#include "vtime/units.h"

namespace vtime::arch {

/// The exception level an access came from, as the guest sees it.
enum class ExceptionLevel : std::uint8_t { kEl0 = 0, kEl1 = 1, kEl2 = 2 };

/// The guest's state at the trapped instruction.
struct GuestContext {
  ExceptionLevel el = ExceptionLevel::kEl1;
  /// The guest hypervisor's HCR_EL2.E2H, TGE and NV (only for vCPUs with EL2).
  bool e2h = false;
  bool tge = false;
  bool nv = false;
};

/// What the guest's CPU has, as far as timers go.
struct VcpuFeatures {
  bool el2 = false;          ///< Virtual EL2 (nested virtualization): four timers.
  bool ecv = false;          ///< FEAT_ECV: CNTPCTSS/CNTVCTSS, CNTHCTL trap bits.
  bool ecv_cntpoff = false;  ///< FEAT_ECV CNTPOFF_EL2 (KVM hides it from guests).
  friend bool operator==(const VcpuFeatures&, const VcpuFeatures&) = default;
};

/// The architectural timer state of one vCPU (registers only: TVAL, ISTATUS
/// and line levels are derived).
struct VcpuTimerState {
  VcpuFeatures features;
  VcpuTimers timers;
  std::uint64_t cntkctl_el1 = 0;
  // A guest hypervisor's registers; meaningful only with features.el2.
  std::uint64_t cnthctl_el2 = 0;
  Ticks cntvoff_el2{0};
  Ticks cntpoff_el2{0};

  /// The offsets this vCPU's guest hypervisor adds under nested
  /// virtualization (none without EL2; CNTPOFF only when CNTHCTL_EL2.ECV).
  [[nodiscard]] NestedOffsets nested() const;
  /// Timers that exist: 4 with EL2, else 2.
  [[nodiscard]] std::size_t active_timers() const { return features.el2 ? 4 : 2; }
  /// Architectural reset of every timer and control register.
  void Reset();

  friend bool operator==(const VcpuTimerState&, const VcpuTimerState&) = default;
};

/// How a trapped access ends.
enum class AccessOutcome : std::uint8_t {
  kRead,          ///< Put `value` into Xt (unless Xt is XZR) and step over.
  kWritten,       ///< The model took the write; step over.
  kWriteIgnored,  ///< Allowed but has no effect (CNTFRQ_EL0 is the host's); step over.
  kUndefined,     ///< Inject an UNDEF into the guest.
  kTrapToEl1,     ///< EL0 denied by CNTKCTL_EL1: deliver the trap to guest EL1.
  kTrapToEl2,     ///< Belongs to the guest hypervisor: deliver it to virtual EL2.
};

std::string_view NameOf(AccessOutcome outcome);

/// The result of emulating one access.
struct Emulation {
  AccessOutcome outcome = AccessOutcome::kUndefined;
  std::uint64_t value = 0;  ///< For kRead.
};

/// Everything the emulation reads besides the vCPU's own registers.
struct EmulationEnv {
  const VmClock* clock = nullptr;
  HostCount now;
  FrequencyHz cntfrq{1'000'000'000};
};

/// Emulates `access` from a guest in `context` against `vcpu`. For a write,
/// `write_value` is the content of Xt (0 for XZR). Never fails: an access
/// the architecture does not allow becomes kUndefined or a trap to deliver.
Emulation EmulateSysRegAccess(const SysRegAccess& access, std::uint64_t write_value,
                              VcpuTimerState& vcpu, const GuestContext& context,
                              const EmulationEnv& env);

}  // namespace vtime::arch
