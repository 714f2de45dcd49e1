#include "vtime/arch/timer.h"

#include <gtest/gtest.h>

namespace vtime::arch {
namespace {

TEST(Timer, ResetIsDisabledAndUnmasked) {
  Timer t;
  t.WriteCtl(ctl::kEnable | ctl::kImask);
  t.WriteCval(Ticks{5});
  t.Reset();
  EXPECT_EQ(t.ctl(), 0U);
  EXPECT_FALSE(t.enabled());
  EXPECT_FALSE(t.masked());
  EXPECT_FALSE(t.Output(Ticks{~std::uint64_t{0}}));
}

TEST(Timer, CtlWriteKeepsOnlyEnableAndImask) {
  Timer t;
  t.WriteCtl(~std::uint64_t{0});
  EXPECT_EQ(t.ctl(), ctl::kEnable | ctl::kImask);
  // ISTATUS cannot be written: it reads as the condition.
  t.WriteCval(Ticks{100});
  EXPECT_EQ(t.ReadCtl(Ticks{99}) & ctl::kIstatus, 0U);
  EXPECT_EQ(t.ReadCtl(Ticks{100}) & ctl::kIstatus, ctl::kIstatus);
}

TEST(Timer, IstatusIsReportedEvenWhenDisabled) {
  Timer t;
  t.WriteCval(Ticks{10});
  EXPECT_TRUE(t.Istatus(Ticks{10}));
  EXPECT_EQ(t.ReadCtl(Ticks{11}), ctl::kIstatus);
  EXPECT_FALSE(t.Output(Ticks{11}));
}

TEST(Timer, OutputIsEnableAndIstatusAndNotImask) {
  for (std::uint64_t c = 0; c < 4; ++c) {
    for (const std::uint64_t count : {9U, 10U, 11U}) {
      Timer t;
      t.WriteCval(Ticks{10});
      t.WriteCtl(c);
      const bool expected = (c & ctl::kEnable) && !(c & ctl::kImask) && count >= 10;
      EXPECT_EQ(t.Output(Ticks{count}), expected) << "ctl " << c << " count " << count;
    }
  }
}

TEST(Timer, TvalWriteSignExtendsLow32Bits) {
  Timer t;
  t.WriteTval(Ticks{1'000}, 0xffffffffULL);  // -1
  EXPECT_EQ(t.cval(), Ticks{999});
  t.WriteTval(Ticks{1'000}, 0x1'0000'0005ULL);  // upper bits ignored: +5
  EXPECT_EQ(t.cval(), Ticks{1'005});
  t.WriteTval(Ticks{0}, 0x8000'0000ULL);  // INT32_MIN wraps below zero
  EXPECT_EQ(t.cval(), Ticks{0xffff'ffff'8000'0000ULL});
}

TEST(Timer, TvalReadIsLow32BitsZeroExtended) {
  Timer t;
  t.WriteCval(Ticks{100});
  EXPECT_EQ(t.ReadTval(Ticks{101}), 0xffffffffULL);
  EXPECT_EQ(t.TvalSigned(Ticks{101}), -1);
  EXPECT_EQ(t.ReadTval(Ticks{90}), 10U);
}

TEST(Timer, CvalIsFull64Bits) {
  Timer t;
  t.WriteCval(Ticks{0x1234'5678'9abc'def0ULL});
  EXPECT_EQ(t.cval(), Ticks{0x1234'5678'9abc'def0ULL});
  t.WriteCtl(ctl::kEnable);
  EXPECT_FALSE(t.Output(Ticks{0x1234'5678'9abc'deefULL}));
  EXPECT_TRUE(t.Output(Ticks{0x1234'5678'9abc'def0ULL}));
}

TEST(Timer, TicksUntilFire) {
  Timer t;
  t.WriteCval(Ticks{1'000});
  EXPECT_FALSE(t.TicksUntilFire(Ticks{0}).has_value());  // disabled
  t.WriteCtl(ctl::kEnable | ctl::kImask);
  EXPECT_FALSE(t.TicksUntilFire(Ticks{0}).has_value());  // masked
  t.WriteCtl(ctl::kEnable);
  EXPECT_EQ(t.TicksUntilFire(Ticks{400}), Ticks{600});
  EXPECT_EQ(t.TicksUntilFire(Ticks{1'000}), Ticks{0});
  EXPECT_EQ(t.TicksUntilFire(Ticks{5'000}), Ticks{0});
}

TEST(VcpuTimers, NextDeadlinePicksTheEarliestEnabledTimer) {
  VcpuTimers timers;
  TimerCounts counts;
  counts.of = {Ticks{100}, Ticks{1'000}, Ticks{0}, Ticks{0}};
  timers[TimerId::kEl1Virtual].WriteCval(Ticks{150});  // 50 ahead
  timers[TimerId::kEl1Virtual].WriteCtl(ctl::kEnable);
  timers[TimerId::kEl1Physical].WriteCval(Ticks{1'020});  // 20 ahead
  timers[TimerId::kEl1Physical].WriteCtl(ctl::kEnable);
  timers[TimerId::kEl2Physical].WriteCval(Ticks{5});  // 5 ahead, but EL2
  timers[TimerId::kEl2Physical].WriteCtl(ctl::kEnable);

  const auto two = timers.NextDeadline(counts, 2);
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->timer, TimerId::kEl1Physical);
  EXPECT_EQ(two->delta, Ticks{20});

  const auto four = timers.NextDeadline(counts);
  ASSERT_TRUE(four.has_value());
  EXPECT_EQ(four->timer, TimerId::kEl2Physical);
  EXPECT_EQ(four->delta, Ticks{5});
}

TEST(VcpuTimers, NextDeadlineIsEmptyWhenNothingCanFire) {
  VcpuTimers timers;
  TimerCounts counts;
  EXPECT_FALSE(timers.NextDeadline(counts).has_value());
  timers[TimerId::kEl1Virtual].WriteCtl(ctl::kEnable | ctl::kImask);
  EXPECT_FALSE(timers.NextDeadline(counts).has_value());
}

TEST(VcpuTimers, OutputLinesHasOneBitPerTimer) {
  VcpuTimers timers;
  TimerCounts counts;
  counts.of = {Ticks{10}, Ticks{10}, Ticks{10}, Ticks{10}};
  timers[TimerId::kEl1Physical].WriteCtl(ctl::kEnable);
  timers[TimerId::kEl2Virtual].WriteCtl(ctl::kEnable);
  timers[TimerId::kEl2Virtual].WriteCval(Ticks{11});  // not yet
  EXPECT_EQ(timers.OutputLines(counts), 1U << 1);
  counts.of[2] = Ticks{11};
  EXPECT_EQ(timers.OutputLines(counts), (1U << 1) | (1U << 2));
}

}  // namespace
}  // namespace vtime::arch
