// The VM-wide counter offsets and the rules that move them (seed 000, and the
// kernel behaviour since Linux 6.4). One class owns them; the KVM and emulated
// backends carry its decisions out instead of re-deriving them.
#pragma once

#include <cstdint>
#include <string_view>

#include "vtime/arch/timer.h"
#include "vtime/result.h"
#include "vtime/units.h"

namespace vtime::arch {

/// What the host can do with the guest's counters.
struct HostTimerFeatures {
  /// The VMM can set one VM-wide offset (KVM_CAP_COUNTER_OFFSET, Linux 6.4+).
  bool vm_offset_api = true;
  /// The physical counter can be offset at all (Linux 6.4+); without it the
  /// guest's physical counter is the host's and CNTPCT writes are refused.
  bool physical_offset = true;
  /// FEAT_ECV with CNTPOFF_EL2 on a VHE host: the physical offset is applied
  /// in hardware. Without it a non-zero physical offset is emulated by
  /// trapping the guest's physical counter and timer accesses.
  bool ecv_cntpoff = false;
};

/// How a non-zero physical offset reaches the guest.
enum class PhysicalOffsetMechanism : std::uint8_t {
  kUnavailable,     ///< The host cannot offset the physical counter.
  kCntpoff,         ///< CNTPOFF_EL2 (FEAT_ECV) in hardware.
  kTrapAndEmulate,  ///< CNTPCT and CNTP_* trap and are emulated.
};

/// Which action last set an offset.
enum class OffsetSource : std::uint8_t {
  kNone,          ///< Nothing yet (VM created, no vCPU).
  kVcpuCreation,  ///< Legacy: creating a vCPU reset it to "now".
  kCounterWrite,  ///< Legacy: a counter-value write (CNTVCT/CNTPCT).
  kVmOffset,      ///< The VMM set the VM offset.
};

/// "vCPU creation" and so on.
std::string_view NameOf(OffsetSource source);
std::string_view NameOf(PhysicalOffsetMechanism mechanism);

/// The two counters a VMM can write by value.
enum class CounterKind : std::uint8_t { kVirtual, kPhysical };

/// What a counter-value write did.
enum class CounterWriteEffect : std::uint8_t {
  kApplied,  ///< Legacy rule: the VM-wide offset moved so the vCPU reads `value`.
  kIgnored,  ///< The VMM set the VM offset: the write succeeds and changes nothing.
};

/// A guest hypervisor's own offsets for one vCPU (nested virtualization).
struct NestedOffsets {
  bool enabled = false;  ///< The vCPU has (virtual) EL2.
  Ticks cntvoff_el2{0};  ///< The guest hypervisor's CNTVOFF_EL2.
  Ticks cntpoff_el2{0};  ///< Its CNTPOFF_EL2, only where it is in force.
};

/// The VM-wide virtual and physical counter offsets.
///
/// Guest virtual count  = host count - virtual offset
/// Guest physical count = host count - physical offset
/// (modulo 2^64). Under nested virtualization the EL1 virtual counter of a
/// vCPU is host count - physical offset - that vCPU's CNTVOFF_EL2, as KVM
/// composes it.
class VmClock {
 public:
  explicit VmClock(HostTimerFeatures features = {}) : features_(features) {}

  [[nodiscard]] const HostTimerFeatures& features() const { return features_; }

  /// A vCPU was created. Until the VMM sets the VM offset, this resets the
  /// VM-wide virtual offset to `now` (the guest's virtual counter restarts
  /// near 0) and the physical offset to 0, for every vCPU of the VM.
  void OnVcpuCreated(HostCount now);

  /// A VMM writes a counter value (CNTVCT or CNTPCT through ONE_REG) at host
  /// time `now`. Before the VM offset is set, this moves the VM-wide offset so
  /// that the vCPU reads `value` at `now` (for a nested vCPU a virtual write
  /// moves the physical offset, which its virtual counter is built on). After,
  /// it is accepted and ignored. A physical write on a host without a
  /// physical offset fails with kUnsupported.
  Result<CounterWriteEffect> WriteCounterValue(CounterKind kind, Ticks value, HostCount now,
                                               bool nested_vcpu = false);

  /// The VMM sets the VM offset: both offsets take `offset` (the physical one
  /// only where the host has a physical offset), and from now on counter-value
  /// writes are ignored and vCPU creation resets nothing. Fails with
  /// kUnsupported where the host has no VM offset API.
  Result<void> SetVmOffset(Ticks offset);

  /// True once SetVmOffset succeeded.
  [[nodiscard]] bool vm_offset_set() const { return vm_offset_set_; }
  [[nodiscard]] Ticks virtual_offset() const { return voffset_; }
  [[nodiscard]] Ticks physical_offset() const { return poffset_; }
  [[nodiscard]] OffsetSource virtual_source() const { return vsource_; }
  [[nodiscard]] OffsetSource physical_source() const { return psource_; }

  /// How the physical offset is applied on this host.
  [[nodiscard]] PhysicalOffsetMechanism physical_mechanism() const;
  /// True when guest CNTPCT and CNTP_* accesses must trap so that the
  /// physical offset can be emulated (no CNTPOFF and a non-zero offset).
  [[nodiscard]] bool PhysicalAccessesTrap() const;

  /// The guest's physical count (CNTPCT_EL0 outside a guest hypervisor's
  /// own CNTPOFF_EL2).
  [[nodiscard]] Ticks PhysicalCount(HostCount now) const { return GuestView(now, poffset_); }
  /// The guest's EL1 virtual count (CNTVCT_EL0 at EL1).
  [[nodiscard]] Ticks VirtualCount(HostCount now, const NestedOffsets& nested = {}) const;
  /// The count each timer of a vCPU compares against.
  [[nodiscard]] TimerCounts CountsFor(HostCount now, const NestedOffsets& nested = {}) const;

 private:
  HostTimerFeatures features_;
  Ticks voffset_{0};
  Ticks poffset_{0};
  OffsetSource vsource_ = OffsetSource::kNone;
  OffsetSource psource_ = OffsetSource::kNone;
  bool vm_offset_set_ = false;
};

}  // namespace vtime::arch
