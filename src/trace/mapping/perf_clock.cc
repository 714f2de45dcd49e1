#include "vtime/trace/perf_clock.h"

#include <cstdint>
#include <string>

#include "vtime/hex.h"

namespace vtime::trace {

namespace {

__extension__ using u128 = unsigned __int128;

// The part of the conversion that grows with the ticks: quotient and
// remainder at time_shift, each multiplied apart (the kernel's way, which
// rounds the remainder's product down).
u128 Scaled(std::uint64_t ticks, std::uint32_t mult, std::uint16_t shift) {
  const std::uint64_t quot = ticks >> shift;
  const std::uint64_t rem = ticks & ((std::uint64_t{1} << shift) - 1);
  return u128{quot} * mult + ((u128{rem} * mult) >> shift);
}

}  // namespace

Result<void> PerfClock::Validate() const {
  if (time_mult == 0) {
    return Fail(ErrorCode::kMalformed, "perf clock: time_mult is 0 (the page had no conversion)");
  }
  if (time_shift >= 64) {
    return Fail(ErrorCode::kMalformed,
                "perf clock: time_shift " + std::to_string(time_shift) + " is 64 or more");
  }
  if (time_mask != 0 && (time_mask & (time_mask + 1)) != 0) {
    return Fail(ErrorCode::kMalformed,
                "perf clock: time_mask " + Hex(time_mask) + " is not 2^k - 1");
  }
  return {};
}

std::uint64_t PerfClock::TraceNs(std::uint64_t ticks) const {
  return time_zero + static_cast<std::uint64_t>(Scaled(ticks, time_mult, time_shift));
}

Result<std::uint64_t> PerfClock::Ticks(std::uint64_t ns) const {
  if (auto v = Validate(); !v) return tl::unexpected(v.error());
  // The kernel's sum wraps modulo 2^64: on a machine whose counter ran
  // before sched_clock's zero (every Linux guest, most hosts) time_zero is
  // "negative", above 2^63. A timestamp more than 2^63 ns behind the zero
  // is taken as one before it.
  const std::uint64_t since_zero = ns - time_zero;
  if (since_zero >= (std::uint64_t{1} << 63)) {
    return Fail(ErrorCode::kOutOfRange,
                "trace timestamp " + std::to_string(ns) + " ns is before the perf clock's zero (" +
                    std::to_string(time_zero) + " ns, " +
                    std::to_string(static_cast<std::int64_t>(time_zero)) + " as a signed value)");
  }
  // Scaled() is within a tick of ticks * mult / 2^shift: start from the
  // exact quotient and step to the tick that holds ns.
  const u128 want = u128{since_zero};
  // A merge asks this for every record: below 2^52 ns (52 days) a double
  // quotient is within a tick and the steps below make it exact, without
  // the 128-bit division.
  u128 guess = 0;
  if (since_zero < (std::uint64_t{1} << 52) && time_shift < 52) {
    guess = static_cast<u128>(static_cast<double>(since_zero) *
                              static_cast<double>(std::uint64_t{1} << time_shift) /
                              static_cast<double>(time_mult));
  } else {
    guess = (want << time_shift) / time_mult;
  }
  if (guess > UINT64_MAX) {
    return Fail(ErrorCode::kOutOfRange,
                "trace timestamp " + std::to_string(ns) + " ns is past any 64-bit counter value");
  }
  std::uint64_t c = static_cast<std::uint64_t>(guess);
  while (c > 0 && Scaled(c, time_mult, time_shift) > want) --c;
  while (c < UINT64_MAX && Scaled(c + 1, time_mult, time_shift) <= want) ++c;
  if (Short() && c > time_mask) {
    return Fail(ErrorCode::kOutOfRange, "trace timestamp " + std::to_string(ns) +
                                            " ns is past the counter's width (mask " +
                                            Hex(time_mask) + ")");
  }
  return c;
}

}  // namespace vtime::trace
