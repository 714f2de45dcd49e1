// The cases of the kernel's arch_timer_edge_cases selftest, expressed against
// the model: every timer access goes through a trapped-MSR/MRS syndrome and
// the emulation, and the counter is moved the way the selftest moves it
// (legacy counter-value writes). Each case runs for the virtual and for the
// physical EL1 timer.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "vtime/arch/emulate.h"
#include "vtime/arch/esr.h"
#include "vtime/arch/vm_clock.h"

namespace vtime::arch {
namespace {

constexpr std::uint64_t kMs = 1'000'000;  // ticks per ms at the lab's 1 GHz
constexpr std::uint64_t kUs = 1'000;
constexpr std::uint64_t kWait = 10 * kMs;       // the selftest's default wait
constexpr std::uint64_t kLongWait = 100 * kMs;  // its long wait
constexpr std::uint64_t kNoIrqTimeout = 50 * kMs;
constexpr std::uint64_t kCvalMax = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t kDefCnt = kCvalMax / 2;  // 2^63 - 1
constexpr std::int64_t kTvalMax = std::numeric_limits<std::int32_t>::max();
constexpr std::int64_t kTvalMin = std::numeric_limits<std::int32_t>::min();

enum class Kind { kVirtual, kPhysical };

std::string KindName(const testing::TestParamInfo<Kind>& info) {
  return info.param == Kind::kVirtual ? "Virtual" : "Physical";
}

class EdgeCases : public testing::TestWithParam<Kind> {
 protected:
  // Registers of the timer under test, by their EL0 names.
  SysReg Ctl() const { return virt() ? SysReg::CNTV_CTL_EL0 : SysReg::CNTP_CTL_EL0; }
  SysReg Cval() const { return virt() ? SysReg::CNTV_CVAL_EL0 : SysReg::CNTP_CVAL_EL0; }
  SysReg Tval() const { return virt() ? SysReg::CNTV_TVAL_EL0 : SysReg::CNTP_TVAL_EL0; }
  SysReg Counter() const { return virt() ? SysReg::CNTVCT_EL0 : SysReg::CNTPCT_EL0; }
  TimerId Id() const { return virt() ? TimerId::kEl1Virtual : TimerId::kEl1Physical; }
  bool virt() const { return GetParam() == Kind::kVirtual; }

