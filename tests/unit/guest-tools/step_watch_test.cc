#include "step_watch.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace vtime::guest_tools {
namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

TEST(StepWatch, FirstReadingIsNoStep) {
  StepWatch watch(10);
  EXPECT_FALSE(watch.Observe(1'000'000).has_value());
  EXPECT_EQ(watch.stats().samples, 1u);
  EXPECT_EQ(watch.stats().max_forward, 0u);
}

TEST(StepWatch, ForwardStepsUpToTheThresholdAreNotReported) {
  StepWatch watch(100);
  EXPECT_FALSE(watch.Observe(0));
  EXPECT_FALSE(watch.Observe(50));
  EXPECT_FALSE(watch.Observe(150));  // Exactly the threshold: not larger.
  EXPECT_FALSE(watch.Observe(150));  // A zero step (coarse clock).
  EXPECT_EQ(watch.stats().samples, 4u);
  EXPECT_EQ(watch.stats().max_forward, 100u);
  EXPECT_EQ(watch.stats().over_threshold, 0u);
  EXPECT_EQ(watch.stats().backwards, 0u);
}

TEST(StepWatch, ForwardStepAboveTheThresholdIsReported) {
  StepWatch watch(100);
  watch.Observe(1000);
  const auto step = watch.Observe(1101);
  ASSERT_TRUE(step.has_value());
  EXPECT_EQ(step->before, 1000u);
  EXPECT_EQ(step->after, 1101u);
  EXPECT_EQ(step->delta, 101);
  EXPECT_FALSE(step->backwards());
  EXPECT_EQ(watch.stats().over_threshold, 1u);
  EXPECT_EQ(watch.stats().max_forward, 101u);
}

TEST(StepWatch, EveryBackwardStepIsReportedWhateverTheThreshold) {
  StepWatch watch(1'000'000);
  watch.Observe(5000);
  const auto step = watch.Observe(4999);
  ASSERT_TRUE(step.has_value());
  EXPECT_TRUE(step->backwards());
  EXPECT_EQ(step->delta, -1);
  EXPECT_EQ(step->magnitude(), 1u);
  watch.Observe(3000);
  EXPECT_EQ(watch.stats().backwards, 2u);
  EXPECT_EQ(watch.stats().max_backwards, 1999u);
  // A backward step is not a forward one.
  EXPECT_EQ(watch.stats().max_forward, 0u);
  EXPECT_EQ(watch.stats().over_threshold, 0u);
}

TEST(StepWatch, StepsAreMeasuredFromThePreviousReadingNotTheLargest) {
  StepWatch watch(100);
  watch.Observe(1000);
  watch.Observe(500);                // Back by 500.
  EXPECT_FALSE(watch.Observe(550));  // Forward by 50 from 500: small.
  EXPECT_EQ(watch.stats().backwards, 1u);
}

TEST(StepWatch, CounterWrappingPast2To64IsASmallForwardStep) {
  StepWatch watch(100);
  watch.Observe(kMax - 9);
  EXPECT_FALSE(watch.Observe(5));  // 2^64 - 10 + 15 = 5 modulo 2^64.
  EXPECT_EQ(watch.stats().max_forward, 15u);
  EXPECT_EQ(watch.stats().backwards, 0u);
  const auto big = watch.Observe(5 + 1000);
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->delta, 1000);
}

TEST(StepWatch, GoingBackAcrossTheWrapIsABackwardStep) {
  StepWatch watch(100);
  watch.Observe(3);
  const auto step = watch.Observe(kMax);  // 3 -> 2^64 - 1: back by 4.
  ASSERT_TRUE(step.has_value());
  EXPECT_TRUE(step->backwards());
  EXPECT_EQ(step->magnitude(), 4u);
}

TEST(StepWatch, SignedNanosecondsBelowZeroWork) {
  // CLOCK_REALTIME set before 1970 reads negative; its bits are fed as is.
  StepWatch watch(10);
  watch.Observe(static_cast<std::uint64_t>(std::int64_t{-5}));
  EXPECT_FALSE(watch.Observe(static_cast<std::uint64_t>(std::int64_t{3})));
  EXPECT_EQ(watch.stats().max_forward, 8u);
}

TEST(StepWatch, HalfTheRangeCountsAsBackwards) {
  StepWatch watch(0);
  watch.Observe(0);
  const auto step = watch.Observe(std::uint64_t{1} << 63);
  ASSERT_TRUE(step.has_value());
  EXPECT_TRUE(step->backwards());
  EXPECT_EQ(step->delta, std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(step->magnitude(), std::uint64_t{1} << 63);
}

TEST(StepWatch, ZeroThresholdReportsEveryNonZeroStep) {
  StepWatch watch(0);
  watch.Observe(10);
  EXPECT_FALSE(watch.Observe(10));
  EXPECT_TRUE(watch.Observe(11).has_value());
}

TEST(Conversions, ThresholdInTicksIsExactForWholeTicks) {
  EXPECT_EQ(MicrosecondsToTicksFloor(1000, 1'000'000'000), 1'000'000u);  // 1 GHz: 1 ms.
  EXPECT_EQ(MicrosecondsToTicksFloor(1000, 62'500'000), 62'500u);        // 62.5 MHz.
  // 1 us at 24 MHz is 24 ticks; 1 us at 19.2 MHz is 19.2 ticks: a 19-tick
  // step is below 1 us, a 20-tick one above, so the threshold is 19.
  EXPECT_EQ(MicrosecondsToTicksFloor(1, 24'000'000), 24u);
  EXPECT_EQ(MicrosecondsToTicksFloor(1, 19'200'000), 19u);
  EXPECT_EQ(MicrosecondsToTicksFloor(0, 1'000'000'000), 0u);
  EXPECT_EQ(MicrosecondsToTicksFloor(kMax, kMax), kMax);  // Saturates.
}

TEST(Conversions, TicksToNanosecondsRoundsToNearest) {
  EXPECT_EQ(TicksToNanoseconds(1'000'000, 1'000'000'000), 1'000'000u);
  EXPECT_EQ(TicksToNanoseconds(1, 24'000'000), 42u);   // 41.67 ns.
  EXPECT_EQ(TicksToNanoseconds(3, 24'000'000), 125u);  // 125 ns exactly.
  EXPECT_EQ(TicksToNanoseconds(kMax, 1), kMax);        // Saturates.
}

}  // namespace
}  // namespace vtime::guest_tools
