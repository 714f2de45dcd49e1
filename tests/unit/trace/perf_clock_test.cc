#include "vtime/trace/perf_clock.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace vtime::trace {
namespace {

__extension__ using U128 = unsigned __int128;

// 62.5 MHz, the lab's counter: 16 ns a tick, exactly.
PerfClock Lab() {
  PerfClock c;
  c.time_zero = 1'000'000;
  c.time_shift = 20;
  c.time_mult = 16u << 20;
  return c;
}

// 24 MHz, a common SoC counter: 41.666... ns a tick, rounded in time_mult.
PerfClock Soc() {
  PerfClock c;
  c.time_zero = 77;
  c.time_shift = 24;
  c.time_mult = static_cast<std::uint32_t>((1'000'000'000ull << 24) / 24'000'000);
  return c;
}

TEST(PerfClock, ConvertsAWholeNumberOfNanosecondsPerTickExactly) {
  const PerfClock c = Lab();
  EXPECT_EQ(c.TraceNs(0), 1'000'000u);
  EXPECT_EQ(c.TraceNs(62'500'000), 1'000'000u + 1'000'000'000u);
  auto t = c.Ticks(1'000'000 + 16 * 12345 + 15);
  ASSERT_TRUE(t.has_value()) << t.error().Message();
  EXPECT_EQ(*t, 12345u);
}

TEST(PerfClock, TicksIsTheTickThatHoldsTheTimestamp) {
  for (const PerfClock& c : {Lab(), Soc()}) {
    for (std::uint64_t tick : {0ull, 1ull, 2ull, 999ull, 123'456'789ull, 1ull << 40, 3ull << 50}) {
      const std::uint64_t at = c.TraceNs(tick);
      const std::uint64_t next = c.TraceNs(tick + 1);
      ASSERT_LT(at, next) << tick;
      auto a = c.Ticks(at);
      auto b = c.Ticks(next - 1);
      ASSERT_TRUE(a.has_value() && b.has_value());
      EXPECT_EQ(*a, tick);
      EXPECT_EQ(*b, tick);
    }
  }
}

TEST(PerfClock, SplitAtTheShiftIsWithinANanosecondOfTheExactProduct) {
  const PerfClock c = Soc();
  for (std::uint64_t tick = 1; tick < (1ull << 55); tick = tick * 3 + 7) {
    const auto exact =
        static_cast<std::uint64_t>((static_cast<U128>(tick) * c.time_mult) >> c.time_shift);
    const std::uint64_t got = c.TraceNs(tick) - c.time_zero;
    EXPECT_LE(got, exact) << tick;
    EXPECT_LE(exact - got, 1u) << tick;
  }
}

TEST(PerfClock, RefusesATimestampBeforeItsZero) {
  auto t = Lab().Ticks(999'999);
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code, ErrorCode::kOutOfRange);
  EXPECT_NE(t.error().context.find("before the perf clock's zero"), std::string::npos);
}

// Linux's sched_clock starts at 0 at boot, after the counter did: its
// time_zero is negative, and the kernel's sum wraps. A guest of the lab
// published time_zero = 18446744064018206144 (-9'691'345'472 ns).
TEST(PerfClock, ANegativeZeroWrapsAsTheKernelsSumDoes) {
  PerfClock c{18446744064018206144ull, 33554432, 21, 0, (1ull << 56) - 1};
  const std::uint64_t tick = 700'000'000;  // 11.2 s of counter, 1.5 s of sched_clock
  const std::uint64_t ns = c.TraceNs(tick);
  EXPECT_EQ(ns, 11'200'000'000ull - 9'691'345'472ull);
  auto back = c.Ticks(ns);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(*back, tick);
  EXPECT_EQ(*c.Ticks(ns + 15), tick);    // the tick that holds it
  EXPECT_EQ(*c.Ticks(0), 605'709'092u);  // sched_clock's zero: 9.69 s of counter
}

TEST(PerfClock, RefusesPagesTheKernelWouldNotPublish) {
  PerfClock c = Lab();
  c.time_mult = 0;
  EXPECT_FALSE(c.Validate().has_value());
  EXPECT_FALSE(c.Ticks(2'000'000).has_value());
  c = Lab();
  c.time_shift = 64;
  EXPECT_FALSE(c.Validate().has_value());
  c = Lab();
  c.time_mask = 0x00ff'0000'0000'0000;
  EXPECT_FALSE(c.Validate().has_value());
  c.time_mask = (1ull << 56) - 1;
  EXPECT_TRUE(c.Validate().has_value());
}

TEST(PerfClock, AShortCounterRefusesATimestampPastItsWidth) {
  PerfClock c = Lab();
  c.time_mask = (1ull << 56) - 1;
  c.time_cycles = 1'000;
  auto in = c.Ticks(c.TraceNs((1ull << 56) - 1));
  ASSERT_TRUE(in.has_value()) << in.error().Message();
  EXPECT_EQ(*in, (1ull << 56) - 1);
  auto out = c.Ticks(c.TraceNs(1ull << 56));
  ASSERT_FALSE(out.has_value());
  EXPECT_NE(out.error().context.find("counter's width"), std::string::npos);
}

}  // namespace
}  // namespace vtime::trace