  Emulation Access(SysReg reg, bool read, std::uint64_t value) {
    const auto decoded = DecodeSysRegTrap(EncodeSysRegTrap(EncodingOf(reg), read, 3));
    EXPECT_TRUE(decoded.has_value());
    const EmulationEnv env{&clock_, host_, FrequencyHz{1'000'000'000}};
    return EmulateSysRegAccess(*decoded, value, vcpu_, GuestContext{}, env);
  }
  void Msr(SysReg reg, std::uint64_t value) {
    ASSERT_EQ(Access(reg, false, value).outcome, AccessOutcome::kWritten) << NameOf(reg);
  }
  std::uint64_t Mrs(SysReg reg) {
    const Emulation e = Access(reg, true, 0);
    EXPECT_EQ(e.outcome, AccessOutcome::kRead) << NameOf(reg);
    return e.value;
  }

  // The selftest moves the counter with KVM_SET_ONE_REG on TIMER_CNT or
  // PTIMER_CNT: the legacy offset rule.
  void SetCounter(std::uint64_t value) {
    const auto effect = clock_.WriteCounterValue(
        virt() ? CounterKind::kVirtual : CounterKind::kPhysical, Ticks{value}, host_);
    ASSERT_TRUE(effect.has_value());
    ASSERT_EQ(*effect, CounterWriteEffect::kApplied);
  }
  void Advance(std::uint64_t ticks) { host_.value += ticks; }
  std::uint64_t Count() { return Mrs(Counter()); }

  void EnableCval(std::uint64_t cval) {
    Msr(Cval(), cval);
    Msr(Ctl(), ctl::kEnable);
  }
  void EnableTval(std::int64_t tval) {
    Msr(Tval(), static_cast<std::uint64_t>(tval));
    Msr(Ctl(), ctl::kEnable);
  }
  std::int32_t TvalRead() {
    return static_cast<std::int32_t>(static_cast<std::uint32_t>(Mrs(Tval())));
  }

  // The line, checked the way the selftest's IRQ handler checks it:
  // (counter >= CVAL) == (ISTATUS && ENABLE) whenever the line is up.
  bool Line() {
    const std::uint64_t ctl_value = Mrs(Ctl());
    const bool istatus = (ctl_value & ctl::kIstatus) != 0;
    const bool enable = (ctl_value & ctl::kEnable) != 0;
    const bool imask = (ctl_value & ctl::kImask) != 0;
    const bool condition = Count() >= Mrs(Cval());
    EXPECT_EQ(istatus, condition);
    const bool line = vcpu_.timers[Id()].Output(clock_.CountsFor(host_)[Id()]);
    EXPECT_EQ(line, enable && istatus && !imask);
    return line;
  }
  // True if the line rises anywhere in the next `ticks`, sampled at every
  // deadline the model reports and at the end (the line only rises at a
  // deadline, so that sampling is exact).
  bool RisesWithin(std::uint64_t ticks) {
    const std::uint64_t end = host_.value + ticks;
    const auto deadline = vcpu_.timers.NextDeadline(clock_.CountsFor(host_), vcpu_.active_timers());
    if (deadline && deadline->delta.value <= ticks) return true;
    host_.value = end;
    return Line();
  }

  VmClock clock_{HostTimerFeatures{}};
  VcpuTimerState vcpu_;
  HostCount host_{123'456'789'000};
};

// 1. Basic: CVAL and TVAL with the counter at DEF_CNT.
TEST_P(EdgeCases, BasicCvalFiresExactlyAtDeadline) {
  SetCounter(kDefCnt);
  EnableCval(kDefCnt + kWait);
  EXPECT_FALSE(Line());
  Advance(kWait - 1);
  EXPECT_FALSE(Line());
  Advance(1);
  EXPECT_TRUE(Line());
}

TEST_P(EdgeCases, BasicTvalFiresAfterWait) {
  SetCounter(kDefCnt);
  EnableTval(static_cast<std::int64_t>(kWait));
  EXPECT_EQ(Mrs(Cval()), kDefCnt + kWait);
  EXPECT_FALSE(RisesWithin(kWait - 1));
  Advance(1);
  EXPECT_TRUE(Line());
}

// 2. Sanity checks, no IRQs.
TEST_P(EdgeCases, CvalInThePastReadsNegativeTval) {
  SetCounter(kDefCnt);
  Msr(Cval(), kDefCnt - kWait);
  EXPECT_EQ(TvalRead(), -static_cast<std::int64_t>(kWait));
}

TEST_P(EdgeCases, TvalMinusOneGivesCvalBelowCounter) {
  SetCounter(kDefCnt);
  Msr(Tval(), static_cast<std::uint64_t>(-1));
  EXPECT_LT(Mrs(Cval()), Count());
  EXPECT_EQ(Mrs(Cval()), kDefCnt - 1);
}

TEST_P(EdgeCases, CvalBeyondTvalMaxReadsWrappedTval) {
  SetCounter(kDefCnt);
  Msr(Cval(), Count() + kTvalMax + kWait);
  // The 32-bit view wraps: TVAL_MAX + wait is negative as an int32.
  EXPECT_LE(TvalRead(), 0);
  EXPECT_EQ(TvalRead(), static_cast<std::int32_t>(kTvalMax + static_cast<std::int64_t>(kWait) -
                                                  (std::int64_t{1} << 32)));
}

TEST_P(EdgeCases, CvalTwoTvalMaxAheadReadsFullyWrappedTval) {
  SetCounter(kDefCnt);
  Msr(Cval(), Count() + 2 * kTvalMax + kWait);
  EXPECT_LE(TvalRead(), static_cast<std::int64_t>(kWait));
  // 2 * (2^31 - 1) + wait is 2^32 + wait - 2: the low 32 bits are wait - 2.
  EXPECT_EQ(TvalRead(), static_cast<std::int32_t>(kWait - 2));
}

TEST_P(EdgeCases, NegativeTvalNearZeroWrapsCvalBelowZero) {
  SetCounter(1 * kMs);
  Msr(Tval(), static_cast<std::uint64_t>(-static_cast<std::int64_t>(kWait)));
  EXPECT_GE(Mrs(Cval()), kCvalMax - kWait);
  EXPECT_EQ(Mrs(Cval()), 1 * kMs - kWait);  // modulo 2^64
}

TEST_P(EdgeCases, TvalZeroKeepsCountingDown) {
  SetCounter(kDefCnt);
  Msr(Tval(), 0);
  EXPECT_EQ(TvalRead(), 0);
  Advance(1 * kUs);
  EXPECT_LT(TvalRead(), 0);
  EXPECT_EQ(TvalRead(), -static_cast<std::int64_t>(kUs));
}

// 3. CVAL above the TVAL range: not truncated to TVAL width.
TEST_P(EdgeCases, CvalAboveTvalMaxDoesNotFireEarly) {
  SetCounter(kDefCnt);
  EnableCval(Count() + kTvalMax + kWait);
  EXPECT_FALSE(RisesWithin(kWait + kNoIrqTimeout));
  // It fires exactly when the 64-bit comparison says so.
  Advance(static_cast<std::uint64_t>(kTvalMax) - kNoIrqTimeout - 1);
  EXPECT_FALSE(Line());
  Advance(1);
  EXPECT_TRUE(Line());
}

TEST_P(EdgeCases, CvalAboveTvalMaxFiresWhenCounterMovedNearIt) {
  SetCounter(0);
  EnableCval(static_cast<std::uint64_t>(kTvalMax) + kWait / 2);
  EXPECT_FALSE(Line());
  SetCounter(static_cast<std::uint64_t>(kTvalMax));
  EXPECT_FALSE(Line());
  EXPECT_TRUE(RisesWithin(kWait));
}

// 4. Timers in the past fire at once.
TEST_P(EdgeCases, TimersInThePastFireImmediately) {
  SetCounter(kDefCnt);
  const std::int64_t wait = static_cast<std::int64_t>(kWait);
  for (const std::uint64_t cval : {kDefCnt - kWait, std::uint64_t{0}}) {
    EnableCval(cval);
    EXPECT_TRUE(Line()) << "CVAL " << cval;
    Msr(Ctl(), 0);
    EXPECT_FALSE(Line());
  }
  for (const std::int64_t tval : {-wait, std::int64_t{0}, kTvalMin}) {
    EnableTval(tval);
    EXPECT_TRUE(Line()) << "TVAL " << tval;
    Msr(Ctl(), 0);
  }
}

TEST_P(EdgeCases, NegativeTvalBelowZeroCountWrapsAndDoesNotFire) {
  // With the counter below |TVAL|, count + TVAL wraps to near 2^64.
  SetCounter(kWait / 2);
  EnableTval(-static_cast<std::int64_t>(kWait));
  EXPECT_EQ(Mrs(Cval()), kCvalMax - kWait / 2 + 1);
  EXPECT_FALSE(RisesWithin(kNoIrqTimeout));
  // At the boundary (counter == |TVAL|) CVAL is 0, which is in the past.
  SetCounter(kWait);
  EnableTval(-static_cast<std::int64_t>(kWait));
  EXPECT_EQ(Mrs(Cval()), 0U);
  EXPECT_TRUE(Line());
}

// 5. Moving the counter ahead of the timer.
TEST_P(EdgeCases, CounterMovedPastCvalFires) {
  SetCounter(0);
  EnableCval(kDefCnt);
  EXPECT_FALSE(Line());
  SetCounter(kDefCnt + 1);
  EXPECT_TRUE(Line());
}

TEST_P(EdgeCases, CounterWrapAtMaxFires) {
  SetCounter(kCvalMax);
  EnableCval(1);
  // The comparison is unsigned: CVAL 1 is below CVAL_MAX, so it fires.
  EXPECT_TRUE(Line());
  Advance(1);  // the counter wraps to 0: below CVAL again
  EXPECT_EQ(Count(), 0U);
  EXPECT_FALSE(Line());
  SetCounter(2);
  EXPECT_TRUE(Line());
}

TEST_P(EdgeCases, NegativeTvalsFireWhenCounterMovesForward) {
  SetCounter(kDefCnt);
  EnableTval(-1);
  EXPECT_TRUE(Line());
  Msr(Ctl(), 0);
  SetCounter(kDefCnt - kWait);  // counter behind: CVAL = DEF_CNT - 1 is ahead
  EXPECT_FALSE(Line());
  Msr(Ctl(), ctl::kEnable);
  EXPECT_FALSE(Line());
  SetCounter(kDefCnt + kWait);
  EXPECT_TRUE(Line());
}

TEST_P(EdgeCases, TvalMaxFiresWhenCounterMovedPastIt) {
  SetCounter(0);
  EnableTval(kTvalMax);
  EXPECT_EQ(Mrs(Cval()), static_cast<std::uint64_t>(kTvalMax));
  EXPECT_FALSE(Line());
  SetCounter(static_cast<std::uint64_t>(kTvalMax) + 1);
  EXPECT_TRUE(Line());
}

TEST_P(EdgeCases, CounterAtMaxThenWrapsLineFollowsNeverLatches) {
  SetCounter(0);
  EnableCval(kDefCnt);
  SetCounter(kCvalMax);
  EXPECT_TRUE(Line());  // momentarily past CVAL
  Advance(1);           // wraps to 0: the level must drop
  EXPECT_FALSE(Line());
  EXPECT_FALSE(RisesWithin(kNoIrqTimeout));  // and stay down: levels do not latch
}

// 6. Moving the counter behind the timer drops a pending level.
TEST_P(EdgeCases, CounterMovedBehindCvalDropsLine) {
  SetCounter(kDefCnt);
  EnableCval(kDefCnt - 1);
  EXPECT_TRUE(Line());
  SetCounter(0);
  EXPECT_FALSE(Line());
  EXPECT_FALSE(RisesWithin(kNoIrqTimeout));
}

TEST_P(EdgeCases, CounterMovedBehindTvalMinusOneDropsLine) {
  SetCounter(kDefCnt);
  EnableTval(-1);
  EXPECT_TRUE(Line());
  SetCounter(0);
  EXPECT_FALSE(Line());
}

// 7. Reprogramming.
TEST_P(EdgeCases, ReprogramShorterFiresAtSecondDeadline) {
  SetCounter(kDefCnt);
  EnableTval(2 * static_cast<std::int64_t>(kWait));
  EnableTval(static_cast<std::int64_t>(kWait));
  EXPECT_FALSE(RisesWithin(kWait - 1));
  Advance(1);
  EXPECT_TRUE(Line());
}

TEST_P(EdgeCases, ReprogramLongerDoesNotFireAtFirstDeadline) {
  SetCounter(kDefCnt);
  EnableTval(static_cast<std::int64_t>(kWait));
  EnableTval(2 * static_cast<std::int64_t>(kWait));
  EXPECT_FALSE(RisesWithin(2 * kWait - 1));
  Advance(1);
  EXPECT_TRUE(Line());
}

TEST_P(EdgeCases, ReprogrammingAFiringTimerIntoTheFutureDropsLine) {
  SetCounter(kDefCnt);
  EnableTval(0);
  EXPECT_TRUE(Line());
  Msr(Tval(), kWait);
  EXPECT_FALSE(Line());
  Msr(Cval(), kDefCnt);  // back into the past
  EXPECT_TRUE(Line());
}

// 8. Firing repeatedly.
TEST_P(EdgeCases, TvalZeroFiresEveryTimeItIsReenabled) {
  SetCounter(kDefCnt);
  for (int i = 0; i < 10; ++i) {
    EnableTval(0);
    EXPECT_TRUE(Line()) << "iteration " << i;
    Msr(Ctl(), 0);
    EXPECT_FALSE(Line()) << "iteration " << i;
    Advance(kUs);
  }
}

// 9 and 10. IMASK.
TEST_P(EdgeCases, ImaskThenUnmaskRaisesLine) {
  SetCounter(kDefCnt);
  Msr(Tval(), static_cast<std::uint64_t>(-1));
  Msr(Ctl(), ctl::kEnable | ctl::kImask);
  EXPECT_FALSE(Line());
  EXPECT_NE(Mrs(Ctl()) & ctl::kIstatus, 0U);  // the condition holds, masked
  Msr(Ctl(), ctl::kEnable);
  EXPECT_TRUE(Line());
}

TEST_P(EdgeCases, ImaskHoldsLineDown) {
  SetCounter(kDefCnt);
  Msr(Tval(), static_cast<std::uint64_t>(-1));
  Msr(Ctl(), ctl::kEnable | ctl::kImask);
  EXPECT_FALSE(RisesWithin(kNoIrqTimeout));
  EXPECT_FALSE(vcpu_.timers.NextDeadline(clock_.CountsFor(host_)).has_value());
}

// Long delays, after the iterations.
TEST_P(EdgeCases, LongCvalDelay) {
  SetCounter(kDefCnt);
  EnableCval(Count() + kLongWait);
  EXPECT_FALSE(RisesWithin(kLongWait - 1));
  Advance(1);
  EXPECT_TRUE(Line());
}

TEST_P(EdgeCases, LongTvalDelay) {
  SetCounter(kDefCnt);
  EnableTval(static_cast<std::int64_t>(kLongWait));
  const auto deadline = vcpu_.timers.NextDeadline(clock_.CountsFor(host_));
  ASSERT_TRUE(deadline.has_value());
  EXPECT_EQ(deadline->timer, Id());
  EXPECT_EQ(deadline->delta.value, kLongWait);
}

INSTANTIATE_TEST_SUITE_P(BothTimers, EdgeCases, testing::Values(Kind::kVirtual, Kind::kPhysical),
                         KindName);

}  // namespace
}  // namespace vtime::arch
