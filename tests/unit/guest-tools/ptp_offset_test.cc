#include "ptp_offset.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <vector>

namespace vtime::guest_tools {
namespace {

constexpr std::int64_t kSec = 1'000'000'000;

TEST(ToNanoseconds, CombinesSecondsAndNanoseconds) {
  EXPECT_EQ(ToNanoseconds({5, 7}).value(), 5 * kSec + 7);
  EXPECT_EQ(ToNanoseconds({-1, 999'999'999}).value(), -1);
}

TEST(ToNanoseconds, RefusesBadStamps) {
  auto bad_nsec = ToNanoseconds({0, 1'000'000'000});
  ASSERT_FALSE(bad_nsec);
  EXPECT_EQ(bad_nsec.error().code, ErrorCode::kMalformed);
  auto too_big = ToNanoseconds({std::numeric_limits<std::int64_t>::max() / kSec + 1, 0});
  ASSERT_FALSE(too_big);
  EXPECT_EQ(too_big.error().code, ErrorCode::kOutOfRange);
}

TEST(SamplesFromSysOffset, SharesEachSystemStampBetweenNeighbours) {
  const std::vector<ClockStamp> stamps = {{10, 0}, {20, 5}, {10, 100}, {20, 105}, {10, 300}};
  auto samples = SamplesFromSysOffset(stamps);
  ASSERT_TRUE(samples) << samples.error().Message();
  ASSERT_EQ(samples->size(), 2u);
  EXPECT_EQ((*samples)[0].sys_before_ns, 10 * kSec);
  EXPECT_EQ((*samples)[0].ptp_ns, 20 * kSec + 5);
  EXPECT_EQ((*samples)[0].sys_after_ns, 10 * kSec + 100);
  EXPECT_EQ((*samples)[1].sys_before_ns, 10 * kSec + 100);
  EXPECT_EQ((*samples)[1].ptp_ns, 20 * kSec + 105);
  EXPECT_EQ((*samples)[1].sys_after_ns, 10 * kSec + 300);
}

TEST(SamplesFromSysOffset, RefusesWrongCountsAndBadStamps) {
  EXPECT_FALSE(SamplesFromSysOffset(std::vector<ClockStamp>{}));
  EXPECT_FALSE(SamplesFromSysOffset(std::vector<ClockStamp>{{1, 0}}));
  EXPECT_FALSE(SamplesFromSysOffset(std::vector<ClockStamp>{{1, 0}, {2, 0}}));
  EXPECT_FALSE(SamplesFromSysOffset(std::vector<ClockStamp>{{1, 0}, {2, 0}, {3, 0}, {4, 0}}));
  EXPECT_FALSE(SamplesFromSysOffset(std::vector<ClockStamp>{{1, 0}, {2, 1'000'000'000}, {3, 0}}));
}

TEST(BestBracketedOffset, TakesTheNarrowestBracketAndItsMidpoint) {
  const std::vector<BracketedSample> samples = {
      {1000, 5600, 2000},  // width 1000
      {2000, 5000, 2100},  // width 100: the best; midpoint 2050
      {2100, 6000, 2400},  // width 300
  };
  auto best = BestBracketedOffset(samples);
  ASSERT_TRUE(best) << best.error().Message();
  EXPECT_EQ(best->sample_index, 1u);
  EXPECT_EQ(best->bracket_ns, 100u);
  EXPECT_EQ(best->offset_ns, 5000 - 2050);
  EXPECT_EQ(best->uncertainty_ns, 50u);
  EXPECT_EQ(best->rejected, 0u);
}

TEST(BestBracketedOffset, FirstOfEqualWidthsWins) {
  const std::vector<BracketedSample> samples = {{0, 10, 20}, {20, 40, 40}};
  auto best = BestBracketedOffset(samples);
  ASSERT_TRUE(best);
  EXPECT_EQ(best->sample_index, 0u);
  EXPECT_EQ(best->offset_ns, 0);
}

TEST(BestBracketedOffset, OddWidthRoundsTheBoundUpSoItCoversTheBracket) {
  // Bracket [100, 103]: midpoint taken as 101, bound 2 ([99, 103] ⊇ [100, 103]).
  const std::vector<BracketedSample> samples = {{100, 500, 103}};
  auto best = BestBracketedOffset(samples);
  ASSERT_TRUE(best);
  EXPECT_EQ(best->offset_ns, 399);
  EXPECT_EQ(best->uncertainty_ns, 2u);
  // Whatever the PTP reading's true system time in the bracket, the true
  // offset is within the bound.
  for (std::int64_t sys = 100; sys <= 103; ++sys) {
    const std::int64_t truth = 500 - sys;
    EXPECT_LE(std::abs(truth - best->offset_ns), static_cast<std::int64_t>(best->uncertainty_ns));
  }
}

TEST(BestBracketedOffset, ZeroWidthBracketIsExact) {
  const std::vector<BracketedSample> samples = {{7, 9, 7}};
  auto best = BestBracketedOffset(samples);
  ASSERT_TRUE(best);
  EXPECT_EQ(best->offset_ns, 2);
  EXPECT_EQ(best->uncertainty_ns, 0u);
}

TEST(BestBracketedOffset, NegativeOffsetWhenThePtpClockIsBehind) {
  const std::vector<BracketedSample> samples = {{10 * kSec, 9 * kSec, 10 * kSec + 200}};
  auto best = BestBracketedOffset(samples);
  ASSERT_TRUE(best);
  EXPECT_EQ(best->offset_ns, -kSec - 100);
}

TEST(BestBracketedOffset, RejectsBracketsThatRunBackwards) {
  // The first sample's system time went back (CLOCK_REALTIME was set); its
  // "width" would otherwise look like the narrowest.
  const std::vector<BracketedSample> samples = {{5000, 1, 1000}, {1000, 1600, 1200}};
  auto best = BestBracketedOffset(samples);
  ASSERT_TRUE(best);
  EXPECT_EQ(best->sample_index, 1u);
  EXPECT_EQ(best->rejected, 1u);
  EXPECT_EQ(best->offset_ns, 500);
}

TEST(BestBracketedOffset, FailsWithoutAUsableSample) {
  EXPECT_FALSE(BestBracketedOffset(std::vector<BracketedSample>{}));
  auto all_bad = BestBracketedOffset(std::vector<BracketedSample>{{10, 0, 9}});
  ASSERT_FALSE(all_bad);
  EXPECT_EQ(all_bad.error().code, ErrorCode::kBadState);
}

TEST(BestBracketedOffset, ExtremeValuesDoNotOverflowSilently) {
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  // The widest bracket there is: its midpoint is still computed exactly.
  auto wide = BestBracketedOffset(std::vector<BracketedSample>{{kMin, 0, kMax}});
  ASSERT_TRUE(wide);
  EXPECT_EQ(wide->offset_ns, 1);
  EXPECT_EQ(wide->uncertainty_ns, std::uint64_t{1} << 63);
  auto overflow = BestBracketedOffset(std::vector<BracketedSample>{{kMin, kMax, kMin}});
  ASSERT_FALSE(overflow);
  EXPECT_EQ(overflow.error().code, ErrorCode::kOutOfRange);
}

TEST(PreciseOffset, IsDeviceMinusSystemWithTheFixedBound) {
  auto estimate = PreciseOffset(100 * kSec + 250, 100 * kSec);
  ASSERT_TRUE(estimate);
  EXPECT_EQ(estimate->offset_ns, 250);
  EXPECT_EQ(estimate->uncertainty_ns, kPreciseUncertaintyNs);
  EXPECT_EQ(estimate->bracket_ns, 0u);
  EXPECT_FALSE(PreciseOffset(std::numeric_limits<std::int64_t>::min(), 1));
}

}  // namespace
}  // namespace vtime::guest_tools
