#include "vtime/arch/timer.h"

namespace vtime::arch {

void Timer::WriteTval(Ticks count, std::uint64_t value) {
  // TVAL is a signed 32-bit down-counter view of CVAL: only bits [31:0] of
  // the written value matter, sign-extended to 64 bits.
  const auto low = static_cast<std::int32_t>(static_cast<std::uint32_t>(value & 0xffffffffULL));
  cval_ = Ticks{count.value + static_cast<std::uint64_t>(static_cast<std::int64_t>(low))};
}

std::optional<Ticks> Timer::TicksUntilFire(Ticks count) const {
  if (!enabled() || masked()) return std::nullopt;
  // The condition is an unsigned comparison: a CVAL at or below the count
  // fires now; otherwise the line rises when the count reaches CVAL.
  if (cval_ <= count) return Ticks{0};
  return cval_ - count;
}

std::string_view NameOf(TimerId id) {
  switch (id) {
    case TimerId::kEl1Virtual:
      return "EL1 virtual";
    case TimerId::kEl1Physical:
      return "EL1 physical";
    case TimerId::kEl2Virtual:
      return "EL2 virtual";
    case TimerId::kEl2Physical:
      return "EL2 physical";
  }
  return "unknown timer";
}

std::optional<Deadline> VcpuTimers::NextDeadline(const TimerCounts& counts,
                                                 std::size_t active) const {
  std::optional<Deadline> best;
  for (std::size_t i = 0; i < active && i < kTimerCount; ++i) {
    const auto id = static_cast<TimerId>(i);
    const std::optional<Ticks> delta = timers_[i].TicksUntilFire(counts[id]);
    if (delta && (!best || *delta < best->delta)) best = Deadline{id, *delta};
  }
  return best;
}

std::uint32_t VcpuTimers::OutputLines(const TimerCounts& counts) const {
  std::uint32_t lines = 0;
  for (std::size_t i = 0; i < kTimerCount; ++i) {
    if (timers_[i].Output(counts[static_cast<TimerId>(i)])) lines |= 1U << i;
  }
  return lines;
}

}  // namespace vtime::arch
