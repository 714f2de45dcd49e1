#include "vtime/trace/clock_sample.h"

#include <gtest/gtest.h>

#include <string>

namespace vtime::trace {
namespace {

ClockSamples Sample() {
  ClockSamples s;
  s.machine = "lab host";
  s.counter_frequency_hz = 62'500'000;
  s.perf = PerfClock{1'000'000, 16u << 20, 20, 0, 0};
  s.samples = {ClockSample{100, 5'000, 102}, ClockSample{200, 6'600, 201}};
  return s;
}

TEST(ClockSamples, RoundTripsThroughItsText) {
  const ClockSamples s = Sample();
  const std::string text = s.Format();
  EXPECT_EQ(text.substr(0, 20), "vtime-clocksample 1\n");
  auto back = ClockSamples::Parse(text);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(*back, s);
}

// The message of parsing `text`, which must fail.
std::string Refusal(const std::string& text) {
  auto r = ClockSamples::Parse(text);
  EXPECT_FALSE(r.has_value()) << text;
  return r.has_value() ? "" : r.error().context;
}

TEST(ClockSamples, Version2CarriesTheWallClock) {
  ClockSamples s = Sample();
  s.wall_clock = true;
  s.samples[0].realtime_ns = 1'700'000'000'000'005'000;
  s.samples[1].realtime_ns = 1'700'000'000'000'006'600;
  const std::string text = s.Format();
  EXPECT_EQ(text.substr(0, 20), "vtime-clocksample 2\n");
  EXPECT_NE(text.find("monotonic_ns=5000 realtime_ns=1700000000000005000 after=102"),
            std::string::npos);
  auto back = ClockSamples::Parse(text);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(*back, s);
}

TEST(ClockSamples, OffsetOfAClockIsWhatEverySampleAllows) {
  ClockSamples s = Sample();
  // Trace clock at tick t: 1'000'000 + 16 t. Sample 0 allows
  // [5000 - 1'001'632, 5000 - 1'001'600], sample 1 [6600 - 1'003'216,
  // 6600 - 1'003'200]: together [-996'616, -996'600].
  auto mono = s.OffsetOf(ClockSamples::Clock::kMonotonic);
  ASSERT_TRUE(mono) << mono.error().Message();
  EXPECT_EQ(mono->ns, -996'608);
  EXPECT_EQ(mono->width_ns, 16u);
  EXPECT_FALSE(s.OffsetOf(ClockSamples::Clock::kRealtime));  // a version-1 file
  s.wall_clock = true;
  s.samples[0].realtime_ns = 9'001'005'000;
  s.samples[1].realtime_ns = 9'001'006'600;
  auto wall = s.OffsetOf(ClockSamples::Clock::kRealtime);
  ASSERT_TRUE(wall);
  EXPECT_EQ(wall->ns, 9'001'005'000 - 1'001'608);
  // A wall clock stepped by 1 ms between the samples allows no offset.
  s.samples[1].realtime_ns += 1'000'000;
  auto stepped = s.OffsetOf(ClockSamples::Clock::kRealtime);
  ASSERT_FALSE(stepped);
  EXPECT_NE(stepped.error().context.find("stepped"), std::string::npos);
}

TEST(ClockSamples, RefusesWhatTheToolNeverWrites) {
  const std::string good = Sample().Format();
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = good;
    const auto at = t.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return t.replace(at, from.size(), to);
  };
  EXPECT_NE(Refusal("").find("empty"), std::string::npos);
  EXPECT_NE(Refusal(with("sample 1", "sample 3")).find("line 1"), std::string::npos);
  // A version-2 file's samples carry CLOCK_REALTIME.
  EXPECT_NE(Refusal(with("sample 1", "sample 2")).find("expected realtime_ns="),
            std::string::npos);
  EXPECT_NE(Refusal(with("machine lab host\n", "")).find("must all be there"), std::string::npos);
  EXPECT_NE(Refusal(with("hz=62500000", "hz=0")).find("frequency of 0"), std::string::npos);
  EXPECT_NE(Refusal(with("time_mult=16777216", "time_mult=0")).find("line 4"), std::string::npos);
  EXPECT_NE(Refusal(with("time_shift=20", "time_shift=70000")).find("does not fit"),
            std::string::npos);
  EXPECT_NE(Refusal(with("time_mask=0", "time_mask=6")).find("line 4"), std::string::npos);
  EXPECT_NE(Refusal(with("before=100", "before=103")).find("after is below"), std::string::npos);
  EXPECT_NE(Refusal(with("before=200", "before=101")).find("earlier than"), std::string::npos);
  EXPECT_NE(Refusal(with("monotonic_ns=6600", "monotonic_ns=4000")).find("earlier than"),
            std::string::npos);
  EXPECT_NE(Refusal(with("after=201", "after=18446744073709551616")).find("64-bit"),
            std::string::npos);
  EXPECT_NE(Refusal(with("after=201", "after=201 extra=1")).find("unexpected"), std::string::npos);
  EXPECT_NE(Refusal(with("sample before=200", "smaple before=200")).find("unknown record"),
            std::string::npos);
  EXPECT_NE(Refusal(good + "machine again\n").find("second machine"), std::string::npos);
  ClockSamples none = Sample();
  none.samples.clear();
  EXPECT_NE(Refusal(none.Format()).find("no sample"), std::string::npos);
}

TEST(ClockSamples, RefusesMoreSamplesThanItsLimit) {
  ClockSamples s = Sample();
  s.samples.clear();
  for (std::size_t i = 0; i <= kMaxClockSamples; ++i) s.samples.push_back({i, i, i});
  EXPECT_NE(Refusal(s.Format()).find("more than 100000"), std::string::npos);
}

}  // namespace
}  // namespace vtime::trace
