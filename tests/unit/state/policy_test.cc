#include "vtime/state/policy.h"

#include <gtest/gtest.h>

namespace vtime::state {
namespace {

constexpr std::uint64_t kHz = 1'000'000'000;

SavedState Paused(std::uint64_t host, std::uint64_t voffset, std::uint64_t poffset,
                  std::int64_t wall) {
  SavedState s;
  s.counter_frequency_hz = kHz;
  s.offset_api = OffsetApi::kVmOffset;
  s.virtual_offset = voffset;
  s.physical_offset = poffset;
  s.pause = CapturePair{host, wall};
  return s;
}

TEST(Policy, FreezeResumesAtThePausedCount) {
  const SavedState s = Paused(5'000'000'000, 1'000, 1'000, 100);
  // The destination booted later: its counter is far behind the source's.
  auto plan = PlanResume(s, Policy::kFreeze, CapturePair{2'000'000, 999'999}, kHz);
  ASSERT_TRUE(plan.has_value()) << plan.error().Message();
  EXPECT_EQ(plan->virtual_count_at_resume, s.VirtualCountAtPause());
  EXPECT_EQ(2'000'000 - plan->vm_offset, s.VirtualCountAtPause());
  EXPECT_EQ(plan->advanced_ticks, 0U);
}

TEST(Policy, WallClockAdvancesByTheElapsedRealTime) {
  const SavedState s = Paused(5'000'000'000, 1'000, 1'000, 1'000'000'000);
  auto plan = PlanResume(s, Policy::kWallClock, CapturePair{7'000, 1'250'000'000}, kHz);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->advanced_ticks, 250'000'000U);
  EXPECT_EQ(7'000 - plan->vm_offset, s.VirtualCountAtPause() + 250'000'000);
}

TEST(Policy, WallClockConvertsAtTheCounterFrequency) {
  SavedState s = Paused(1'000'000, 0, 0, 0);
  s.counter_frequency_hz = 24'000'000;
  auto plan = PlanResume(s, Policy::kWallClock, CapturePair{0, 1'000'000'000}, 24'000'000);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->advanced_ticks, 24'000'000U);
}

TEST(Policy, WallClockBehindThePauseNeverMovesTheGuestBackwards) {
  const SavedState s = Paused(5'000, 0, 0, 2'000'000'000);
  auto plan = PlanResume(s, Policy::kWallClock, CapturePair{9'000, 1'000'000'000}, kHz);
  ASSERT_TRUE(plan.has_value());
  EXPECT_TRUE(plan->wall_clock_went_backwards);
  EXPECT_EQ(plan->advanced_ticks, 0U);
  EXPECT_EQ(plan->virtual_count_at_resume, s.VirtualCountAtPause());
}

TEST(Policy, DifferentFrequencyIsRefusedWithBothFigures) {
  const SavedState s = Paused(5'000, 0, 0, 0);
  auto plan = PlanResume(s, Policy::kFreeze, CapturePair{1, 1}, 24'000'000);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(plan.error().context.find("24000000 Hz"), std::string::npos);
  EXPECT_NE(plan.error().context.find("1000000000 Hz"), std::string::npos);
}

TEST(Policy, SingleOffsetFollowsTheCounterAheadSoNeitherGoesBackwards) {
  // Legacy writes left the physical counter 500 ticks ahead of the virtual.
  const SavedState s = Paused(10'000, 2'000, 1'500, 0);
  auto plan = PlanResume(s, Policy::kFreeze, CapturePair{50'000, 0}, kHz);
  ASSERT_TRUE(plan.has_value());
  const std::uint64_t v = 50'000 - plan->vm_offset;
  EXPECT_GE(v, s.VirtualCountAtPause());
  EXPECT_GE(v, s.PhysicalCountAtPause());
  EXPECT_EQ(v, s.PhysicalCountAtPause());
  // Separate offsets restore each counter exactly.
  EXPECT_EQ(50'000 - plan->virtual_offset, s.VirtualCountAtPause());
  EXPECT_EQ(50'000 - plan->physical_offset, s.PhysicalCountAtPause());
}

TEST(Policy, PlansAreDeterministic) {
  const SavedState s = Paused(123'456'789, 42, 42, 77);
  const CapturePair d{987, 1'000};
  auto a = PlanResume(s, Policy::kWallClock, d, kHz);
  auto b = PlanResume(s, Policy::kWallClock, d, kHz);
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(a->vm_offset, b->vm_offset);
  EXPECT_EQ(a->virtual_count_at_resume, b->virtual_count_at_resume);
}

TEST(Policy, OffsetsWrapModulo2To64) {
  // Guest far ahead of a young destination host: the offset wraps; the count
  // it produces is still exact.
  const SavedState s = Paused(~std::uint64_t{0} - 10, 0, 0, 0);
  auto plan = PlanResume(s, Policy::kFreeze, CapturePair{5, 0}, kHz);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(std::uint64_t{5} - plan->vm_offset, s.VirtualCountAtPause());
}

TEST(Policy, ParsesItsNames) {
  EXPECT_EQ(ParsePolicy("freeze").value(), Policy::kFreeze);
  EXPECT_EQ(ParsePolicy("wallclock").value(), Policy::kWallClock);
  auto bad = ParsePolicy("now");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().context.find("freeze or wallclock"), std::string::npos);
}

}  // namespace
}  // namespace vtime::state
