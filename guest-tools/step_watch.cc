#include "step_watch.h"

#include <limits>

namespace vtime::guest_tools {
namespace {

__extension__ using U128 = unsigned __int128;

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

std::uint64_t Saturate(U128 value) {
  return value > kMax ? kMax : static_cast<std::uint64_t>(value);
}

}  // namespace

std::uint64_t Step::magnitude() const {
  // Negating in unsigned arithmetic avoids the overflow of -INT64_MIN.
  const auto bits = static_cast<std::uint64_t>(delta);
  return delta < 0 ? 0 - bits : bits;
}

std::optional<Step> StepWatch::Observe(std::uint64_t reading) {
  ++stats_.samples;
  const std::optional<std::uint64_t> last = last_;
  last_ = reading;
  if (!last) return std::nullopt;
  // Two's-complement reinterpretation: exact modulo 2^64.
  const Step step{*last, reading, static_cast<std::int64_t>(reading - *last)};
  if (step.backwards()) {
    ++stats_.backwards;
    if (step.magnitude() > stats_.max_backwards) stats_.max_backwards = step.magnitude();
    return step;
  }
  if (step.magnitude() > stats_.max_forward) stats_.max_forward = step.magnitude();
  if (step.magnitude() <= threshold_) return std::nullopt;
  ++stats_.over_threshold;
  return step;
}

std::uint64_t MicrosecondsToTicksFloor(std::uint64_t us, std::uint64_t freq_hz) {
  return Saturate(U128{us} * freq_hz / 1'000'000);
}

std::uint64_t TicksToNanoseconds(std::uint64_t ticks, std::uint64_t freq_hz) {
  return Saturate((U128{ticks} * 1'000'000'000 + freq_hz / 2) / freq_hz);
}

}  // namespace vtime::guest_tools
