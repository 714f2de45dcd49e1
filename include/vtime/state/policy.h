// Migration policies: pure functions from a saved state and the destination's
// capture pair to the offsets the destination applies. The arm64 counterpart
// of the x86 TSC migration algorithm the kernel documents: guest time moves as
// offsets computed from one (host counter, wall clock) pair on each side,
// never from values read "now" per vCPU.
#pragma once

#include <cstdint>
#include <string_view>

#include "vtime/result.h"
#include "vtime/state/saved_state.h"

namespace vtime::state {

enum class Policy : std::uint8_t {
  kFreeze,     ///< The guest resumes at the count it paused at: no time passes for it.
  kWallClock,  ///< The guest's counters advance by the real time elapsed since the pause.
};
std::string_view NameOf(Policy policy);
/// "freeze" or "wallclock" (as on vtvmm's command line); nothing else.
Result<Policy> ParsePolicy(std::string_view name);

/// What the destination applies.
struct ResumePlan {
  /// The one VM offset (KVM_ARM_SET_COUNTER_OFFSET) for both counters. Where
  /// the source's two counters differed (legacy writes), it follows the one
  /// ahead, so that neither goes backwards; the other jumps forward.
  std::uint64_t vm_offset = 0;
  /// Per-counter offsets for a destination that carries them separately
  /// (legacy counter-value writes): each counter resumes exactly.
  std::uint64_t virtual_offset = 0;
  std::uint64_t physical_offset = 0;
  std::uint64_t virtual_count_at_resume = 0;   ///< with virtual_offset
  std::uint64_t physical_count_at_resume = 0;  ///< with physical_offset
  std::uint64_t advanced_ticks = 0;  ///< guest time added for the time away (wallclock)
  bool wall_clock_went_backwards = false;  ///< the destination's clock read before the pause
};

/// Plans the resume of `saved` on a destination that captured `destination`
/// (its host counter and wall clock, read back to back just before resuming)
/// and whose counter runs at `destination_frequency_hz`. Refuses (kUnsupported)
/// a destination whose frequency differs: CNTFRQ cannot be changed for a KVM
/// guest, so its time would run at the wrong rate. Deterministic: the same
/// inputs always give the same plan.
Result<ResumePlan> PlanResume(const SavedState& saved, Policy policy,
                              const CapturePair& destination,
                              std::uint64_t destination_frequency_hz);

}  // namespace vtime::state
