// Step detection for vtime-clockwatch: the pure part (no clock is read here,
// the caller feeds the readings), so that forward steps, backward steps,
// counter wraparound and thresholds are unit-tested on made-up readings.
#pragma once

#include <cstdint>
#include <optional>

namespace vtime::guest_tools {

/// One step between two consecutive readings of a clock, in the clock's own
/// unit (nanoseconds for CLOCK_*, ticks for CNTVCT).
struct Step {
  std::uint64_t before = 0;  ///< The reading before the step.
  std::uint64_t after = 0;   ///< The reading after it.
  /// after - before taken modulo 2^64 as a signed number: a reading that
  /// wrapped past 2^64 - 1 to a small value is a small forward step, and a
  /// negative delta is a backward step.
  std::int64_t delta = 0;
  [[nodiscard]] bool backwards() const { return delta < 0; }
  /// |delta|, exact also for delta = INT64_MIN.
  [[nodiscard]] std::uint64_t magnitude() const;
};

/// What a StepWatch has seen so far.
struct StepStats {
  std::uint64_t samples = 0;         ///< Readings fed, including the first.
  std::uint64_t max_forward = 0;     ///< Largest forward step.
  std::uint64_t backwards = 0;       ///< Number of backward steps.
  std::uint64_t max_backwards = 0;   ///< Largest backward step's magnitude.
  std::uint64_t over_threshold = 0;  ///< Forward steps above the threshold.
};

/// Watches the readings of one clock. A reading is a 64-bit value whose
/// differences are taken modulo 2^64, so CLOCK_* nanoseconds (converted
/// from signed) and the 64-bit arm64 counter both fit; a counter narrower
/// than 64 bits that rolls over at 2^N would show as one backward step.
class StepWatch {
 public:
  /// Forward steps strictly larger than `threshold` (in the clock's unit)
  /// are reported; every backward step is reported whatever its size.
  explicit StepWatch(std::uint64_t threshold) : threshold_(threshold) {}

  /// Feeds the next reading. Returns the step from the previous reading if
  /// it must be logged (backward, or forward above the threshold); nothing
  /// for the first reading and for small forward steps (including 0).
  std::optional<Step> Observe(std::uint64_t reading);

  [[nodiscard]] const StepStats& stats() const { return stats_; }
  [[nodiscard]] std::uint64_t threshold() const { return threshold_; }

 private:
  std::uint64_t threshold_;
  std::optional<std::uint64_t> last_;
  StepStats stats_;
};

/// The threshold in counter ticks for one in microseconds at `freq_hz`:
/// floor(us * freq / 10^6), so that for a whole number of ticks
/// "ticks > result" is exactly "ticks / freq > us / 10^6". Saturates at
/// 2^64 - 1.
std::uint64_t MicrosecondsToTicksFloor(std::uint64_t us, std::uint64_t freq_hz);

/// Ticks at `freq_hz` (non-zero) in nanoseconds, rounded to nearest;
/// saturates at 2^64 - 1.
std::uint64_t TicksToNanoseconds(std::uint64_t ticks, std::uint64_t freq_hz);

}  // namespace vtime::guest_tools
