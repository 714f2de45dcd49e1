#include "vtime/state/policy.h"

#include <string>

#include "vtime/units.h"

namespace vtime::state {

std::string_view NameOf(Policy policy) {
  switch (policy) {
    case Policy::kFreeze:
      return "freeze";
    case Policy::kWallClock:
      return "wallclock";
  }
  return "unknown";
}

Result<Policy> ParsePolicy(std::string_view name) {
  if (name == "freeze") return Policy::kFreeze;
  if (name == "wallclock") return Policy::kWallClock;
  return Fail(ErrorCode::kInvalidArgument,
              "unknown migration policy '" + std::string(name) + "' (freeze or wallclock)");
}

Result<ResumePlan> PlanResume(const SavedState& saved, Policy policy,
                              const CapturePair& destination,
                              std::uint64_t destination_frequency_hz) {
  if (!FrequencyHz::Valid(saved.counter_frequency_hz)) {
    return Fail(ErrorCode::kInvalidArgument, "saved state has no counter frequency");
  }
  if (destination_frequency_hz != saved.counter_frequency_hz) {
    return Fail(ErrorCode::kUnsupported,
                "the destination's counter runs at " + std::to_string(destination_frequency_hz) +
                    " Hz but the guest's at " + std::to_string(saved.counter_frequency_hz) +
                    " Hz; a KVM guest's CNTFRQ cannot be changed, so its time would run at the "
                    "wrong rate: refusing");
  }
  ResumePlan plan;
  if (policy == Policy::kWallClock) {
    // Elapsed real time between the two capture pairs; the hosts' clocks are
    // assumed synchronised. A destination clock behind the pause would
    // move the guest backwards: it advances by nothing instead.
    const std::int64_t elapsed = destination.wall_clock_ns - saved.pause.wall_clock_ns;
    if (elapsed < 0) {
      plan.wall_clock_went_backwards = true;
    } else {
      plan.advanced_ticks =
          NanosecondsToTicksFloor(Nanoseconds{static_cast<std::uint64_t>(elapsed)},
                                  FrequencyHz{saved.counter_frequency_hz})
              .value;
    }
  }
  const HostCount host{destination.host_counter};
  plan.virtual_count_at_resume = saved.VirtualCountAtPause() + plan.advanced_ticks;
  plan.physical_count_at_resume = saved.PhysicalCountAtPause() + plan.advanced_ticks;
  plan.virtual_offset = OffsetFor(host, Ticks{plan.virtual_count_at_resume}).value;
  plan.physical_offset = OffsetFor(host, Ticks{plan.physical_count_at_resume}).value;
  // One offset for both: follow the counter that is ahead. "Ahead" is the
  // signed modulo-2^64 difference, as two counters of one VM are close.
  const auto lead = static_cast<std::int64_t>(plan.physical_count_at_resume -
                                              plan.virtual_count_at_resume);
  plan.vm_offset = lead > 0 ? plan.physical_offset : plan.virtual_offset;
  return plan;
}

}  // namespace vtime::state
