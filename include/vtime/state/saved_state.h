// The saved form of a VM's guest time (seeds 000, 001, 003): offsets plus one
// (host counter, wall clock) pair captured at pause, never values read "now";
// per-vCPU timer registers (CTL and CVAL only: TVAL and ISTATUS are derived
// and never saved), nested-virtualization offsets, and PV stolen-time state.
// Restoring the same SavedState twice gives the same guest view.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace vtime::state {

/// The binary format's current version. Decoders accept every version from
/// 1 up to this one.
inline constexpr std::uint32_t kFormatVersion = 1;

/// How the source VMM carried the offsets to its kernel.
enum class OffsetApi : std::uint8_t {
  kNone = 0,                 ///< KVM's own rules (vCPU creation reset the offset)
  kVmOffset = 1,             ///< KVM_ARM_SET_COUNTER_OFFSET
  kLegacyCounterWrites = 2,  ///< CNTVCT/CNTPCT value writes
};
std::string_view NameOf(OffsetApi api);

/// The instant the VM was paused, seen by two clocks read back to back.
struct CapturePair {
  std::uint64_t host_counter = 0;  ///< the host's physical count
  std::int64_t wall_clock_ns = 0;  ///< CLOCK_REALTIME in ns since the epoch
  friend bool operator==(const CapturePair&, const CapturePair&) = default;
};

/// One timer's registers as the guest programmed them.
struct TimerState {
  std::uint64_t ctl = 0;   ///< ENABLE and IMASK only (bits 0 and 1)
  std::uint64_t cval = 0;  ///< absolute, in the count the timer compares against
  friend bool operator==(const TimerState&, const TimerState&) = default;
};

/// PV stolen time of one vCPU (ARM DEN0057A record).
struct PvTimeState {
  bool enabled = false;
  std::uint64_t ipa = 0;        ///< 64-byte aligned record address
  std::uint32_t revision = 0;   ///< record revision the guest was given
  std::uint64_t stolen_ns = 0;  ///< accumulated stolen time at pause
  friend bool operator==(const PvTimeState&, const PvTimeState&) = default;
};

/// The time state of one vCPU.
struct VcpuTime {
  TimerState el1_virtual;
  TimerState el1_physical;
  TimerState el2_virtual;   ///< nested only
  TimerState el2_physical;  ///< nested only
  std::uint64_t cntkctl_el1 = 0;
  bool nested = false;
  std::uint64_t cnthctl_el2 = 0;  ///< the guest hypervisor's, nested only
  std::uint64_t cntvoff_el2 = 0;  ///< the guest hypervisor's, nested only
  PvTimeState pvtime;
  friend bool operator==(const VcpuTime&, const VcpuTime&) = default;
};

/// A whole VM's guest time.
struct SavedState {
  std::uint32_t format_version = kFormatVersion;
  std::uint64_t counter_frequency_hz = 0;
  OffsetApi offset_api = OffsetApi::kNone;
  std::uint64_t virtual_offset = 0;   ///< guest virtual = host - this
  std::uint64_t physical_offset = 0;  ///< guest physical = host - this
  CapturePair pause;
  std::vector<VcpuTime> vcpus;

  /// The guest's virtual and physical counts at the pause.
  [[nodiscard]] std::uint64_t VirtualCountAtPause() const {
    return pause.host_counter - virtual_offset;
  }
  [[nodiscard]] std::uint64_t PhysicalCountAtPause() const {
    return pause.host_counter - physical_offset;
  }
  friend bool operator==(const SavedState&, const SavedState&) = default;
};

}  // namespace vtime::state
