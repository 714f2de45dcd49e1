// A kernel's conversion between counter ticks and its trace clock, as Linux
// publishes it in a perf event's mmap page (struct perf_event_mmap_page:
// time_zero, time_mult, time_shift, time_cycles, time_mask, valid while
// cap_user_time_zero is set). On arm64 the `local` and `perf` trace clocks
// are the scheduler clock, which runs off the arch counter, so this turns a
// trace timestamp into the counter value it was taken at and back. Pure.
#pragma once

#include <cstdint>
#include <string>

#include "vtime/result.h"

namespace vtime::trace {

/// The conversion fields of one perf mmap page, read by the clock-sample
/// tool on the machine whose trace it is.
struct PerfClock {
  std::uint64_t time_zero = 0;
  std::uint32_t time_mult = 0;
  std::uint16_t time_shift = 0;
  /// With cap_user_time_short: the counter as the kernel reads it has
  /// log2(time_mask + 1) bits and time_cycles is a recent value of it; both
  /// 0 without.
  std::uint64_t time_cycles = 0;
  std::uint64_t time_mask = 0;

  /// Refuses a page the kernel would not have published this way: no
  /// multiplier, a shift of 64 or more, or a mask that is not 2^k - 1.
  [[nodiscard]] Result<void> Validate() const;

  /// The trace clock (ns) at counter value `ticks`, as the kernel computes
  /// it: ticks split at time_shift so that the product cannot overflow,
  /// the remainder's part rounded down. For a short counter this is the
  /// kernel's formula for every value from time_cycles to time_mask, and
  /// the same line before time_cycles (where the kernel's own wrap
  /// correction assumes a wrap the counter has not made: an arm64 counter
  /// of 56 bits at 62.5 MHz wraps after 36 years).
  [[nodiscard]] std::uint64_t TraceNs(std::uint64_t ticks) const;

  /// The counter value a trace timestamp was taken at: the one tick c with
  /// TraceNs(c) <= ns < TraceNs(c + 1). The clock counts whole ticks, so
  /// that tick is exact when ns is one of the clock's own readings. Refuses
  /// a timestamp before the clock's zero, or past the counter's width.
  [[nodiscard]] Result<std::uint64_t> Ticks(std::uint64_t ns) const;

  [[nodiscard]] bool Short() const { return time_mask != 0; }
  bool operator==(const PerfClock&) const = default;
};

}  // namespace vtime::trace
