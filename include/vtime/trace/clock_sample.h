// A machine's clock samples (the file vtime-clocksample writes on a host or
// in a guest): its kernel's counter-to-trace-clock conversion, read from a
// perf event's mmap page, next to direct readings of its counter and its
// CLOCK_MONOTONIC, so that each of its traces can be turned into counter
// ticks (perf_clock.h) and the conversion checked. Pure: text in, values out.
//
// The text, one record per line, fields as name=value (decimal):
//   vtime-clocksample 2               (1: samples without realtime_ns)
//   machine NAME                      (the rest of the line, 1..256 bytes)
//   frequency hz=F                    (CNTFRQ_EL0)
//   perf time_zero=Z time_mult=M time_shift=S time_cycles=C time_mask=K
//   sample before=A monotonic_ns=N realtime_ns=R after=B
//                                     (1 to 100000 of them; A <= B)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vtime/result.h"
#include "vtime/trace/perf_clock.h"

namespace vtime::trace {

/// One direct reading: the counter before and after CLOCK_MONOTONIC and
/// CLOCK_REALTIME (read in that order).
struct ClockSample {
  std::uint64_t counter_before = 0;
  std::uint64_t monotonic_ns = 0;
  std::uint64_t counter_after = 0;
  std::uint64_t realtime_ns = 0;  ///< 0 in a version-1 file
  bool operator==(const ClockSample&) const = default;
};

struct ClockSamples {
  std::string machine;
  std::uint64_t counter_frequency_hz = 0;
  PerfClock perf;
  std::vector<ClockSample> samples;
  /// The samples hold CLOCK_REALTIME too (a version-2 file).
  bool wall_clock = false;
  bool operator==(const ClockSamples&) const = default;

  /// What the samples say of `clock` minus the trace clock: the middle of
  /// the values every sample allows (each read lies between the trace
  /// clock at its two counter readings), and the width of that range.
  /// Refuses samples that allow no common value within `slack_ns` (the
  /// conversion is not this machine's, or the clock stepped between them),
  /// and realtime from a version-1 file.
  struct Offset {
    std::int64_t ns = 0;
    std::uint64_t width_ns = 0;
  };
  enum class Clock { kMonotonic, kRealtime };
  [[nodiscard]] Result<Offset> OffsetOf(Clock clock, std::uint64_t slack_ns = 1000) const;

  /// The file's text.
  [[nodiscard]] std::string Format() const;
  /// Parses and checks it: refuses another version, a missing or repeated
  /// record, an unknown field, a number that does not fit, a conversion the
  /// kernel would not publish, and samples out of order (each line says
  /// which, by its number).
  static Result<ClockSamples> Parse(std::string_view text);
};

/// The most samples a file may hold.
inline constexpr std::size_t kMaxClockSamples = 100'000;

}  // namespace vtime::trace
