#include "ptp_offset.h"

#include <string>

namespace vtime::guest_tools {
namespace {

constexpr std::int64_t kNsPerSec = 1'000'000'000;

// |a - b| as unsigned, assuming a >= b (checked by the caller).
std::uint64_t Width(std::int64_t before, std::int64_t after) {
  return static_cast<std::uint64_t>(after) - static_cast<std::uint64_t>(before);
}

}  // namespace

Result<std::int64_t> ToNanoseconds(ClockStamp stamp) {
  if (stamp.nsec >= kNsPerSec) {
    return Fail(ErrorCode::kMalformed,
                "timestamp nsec=" + std::to_string(stamp.nsec) + " is not below 10^9");
  }
  std::int64_t ns = 0;
  if (__builtin_mul_overflow(stamp.sec, kNsPerSec, &ns) ||
      __builtin_add_overflow(ns, std::int64_t{stamp.nsec}, &ns)) {
    return Fail(ErrorCode::kOutOfRange,
                "timestamp sec=" + std::to_string(stamp.sec) + " overflows 64-bit nanoseconds");
  }
  return ns;
}

Result<std::vector<BracketedSample>> SamplesFromSysOffset(std::span<const ClockStamp> stamps) {
  if (stamps.size() < 3 || stamps.size() % 2 == 0) {
    return Fail(ErrorCode::kMalformed,
                "PTP_SYS_OFFSET needs 2n+1 stamps (n >= 1), got " + std::to_string(stamps.size()));
  }
  std::vector<std::int64_t> ns;
  ns.reserve(stamps.size());
  for (const ClockStamp& stamp : stamps) {
    auto value = ToNanoseconds(stamp);
    if (!value) return tl::unexpected(value.error());
    ns.push_back(*value);
  }
  std::vector<BracketedSample> samples;
  for (std::size_t i = 0; i + 2 < ns.size(); i += 2) {
    samples.push_back({ns[i], ns[i + 1], ns[i + 2]});
  }
  return samples;
}

Result<OffsetEstimate> BestBracketedOffset(std::span<const BracketedSample> samples) {
  OffsetEstimate best;
  bool found = false;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const BracketedSample& s = samples[i];
    if (s.sys_after_ns < s.sys_before_ns) {
      ++best.rejected;
      continue;
    }
    const std::uint64_t width = Width(s.sys_before_ns, s.sys_after_ns);
    if (found && width >= best.bracket_ns) continue;
    // before + width / 2 cannot overflow: it lies between before and after.
    const std::int64_t midpoint = s.sys_before_ns + static_cast<std::int64_t>(width / 2);
    std::int64_t offset = 0;
    if (__builtin_sub_overflow(s.ptp_ns, midpoint, &offset)) {
      return Fail(ErrorCode::kOutOfRange,
                  "sample " + std::to_string(i) + ": offset overflows 64-bit nanoseconds");
    }
    best.offset_ns = offset;
    best.bracket_ns = width;
    best.uncertainty_ns = width / 2 + width % 2;
    best.sample_index = i;
    found = true;
  }
  if (!found) {
    return Fail(ErrorCode::kBadState, "no usable sample: all " + std::to_string(samples.size()) +
                                          " system-time brackets ran backwards or none was given");
  }
  return best;
}

Result<OffsetEstimate> PreciseOffset(std::int64_t device_ns, std::int64_t sys_realtime_ns) {
  std::int64_t offset = 0;
  if (__builtin_sub_overflow(device_ns, sys_realtime_ns, &offset)) {
    return Fail(ErrorCode::kOutOfRange, "cross-timestamp offset overflows 64-bit nanoseconds");
  }
  OffsetEstimate estimate;
  estimate.offset_ns = offset;
  estimate.uncertainty_ns = kPreciseUncertaintyNs;
  return estimate;
}

}  // namespace vtime::guest_tools
