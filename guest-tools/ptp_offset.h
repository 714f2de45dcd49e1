// Offset of a PTP clock from CLOCK_REALTIME, for vtime-ptp: the pure part.
// The caller runs the ioctls and hands in their timestamps; nothing here
// includes an OS header, so it is unit-tested on made-up samples.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "vtime/result.h"

namespace vtime::guest_tools {

/// A timestamp as the PTP ioctls return it (struct ptp_clock_time's sec and
/// nsec), restated here so that this layer needs no kernel header.
struct ClockStamp {
  std::int64_t sec = 0;
  std::uint32_t nsec = 0;
};

/// The stamp in nanoseconds since the epoch; fails on nsec >= 10^9 or a
/// value outside int64 nanoseconds (about ±292 years).
Result<std::int64_t> ToNanoseconds(ClockStamp stamp);

/// One PTP_SYS_OFFSET sample: a PTP clock reading between two system
/// (CLOCK_REALTIME) readings, all in nanoseconds.
struct BracketedSample {
  std::int64_t sys_before_ns = 0;
  std::int64_t ptp_ns = 0;
  std::int64_t sys_after_ns = 0;
};

/// Splits PTP_SYS_OFFSET's interleaved stamps (sys, ptp, sys, ptp, ..., sys:
/// 2n + 1 of them) into n bracketed samples, each sys stamp shared by its
/// two neighbours. Fails on an even count, fewer than 3 stamps, or a bad
/// stamp.
Result<std::vector<BracketedSample>> SamplesFromSysOffset(std::span<const ClockStamp> stamps);

/// An offset measurement: PTP time minus CLOCK_REALTIME, and how far the
/// true offset can be from it.
struct OffsetEstimate {
  std::int64_t offset_ns = 0;
  std::uint64_t uncertainty_ns = 0;
  /// For a bracketed measurement: which sample was used and the width of
  /// its system-time bracket; 0 for a cross-timestamp.
  std::size_t sample_index = 0;
  std::uint64_t bracket_ns = 0;
  /// Samples skipped because their bracket ran backwards (CLOCK_REALTIME
  /// stepped during the sample).
  std::size_t rejected = 0;
};

/// The offset from the sample with the narrowest bracket (the first of
/// equals): PTP time minus the bracket's midpoint. The PTP clock was read
/// somewhere inside the bracket, so the true offset is within half its
/// width; uncertainty_ns is that half width rounded up, so that [offset -
/// uncertainty, offset + uncertainty] covers the whole bracket also for an
/// odd width. Samples whose bracket runs backwards are rejected; fails if
/// none is left, or if the figures overflow.
Result<OffsetEstimate> BestBracketedOffset(std::span<const BracketedSample> samples);

/// The offset from a cross-timestamp (PTP_SYS_OFFSET_PRECISE): the kernel
/// returns the device time and the system time of one and the same instant,
/// so there is no bracket. See kPreciseUncertaintyNs for the uncertainty
/// reported. Fails if the difference overflows.
Result<OffsetEstimate> PreciseOffset(std::int64_t device_ns, std::int64_t sys_realtime_ns);

/// The uncertainty reported for a cross-timestamp. Both of its times are
/// computed from one counter value: the host converts it to its
/// CLOCK_REALTIME, the guest's timekeeping converts the same value (less
/// the VM's counter offset) to the guest's. Each conversion truncates to
/// whole nanoseconds, so their difference is off by less than 1 ns. This
/// does not cover an error in either machine's clock itself, which is what
/// the offset measures.
inline constexpr std::uint64_t kPreciseUncertaintyNs = 1;

}  // namespace vtime::guest_tools
