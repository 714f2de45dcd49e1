// One test per emulation rule. Every access goes through the whole trap path:
// EncodeSysRegTrap -> DecodeSysRegTrap -> EmulateSysRegAccess.
#include "vtime/arch/emulate.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <ostream>

#include "vtime/arch/control.h"
#include "vtime/arch/esr.h"
#include "vtime/arch/sysreg.h"

namespace vtime::arch {

// Failure messages name the outcome instead of printing its byte.
void PrintTo(AccessOutcome outcome, std::ostream* os) { *os << NameOf(outcome); }

namespace {

constexpr HostCount kNow{50'000'000'000};
constexpr std::uint64_t kFreq = 24'000'000;
constexpr Ticks kVmOffset{7'000'000'000};

// What the guest's Xt holds for a write; for a read, Rt is X5.
constexpr std::uint8_t kRt = 5;

// The registers of a vCPU's timer state (not its features), field by field.
bool SameRegisters(const VcpuTimerState& a, const VcpuTimerState& b) {
  return a.timers == b.timers && a.cntkctl_el1 == b.cntkctl_el1 && a.cnthctl_el2 == b.cnthctl_el2 &&
         a.cntvoff_el2 == b.cntvoff_el2 && a.cntpoff_el2 == b.cntpoff_el2;
}

SysRegAccess Trap(SysRegEncoding enc, bool is_read) {
  const std::uint64_t esr = EncodeSysRegTrap(enc, is_read, kRt);
  const Result<SysRegAccess> decoded = DecodeSysRegTrap(esr);
  if (!decoded) {
    ADD_FAILURE() << "decode failed: " << decoded.error().Message();
    return SysRegAccess{};
  }
  return *decoded;
}

SysRegAccess Trap(SysReg reg, bool is_read) {
  const SysRegAccess access = Trap(EncodingOf(reg), is_read);
  EXPECT_EQ(access.reg, reg);
  return access;
}

class EmulateTest : public ::testing::Test {
 protected:
  EmulateTest() { EXPECT_TRUE(clock_.SetVmOffset(kVmOffset).has_value()); }

  Emulation Read(SysReg reg) { return EmulateSysRegAccess(Trap(reg, true), 0, vcpu_, ctx_, Env()); }
  Emulation Write(SysReg reg, std::uint64_t value) {
    return EmulateSysRegAccess(Trap(reg, false), value, vcpu_, ctx_, Env());
  }
  // A read that must succeed; its value.
  std::uint64_t ReadValue(SysReg reg) {
    const Emulation e = Read(reg);
    EXPECT_EQ(e.outcome, AccessOutcome::kRead) << NameOf(reg) << ": " << NameOf(e.outcome);
    return e.value;
  }
  void ExpectWritten(SysReg reg, std::uint64_t value) {
    const Emulation e = Write(reg, value);
    EXPECT_EQ(e.outcome, AccessOutcome::kWritten) << NameOf(reg) << ": " << NameOf(e.outcome);
  }
  void ExpectOutcome(SysReg reg, bool is_read, AccessOutcome outcome) {
    const Emulation e = is_read ? Read(reg) : Write(reg, 0x1234);
    EXPECT_EQ(e.outcome, outcome) << (is_read ? "MRS " : "MSR ") << NameOf(reg) << ": got "
                                  << NameOf(e.outcome) << ", want " << NameOf(outcome);
  }
  void ExpectBoth(SysReg reg, AccessOutcome outcome) {
    ExpectOutcome(reg, true, outcome);
    ExpectOutcome(reg, false, outcome);
  }

  EmulationEnv Env() const { return EmulationEnv{&clock_, now_, FrequencyHz{kFreq}}; }

  // A vCPU with virtual EL2, the guest hypervisor running at EL2.
  void MakeNested(bool e2h) {
    vcpu_.features.el2 = true;
    ctx_ = GuestContext{ExceptionLevel::kEl2, e2h, false, false};
  }
  void At(ExceptionLevel el) { ctx_.el = el; }

  Ticks Guest() const { return GuestView(now_, kVmOffset); }

  VmClock clock_;
  HostCount now_ = kNow;
  VcpuTimerState vcpu_;
  GuestContext ctx_;
};

// ---------------------------------------------------------------------------
// Counters

TEST_F(EmulateTest, CountersReadHostMinusVmOffset) {
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), kNow.value - kVmOffset.value);
  EXPECT_EQ(ReadValue(SysReg::CNTPCT_EL0), kNow.value - kVmOffset.value);
  now_ = HostCount{kNow.value + 123};
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), kNow.value - kVmOffset.value + 123);
}

TEST(Emulate, CountersFollowLegacyOffsets) {
  VmClock clock;
  clock.OnVcpuCreated(HostCount{1'000});
  const HostCount write_time{5'000};
  ASSERT_TRUE(clock.WriteCounterValue(CounterKind::kVirtual, Ticks{77}, write_time).has_value());
  ASSERT_TRUE(clock.WriteCounterValue(CounterKind::kPhysical, Ticks{555}, write_time).has_value());
  VcpuTimerState vcpu;
  const GuestContext ctx;
  const EmulationEnv env{&clock, HostCount{5'100}, FrequencyHz{kFreq}};
  const Emulation v = EmulateSysRegAccess(Trap(SysReg::CNTVCT_EL0, true), 0, vcpu, ctx, env);
  const Emulation p = EmulateSysRegAccess(Trap(SysReg::CNTPCT_EL0, true), 0, vcpu, ctx, env);
  ASSERT_EQ(v.outcome, AccessOutcome::kRead);
  ASSERT_EQ(p.outcome, AccessOutcome::kRead);
  EXPECT_EQ(v.value, 177U);
  EXPECT_EQ(p.value, 655U);
}

TEST_F(EmulateTest, CountersAreReadOnly) {
  const VcpuTimerState before = vcpu_;
  for (const SysReg reg : {SysReg::CNTVCT_EL0, SysReg::CNTPCT_EL0}) {
    ExpectOutcome(reg, false, AccessOutcome::kUndefined);
  }
  vcpu_.features.ecv = true;
  for (const SysReg reg : {SysReg::CNTVCTSS_EL0, SysReg::CNTPCTSS_EL0}) {
    ExpectOutcome(reg, false, AccessOutcome::kUndefined);
  }
  vcpu_.features.ecv = false;
  EXPECT_TRUE(SameRegisters(vcpu_, before));
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), Guest().value);
}

TEST_F(EmulateTest, SelfSynchronisedCountersUndefWithoutEcv) {
  ExpectOutcome(SysReg::CNTPCTSS_EL0, true, AccessOutcome::kUndefined);
  ExpectOutcome(SysReg::CNTVCTSS_EL0, true, AccessOutcome::kUndefined);
  // Even where EL0 could read the ordinary counters.
  vcpu_.cntkctl_el1 = cntkctl::kEl0Pcten | cntkctl::kEl0Vcten;
  At(ExceptionLevel::kEl0);
  ExpectOutcome(SysReg::CNTPCTSS_EL0, true, AccessOutcome::kUndefined);
  ExpectOutcome(SysReg::CNTVCTSS_EL0, true, AccessOutcome::kUndefined);
}

TEST_F(EmulateTest, SelfSynchronisedCountersReadWithEcv) {
  vcpu_.features.ecv = true;
  EXPECT_EQ(ReadValue(SysReg::CNTPCTSS_EL0), Guest().value);
  EXPECT_EQ(ReadValue(SysReg::CNTVCTSS_EL0), Guest().value);
  // They follow the same EL0 rule as CNTPCT / CNTVCT.
  At(ExceptionLevel::kEl0);
  ExpectOutcome(SysReg::CNTVCTSS_EL0, true, AccessOutcome::kTrapToEl1);
  vcpu_.cntkctl_el1 = cntkctl::kEl0Vcten;
  EXPECT_EQ(ReadValue(SysReg::CNTVCTSS_EL0), Guest().value);
  ExpectOutcome(SysReg::CNTPCTSS_EL0, true, AccessOutcome::kTrapToEl1);
}

// ---------------------------------------------------------------------------
// CNTFRQ_EL0

TEST_F(EmulateTest, CntfrqReadReturnsTheHostFrequency) {
  EXPECT_EQ(ReadValue(SysReg::CNTFRQ_EL0), kFreq);
}

TEST_F(EmulateTest, CntfrqWriteFromEl1WithoutEl2IsIgnored) {
  const VcpuTimerState before = vcpu_;
  const Emulation e = Write(SysReg::CNTFRQ_EL0, 1'000);
  EXPECT_EQ(e.outcome, AccessOutcome::kWriteIgnored);
  EXPECT_TRUE(SameRegisters(vcpu_, before));
  EXPECT_EQ(ReadValue(SysReg::CNTFRQ_EL0), kFreq);
}

TEST_F(EmulateTest, CntfrqWriteFromEl0IsUndefined) {
  vcpu_.cntkctl_el1 = cntkctl::kWritable;  // EL0 may read everything
  At(ExceptionLevel::kEl0);
  ExpectOutcome(SysReg::CNTFRQ_EL0, false, AccessOutcome::kUndefined);
  EXPECT_EQ(ReadValue(SysReg::CNTFRQ_EL0), kFreq);
}

TEST_F(EmulateTest, CntfrqWriteFromNestedEl1IsUndefinedAndFromEl2Ignored) {
  MakeNested(true);
  ExpectOutcome(SysReg::CNTFRQ_EL0, false, AccessOutcome::kWriteIgnored);
  At(ExceptionLevel::kEl1);
  ExpectOutcome(SysReg::CNTFRQ_EL0, false, AccessOutcome::kUndefined);
}

// ---------------------------------------------------------------------------
// EL0 access control through CNTKCTL_EL1

constexpr SysReg kEl0Controlled[] = {
    SysReg::CNTPCT_EL0,    SysReg::CNTVCT_EL0,    SysReg::CNTP_TVAL_EL0, SysReg::CNTP_CTL_EL0,
    SysReg::CNTP_CVAL_EL0, SysReg::CNTV_TVAL_EL0, SysReg::CNTV_CTL_EL0,  SysReg::CNTV_CVAL_EL0,
};

enum class Group { kPct, kVct, kPt, kVt };
Group GroupOf(SysReg reg) {
  switch (reg) {
    case SysReg::CNTPCT_EL0:
      return Group::kPct;
    case SysReg::CNTVCT_EL0:
      return Group::kVct;
    case SysReg::CNTP_TVAL_EL0:
    case SysReg::CNTP_CTL_EL0:
    case SysReg::CNTP_CVAL_EL0:
      return Group::kPt;
    default:
      return Group::kVt;
  }
}

class El0AccessTest : public EmulateTest {
 protected:
  // With CNTKCTL_EL1 = `bits`, exactly the registers of `allowed` are
  // accessible at EL0; the others trap to EL1.
  void ExpectOnly(std::uint64_t bits, Group allowed) {
    vcpu_.cntkctl_el1 = bits;
    At(ExceptionLevel::kEl0);
    for (const SysReg reg : kEl0Controlled) {
      const bool is_counter = reg == SysReg::CNTPCT_EL0 || reg == SysReg::CNTVCT_EL0;
      const Emulation r = Read(reg);
      if (GroupOf(reg) == allowed) {
        EXPECT_EQ(r.outcome, AccessOutcome::kRead) << NameOf(reg);
        if (!is_counter) {
          EXPECT_EQ(Write(reg, 0).outcome, AccessOutcome::kWritten) << NameOf(reg);
        }
      } else {
        EXPECT_EQ(r.outcome, AccessOutcome::kTrapToEl1) << NameOf(reg);
        if (!is_counter) {
          EXPECT_EQ(Write(reg, 0).outcome, AccessOutcome::kTrapToEl1) << NameOf(reg);
        }
      }
    }
  }
};

TEST_F(El0AccessTest, El0PctenAllowsOnlyThePhysicalCounter) {
  ExpectOnly(cntkctl::kEl0Pcten, Group::kPct);
}

TEST_F(El0AccessTest, El0VctenAllowsOnlyTheVirtualCounter) {
  ExpectOnly(cntkctl::kEl0Vcten, Group::kVct);
}

TEST_F(El0AccessTest, El0PtenAllowsOnlyThePhysicalTimer) {
  ExpectOnly(cntkctl::kEl0Pten, Group::kPt);
}

TEST_F(El0AccessTest, El0VtenAllowsOnlyTheVirtualTimer) {
  ExpectOnly(cntkctl::kEl0Vten, Group::kVt);
}

TEST_F(El0AccessTest, EventStreamBitsGrantNothing) {
  vcpu_.cntkctl_el1 = cntkctl::kEvnten | cntkctl::kEvntdir | cntkctl::kEvntiMask;
  At(ExceptionLevel::kEl0);
  for (const SysReg reg : kEl0Controlled) {
    ExpectOutcome(reg, true, AccessOutcome::kTrapToEl1);
  }
  ExpectOutcome(SysReg::CNTFRQ_EL0, true, AccessOutcome::kTrapToEl1);
}

TEST_F(EmulateTest, El0CntfrqNeedsEitherCounterEnable) {
  At(ExceptionLevel::kEl0);
  vcpu_.cntkctl_el1 = 0;
  ExpectOutcome(SysReg::CNTFRQ_EL0, true, AccessOutcome::kTrapToEl1);
  vcpu_.cntkctl_el1 = cntkctl::kEl0Pten | cntkctl::kEl0Vten;
  ExpectOutcome(SysReg::CNTFRQ_EL0, true, AccessOutcome::kTrapToEl1);
  vcpu_.cntkctl_el1 = cntkctl::kEl0Pcten;
  EXPECT_EQ(ReadValue(SysReg::CNTFRQ_EL0), kFreq);
  vcpu_.cntkctl_el1 = cntkctl::kEl0Vcten;
  EXPECT_EQ(ReadValue(SysReg::CNTFRQ_EL0), kFreq);
}

TEST_F(EmulateTest, El0CounterReadsReturnTheGuestCount) {
  At(ExceptionLevel::kEl0);
  vcpu_.cntkctl_el1 = cntkctl::kEl0Pcten | cntkctl::kEl0Vcten;
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), Guest().value);
  EXPECT_EQ(ReadValue(SysReg::CNTPCT_EL0), Guest().value);
}

TEST_F(EmulateTest, CntkctlAtEl0IsUndefined) {
  vcpu_.cntkctl_el1 = cntkctl::kWritable;
  At(ExceptionLevel::kEl0);
  ExpectBoth(SysReg::CNTKCTL_EL1, AccessOutcome::kUndefined);
  EXPECT_EQ(vcpu_.cntkctl_el1, cntkctl::kWritable);
}

TEST_F(EmulateTest, CntkctlWriteMasksRes0Bits) {
  ExpectWritten(SysReg::CNTKCTL_EL1, ~std::uint64_t{0});
  EXPECT_EQ(vcpu_.cntkctl_el1, 0x3ffU);
  EXPECT_EQ(ReadValue(SysReg::CNTKCTL_EL1), 0x3ffU);
  // EVNTIS (bit 17) is RES0 without FEAT_ECV.
  ExpectWritten(SysReg::CNTKCTL_EL1, 1U << 17);
  EXPECT_EQ(ReadValue(SysReg::CNTKCTL_EL1), 0U);
}

TEST_F(EmulateTest, CntkctlKeepsEvntisWithEcv) {
  vcpu_.features.ecv = true;
  ExpectWritten(SysReg::CNTKCTL_EL1, ~std::uint64_t{0});
  EXPECT_EQ(ReadValue(SysReg::CNTKCTL_EL1), 0x3ffU | (1U << 17));
}

// ---------------------------------------------------------------------------
// Timer registers

TEST_F(EmulateTest, TvalWriteSetsCvalToCountPlusSignExtendedValue) {
  ExpectWritten(SysReg::CNTV_TVAL_EL0, 0xffff'fffbULL);  // -5
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual].cval().value, Guest().value - 5);
  EXPECT_EQ(ReadValue(SysReg::CNTV_CVAL_EL0), Guest().value - 5);
  // Bits [63:32] of the written value do not matter.
  ExpectWritten(SysReg::CNTP_TVAL_EL0, 0xdead'beef'0000'0100ULL);
  EXPECT_EQ(ReadValue(SysReg::CNTP_CVAL_EL0), Guest().value + 0x100);
  ExpectWritten(SysReg::CNTP_TVAL_EL0, 0x8000'0000ULL);  // INT32_MIN
  EXPECT_EQ(ReadValue(SysReg::CNTP_CVAL_EL0), Guest().value - 0x8000'0000ULL);
}

TEST_F(EmulateTest, TvalReadIsLow32BitsOfCvalMinusCount) {
  ExpectWritten(SysReg::CNTV_CVAL_EL0, Guest().value + 1'000);
  EXPECT_EQ(ReadValue(SysReg::CNTV_TVAL_EL0), 1'000U);
  now_ = HostCount{now_.value + 1'500};
  EXPECT_EQ(ReadValue(SysReg::CNTV_TVAL_EL0), 0xffff'fe0cULL);  // -500, zero-extended
  // A CVAL 2^32 + 7 ahead reads as 7.
  ExpectWritten(SysReg::CNTV_CVAL_EL0, Guest().value + (1ULL << 32) + 7);
  EXPECT_EQ(ReadValue(SysReg::CNTV_TVAL_EL0), 7U);
}

TEST_F(EmulateTest, CtlReadShowsIstatus) {
  ExpectWritten(SysReg::CNTV_CTL_EL0, ctl::kEnable);
  ExpectWritten(SysReg::CNTV_CVAL_EL0, Guest().value + 1);
  EXPECT_EQ(ReadValue(SysReg::CNTV_CTL_EL0), ctl::kEnable);
  ExpectWritten(SysReg::CNTV_CVAL_EL0, Guest().value);
  EXPECT_EQ(ReadValue(SysReg::CNTV_CTL_EL0), ctl::kEnable | ctl::kIstatus);
  now_ = HostCount{now_.value + 10};
  ExpectWritten(SysReg::CNTP_CVAL_EL0, Guest().value - 3);
  EXPECT_EQ(ReadValue(SysReg::CNTP_CTL_EL0), ctl::kIstatus);
}

TEST_F(EmulateTest, IstatusAndRes0CtlBitsAreNotWritable) {
  ExpectWritten(SysReg::CNTV_CVAL_EL0, Guest().value + 100);
  ExpectWritten(SysReg::CNTV_CTL_EL0, ~std::uint64_t{0});
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual].ctl(), ctl::kEnable | ctl::kImask);
  EXPECT_EQ(ReadValue(SysReg::CNTV_CTL_EL0), ctl::kEnable | ctl::kImask);
  ExpectWritten(SysReg::CNTP_CTL_EL0, ctl::kIstatus);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Physical].ctl(), 0U);
}

TEST(Emulate, VirtualAndPhysicalTimersUseTheirOwnCounts) {
  // Legacy offsets: the virtual counter starts at 0, the physical one is
  // the host's, so the two timers see different counts.
  VmClock clock;
  clock.OnVcpuCreated(HostCount{1'000'000});
  VcpuTimerState vcpu;
  const GuestContext ctx;
  const EmulationEnv env{&clock, HostCount{1'000'500}, FrequencyHz{kFreq}};
  EXPECT_EQ(EmulateSysRegAccess(Trap(SysReg::CNTV_TVAL_EL0, false), 10, vcpu, ctx, env).outcome,
            AccessOutcome::kWritten);
  EXPECT_EQ(EmulateSysRegAccess(Trap(SysReg::CNTP_TVAL_EL0, false), 10, vcpu, ctx, env).outcome,
            AccessOutcome::kWritten);
  EXPECT_EQ(vcpu.timers[TimerId::kEl1Virtual].cval(), Ticks{510});
  EXPECT_EQ(vcpu.timers[TimerId::kEl1Physical].cval(), Ticks{1'000'510});
  EXPECT_EQ(vcpu.timers[TimerId::kEl2Virtual], Timer{});
  EXPECT_EQ(vcpu.timers[TimerId::kEl2Physical], Timer{});
}

TEST_F(EmulateTest, CvalWriteIsStoredVerbatimInTheNamedTimer) {
  ExpectWritten(SysReg::CNTV_CVAL_EL0, 0xffff'ffff'ffff'fff0ULL);
  ExpectWritten(SysReg::CNTP_CVAL_EL0, 42);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual].cval().value, 0xffff'ffff'ffff'fff0ULL);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Physical].cval().value, 42U);
  EXPECT_EQ(ReadValue(SysReg::CNTV_CVAL_EL0), 0xffff'ffff'ffff'fff0ULL);
  EXPECT_EQ(ReadValue(SysReg::CNTP_CVAL_EL0), 42U);
}

// ---------------------------------------------------------------------------
// Registers that need EL2, and unknown encodings

constexpr SysReg kEl2Only[] = {
    SysReg::CNTVOFF_EL2,    SysReg::CNTPOFF_EL2,    SysReg::CNTHCTL_EL2,    SysReg::CNTHP_TVAL_EL2,
    SysReg::CNTHP_CTL_EL2,  SysReg::CNTHP_CVAL_EL2, SysReg::CNTHV_TVAL_EL2, SysReg::CNTHV_CTL_EL2,
    SysReg::CNTHV_CVAL_EL2, SysReg::CNTKCTL_EL12,   SysReg::CNTP_TVAL_EL02, SysReg::CNTP_CTL_EL02,
    SysReg::CNTP_CVAL_EL02, SysReg::CNTV_TVAL_EL02, SysReg::CNTV_CTL_EL02,  SysReg::CNTV_CVAL_EL02,
};

TEST_F(EmulateTest, El2RegistersUndefAtEl1WithoutEl2) {
  const VcpuTimerState before = vcpu_;
  for (const SysReg reg : kEl2Only) ExpectBoth(reg, AccessOutcome::kUndefined);
  // Also with every ECV feature and with NV claimed by the context.
  vcpu_.features.ecv = vcpu_.features.ecv_cntpoff = true;
  ctx_.nv = true;
  for (const SysReg reg : kEl2Only) ExpectBoth(reg, AccessOutcome::kUndefined);
  vcpu_.features = before.features;
  EXPECT_TRUE(SameRegisters(vcpu_, before));
}

TEST_F(EmulateTest, El2RegistersUndefAtNestedEl0AndEl1) {
  MakeNested(true);
  vcpu_.features.ecv_cntpoff = true;
  for (const ExceptionLevel el : {ExceptionLevel::kEl0, ExceptionLevel::kEl1}) {
    At(el);
    for (const SysReg reg : kEl2Only) ExpectBoth(reg, AccessOutcome::kUndefined);
  }
}

TEST_F(EmulateTest, UnknownEncodingsAreUndefined) {
  // MIDR_EL1, and CRn = 14 encodings no timer register uses.
  for (const SysRegEncoding enc :
       {SysRegEncoding{3, 0, 0, 0, 0}, SysRegEncoding{3, 3, 14, 0, 3},
        SysRegEncoding{3, 7, 14, 2, 0}, SysRegEncoding{2, 3, 14, 0, 2}}) {
    for (const bool read : {true, false}) {
      const SysRegAccess access = Trap(enc, read);
      EXPECT_FALSE(access.reg.has_value());
      const Emulation e = EmulateSysRegAccess(access, 1, vcpu_, ctx_, Env());
      EXPECT_EQ(e.outcome, AccessOutcome::kUndefined);
    }
  }
  // Also at EL2 of a nested vCPU.
  MakeNested(true);
  EXPECT_EQ(EmulateSysRegAccess(Trap(SysRegEncoding{3, 4, 14, 0, 0}, true), 0, vcpu_, ctx_, Env())
                .outcome,
            AccessOutcome::kUndefined);
}

// ---------------------------------------------------------------------------
// Nested virtualization: the guest hypervisor at EL2

TEST_F(EmulateTest, AtEl2WithE2hCntvNamesReachTheEl2VirtualTimer) {
  MakeNested(true);
  ExpectWritten(SysReg::CNTV_CVAL_EL0, 1'234);
  ExpectWritten(SysReg::CNTV_CTL_EL0, ctl::kEnable);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl2Virtual].cval(), Ticks{1'234});
  EXPECT_TRUE(vcpu_.timers[TimerId::kEl2Virtual].enabled());
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual], Timer{});
  // CNTHV_* names the same timer.
  EXPECT_EQ(ReadValue(SysReg::CNTHV_CVAL_EL2), 1'234U);
}

TEST_F(EmulateTest, AtEl2WithE2hCntpNamesReachTheEl2PhysicalTimer) {
  MakeNested(true);
  ExpectWritten(SysReg::CNTP_CVAL_EL0, 999);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl2Physical].cval(), Ticks{999});
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Physical], Timer{});
  EXPECT_EQ(ReadValue(SysReg::CNTHP_CVAL_EL2), 999U);
}

TEST_F(EmulateTest, AtEl2WithE2hEl02NamesReachTheEl1Timers) {
  MakeNested(true);
  ExpectWritten(SysReg::CNTV_CVAL_EL02, 11);
  ExpectWritten(SysReg::CNTV_CTL_EL02, ctl::kEnable | ctl::kImask);
  ExpectWritten(SysReg::CNTP_CVAL_EL02, 22);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual].cval(), Ticks{11});
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual].ctl(), ctl::kEnable | ctl::kImask);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Physical].cval(), Ticks{22});
  EXPECT_EQ(vcpu_.timers[TimerId::kEl2Virtual], Timer{});
  EXPECT_EQ(vcpu_.timers[TimerId::kEl2Physical], Timer{});
  // The guest's EL1 sees what the hypervisor wrote.
  At(ExceptionLevel::kEl1);
  ctx_.e2h = true;
  vcpu_.cnthctl_el2 = cnthctl::kEl1Pten;
  EXPECT_EQ(ReadValue(SysReg::CNTV_CVAL_EL0), 11U);
  EXPECT_EQ(ReadValue(SysReg::CNTP_CVAL_EL0), 22U);
}

TEST_F(EmulateTest, AtEl2WithoutE2hEl0NamesReachTheEl1TimersAndEl02Undefs) {
  MakeNested(false);
  ExpectWritten(SysReg::CNTV_CVAL_EL0, 5);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual].cval(), Ticks{5});
  EXPECT_EQ(vcpu_.timers[TimerId::kEl2Virtual], Timer{});
  for (const SysReg reg : {SysReg::CNTV_CVAL_EL02, SysReg::CNTP_CTL_EL02, SysReg::CNTKCTL_EL12}) {
    ExpectBoth(reg, AccessOutcome::kUndefined);
  }
}

TEST_F(EmulateTest, CntkctlEl1AtEl2WithE2hReachesCnthctl) {
  MakeNested(true);
  ExpectWritten(SysReg::CNTKCTL_EL1, cnthctl::kEl1Pcten | cntkctl::kEl0Vcten);
  EXPECT_EQ(vcpu_.cnthctl_el2, cnthctl::kEl1Pcten | cntkctl::kEl0Vcten);
  EXPECT_EQ(vcpu_.cntkctl_el1, 0U);
  EXPECT_EQ(ReadValue(SysReg::CNTHCTL_EL2), cnthctl::kEl1Pcten | cntkctl::kEl0Vcten);
  // CNTKCTL_EL12 reaches the guest's CNTKCTL_EL1.
  ExpectWritten(SysReg::CNTKCTL_EL12, cntkctl::kEl0Vten);
  EXPECT_EQ(vcpu_.cntkctl_el1, cntkctl::kEl0Vten);
  EXPECT_EQ(ReadValue(SysReg::CNTKCTL_EL1), cnthctl::kEl1Pcten | cntkctl::kEl0Vcten);
}

TEST_F(EmulateTest, CntkctlEl1AtEl2WithoutE2hIsCntkctl) {
  MakeNested(false);
  ExpectWritten(SysReg::CNTKCTL_EL1, cntkctl::kEl0Pten);
  EXPECT_EQ(vcpu_.cntkctl_el1, cntkctl::kEl0Pten);
  EXPECT_EQ(vcpu_.cnthctl_el2, 0U);
}

TEST_F(EmulateTest, CntvoffComposesWithThePhysicalOffsetAtNestedEl1) {
  MakeNested(true);
  constexpr std::uint64_t kCntvoff = 300'000;
  ExpectWritten(SysReg::CNTVOFF_EL2, kCntvoff);
  EXPECT_EQ(ReadValue(SysReg::CNTVOFF_EL2), kCntvoff);
  At(ExceptionLevel::kEl1);
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), kNow.value - kVmOffset.value - kCntvoff);
  // The EL1 virtual timer compares against the same composed count.
  ExpectWritten(SysReg::CNTV_TVAL_EL0, 50);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual].cval().value,
            kNow.value - kVmOffset.value - kCntvoff + 50);
}

TEST_F(EmulateTest, CntvctAtEl2WithE2hIgnoresCntvoff) {
  MakeNested(true);
  ExpectWritten(SysReg::CNTVOFF_EL2, 300'000);
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), kNow.value - kVmOffset.value);
  EXPECT_EQ(ReadValue(SysReg::CNTPCT_EL0), kNow.value - kVmOffset.value);
}

TEST_F(EmulateTest, CntvctAtEl2WithoutE2hAppliesCntvoff) {
  MakeNested(false);
  ExpectWritten(SysReg::CNTVOFF_EL2, 300'000);
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), kNow.value - kVmOffset.value - 300'000);
}

TEST_F(EmulateTest, NestedEl1CntpctFollowsEl1pctenAtBit10WithE2h) {
  MakeNested(true);
  At(ExceptionLevel::kEl1);
  vcpu_.cnthctl_el2 = 0;
  ExpectOutcome(SysReg::CNTPCT_EL0, true, AccessOutcome::kTrapToEl2);
  // Bit 0 is EL0PCTEN in the E2H layout: it does not let EL1 in.
  vcpu_.cnthctl_el2 = cnthctl::kEl1PctenE2h0;
  ExpectOutcome(SysReg::CNTPCT_EL0, true, AccessOutcome::kTrapToEl2);
  vcpu_.cnthctl_el2 = cnthctl::kEl1Pcten;
  EXPECT_EQ(ReadValue(SysReg::CNTPCT_EL0), Guest().value);
  // The virtual counter is not controlled by it.
  vcpu_.cnthctl_el2 = 0;
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), Guest().value);
}

TEST_F(EmulateTest, NestedEl1CntpctFollowsEl1pctenAtBit0WithoutE2h) {
  MakeNested(false);
  At(ExceptionLevel::kEl1);
  vcpu_.cnthctl_el2 = cnthctl::kEl1Pcten;  // bit 10 means nothing with E2H = 0
  ExpectOutcome(SysReg::CNTPCT_EL0, true, AccessOutcome::kTrapToEl2);
  vcpu_.cnthctl_el2 = cnthctl::kEl1PctenE2h0;
  EXPECT_EQ(ReadValue(SysReg::CNTPCT_EL0), Guest().value);
}

TEST_F(EmulateTest, NestedEl1PhysicalTimerFollowsEl1pten) {
  constexpr SysReg kCntp[] = {SysReg::CNTP_TVAL_EL0, SysReg::CNTP_CTL_EL0, SysReg::CNTP_CVAL_EL0};
  for (const bool e2h : {true, false}) {
    SCOPED_TRACE(e2h ? "E2H=1" : "E2H=0");
    MakeNested(e2h);
    At(ExceptionLevel::kEl1);
    const std::uint64_t pten = e2h ? cnthctl::kEl1Pten : cnthctl::kEl1PcenE2h0;
    const std::uint64_t pcten = e2h ? cnthctl::kEl1Pcten : cnthctl::kEl1PctenE2h0;
    vcpu_.cnthctl_el2 = pcten;  // the counter enable is not the timer enable
    for (const SysReg reg : kCntp) ExpectBoth(reg, AccessOutcome::kTrapToEl2);
    vcpu_.cnthctl_el2 = pten;
    ExpectWritten(SysReg::CNTP_CVAL_EL0, 77);
    EXPECT_EQ(ReadValue(SysReg::CNTP_CVAL_EL0), 77U);
    EXPECT_EQ(vcpu_.timers[TimerId::kEl1Physical].cval(), Ticks{77});
    ExpectOutcome(SysReg::CNTPCT_EL0, true, AccessOutcome::kTrapToEl2);
    // The virtual timer needs neither.
    vcpu_.cnthctl_el2 = 0;
    ExpectWritten(SysReg::CNTV_CVAL_EL0, 88);
    vcpu_.Reset();
  }
}

TEST_F(EmulateTest, EcvEl1tvctTrapsNestedCntvctToEl2) {
  vcpu_.features.ecv = true;
  MakeNested(true);
  ExpectWritten(SysReg::CNTHCTL_EL2, cnthctl::kEl1Tvct | cnthctl::kEl1Pcten);
  EXPECT_EQ(ReadValue(SysReg::CNTHCTL_EL2), cnthctl::kEl1Tvct | cnthctl::kEl1Pcten);
  // Not at EL2 itself.
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), Guest().value);
  At(ExceptionLevel::kEl1);
  ExpectOutcome(SysReg::CNTVCT_EL0, true, AccessOutcome::kTrapToEl2);
  ExpectOutcome(SysReg::CNTVCTSS_EL0, true, AccessOutcome::kTrapToEl2);
  EXPECT_EQ(ReadValue(SysReg::CNTPCT_EL0), Guest().value);
  // The timer is EL1TVT's business, not EL1TVCT's.
  ExpectWritten(SysReg::CNTV_CVAL_EL0, 1);
}

TEST_F(EmulateTest, EcvEl1tvtTrapsNestedVirtualTimerToEl2) {
  vcpu_.features.ecv = true;
  MakeNested(true);
  ExpectWritten(SysReg::CNTHCTL_EL2, cnthctl::kEl1Tvt);
  At(ExceptionLevel::kEl1);
  for (const SysReg reg : {SysReg::CNTV_TVAL_EL0, SysReg::CNTV_CTL_EL0, SysReg::CNTV_CVAL_EL0}) {
    ExpectBoth(reg, AccessOutcome::kTrapToEl2);
  }
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), Guest().value);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual], Timer{});
}

TEST_F(EmulateTest, WithoutEcvCnthctlTrapBitsAreRes0) {
  MakeNested(true);
  ExpectWritten(SysReg::CNTHCTL_EL2, cnthctl::kEl1Tvct | cnthctl::kEl1Tvt | cnthctl::kEl1Pcten);
  EXPECT_EQ(ReadValue(SysReg::CNTHCTL_EL2), cnthctl::kEl1Pcten);
  EXPECT_EQ(vcpu_.cnthctl_el2, cnthctl::kEl1Pcten);
  At(ExceptionLevel::kEl1);
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), Guest().value);
  ExpectWritten(SysReg::CNTV_CVAL_EL0, 3);
  // RES0 means "behaves as 0" even where the bits are set in the state
  // (for example restored from elsewhere).
  vcpu_.cnthctl_el2 = cnthctl::kEl1Tvct | cnthctl::kEl1Tvt | cnthctl::kEl1Pcten;
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), Guest().value);
  ExpectWritten(SysReg::CNTV_CTL_EL0, 0);
}

TEST_F(EmulateTest, CnthctlWriteKeepsOnlyBitsTheFeaturesDefine) {
  MakeNested(true);
  ExpectWritten(SysReg::CNTHCTL_EL2, ~std::uint64_t{0});
  EXPECT_EQ(vcpu_.cnthctl_el2, 0xfffU);
  vcpu_.features.ecv = true;
  ExpectWritten(SysReg::CNTHCTL_EL2, ~std::uint64_t{0});
  // ECV (bit 12) needs CNTPOFF; CNTVMASK/CNTPMASK (FEAT_RME) never.
  EXPECT_EQ(vcpu_.cnthctl_el2, 0xfffU | (0x1fULL << 13));
  vcpu_.features.ecv_cntpoff = true;
  ExpectWritten(SysReg::CNTHCTL_EL2, ~std::uint64_t{0});
  EXPECT_EQ(vcpu_.cnthctl_el2, 0x3ffffU);
}

TEST_F(EmulateTest, NvEl1AccessToEl2RegistersTrapsToEl2) {
  MakeNested(true);
  At(ExceptionLevel::kEl1);
  ctx_.nv = true;
  vcpu_.features.ecv_cntpoff = true;
  const VcpuTimerState before = vcpu_;
  for (const SysReg reg : kEl2Only) ExpectBoth(reg, AccessOutcome::kTrapToEl2);
  EXPECT_TRUE(SameRegisters(vcpu_, before));
  // Without FEAT_ECV CNTPOFF the register does not exist.
  vcpu_.features.ecv_cntpoff = false;
  ExpectBoth(SysReg::CNTPOFF_EL2, AccessOutcome::kUndefined);
}

TEST_F(EmulateTest, NvDoesNotTrapEl1RegistersOrAffectEl0) {
  MakeNested(true);
  At(ExceptionLevel::kEl1);
  ctx_.nv = true;
  ExpectWritten(SysReg::CNTKCTL_EL1, cntkctl::kEl0Vcten);
  EXPECT_EQ(vcpu_.cntkctl_el1, cntkctl::kEl0Vcten);
  At(ExceptionLevel::kEl0);
  ExpectBoth(SysReg::CNTVOFF_EL2, AccessOutcome::kUndefined);
}

TEST_F(EmulateTest, HostEl0IsGovernedByCnthctlEl0Bits) {
  MakeNested(true);
  ctx_ = GuestContext{ExceptionLevel::kEl0, true, true, false};
  vcpu_.cntkctl_el1 = cntkctl::kWritable;  // allows everything, but does not apply
  vcpu_.cntvoff_el2 = Ticks{300'000};
  vcpu_.cnthctl_el2 = 0;
  ExpectOutcome(SysReg::CNTVCT_EL0, true, AccessOutcome::kTrapToEl2);
  ExpectOutcome(SysReg::CNTPCT_EL0, true, AccessOutcome::kTrapToEl2);
  ExpectOutcome(SysReg::CNTFRQ_EL0, true, AccessOutcome::kTrapToEl2);
  ExpectBoth(SysReg::CNTV_CTL_EL0, AccessOutcome::kTrapToEl2);
  ExpectBoth(SysReg::CNTP_CVAL_EL0, AccessOutcome::kTrapToEl2);

  vcpu_.cnthctl_el2 = cntkctl::kEl0Vcten | cntkctl::kEl0Vten;
  // The EL2&0 regime: the virtual offset is 0.
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), Guest().value);
  EXPECT_EQ(ReadValue(SysReg::CNTFRQ_EL0), kFreq);
  ExpectOutcome(SysReg::CNTPCT_EL0, true, AccessOutcome::kTrapToEl2);
  // CNTV_* names reach the EL2 virtual timer.
  ExpectWritten(SysReg::CNTV_CVAL_EL0, 4'444);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl2Virtual].cval(), Ticks{4'444});
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual], Timer{});
}

TEST_F(EmulateTest, HostEl0IgnoresCntkctl) {
  MakeNested(true);
  ctx_ = GuestContext{ExceptionLevel::kEl0, true, true, false};
  vcpu_.cntkctl_el1 = 0;
  vcpu_.cnthctl_el2 = cntkctl::kEl0Pcten | cntkctl::kEl0Pten;
  EXPECT_EQ(ReadValue(SysReg::CNTPCT_EL0), Guest().value);
  ExpectWritten(SysReg::CNTP_CVAL_EL0, 6);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl2Physical].cval(), Ticks{6});
  ExpectOutcome(SysReg::CNTVCT_EL0, true, AccessOutcome::kTrapToEl2);
}

TEST_F(EmulateTest, NestedGuestEl0ChecksCntkctlBeforeCnthctl) {
  // EL0 of the nested guest (E2H = 1, TGE = 0).
  MakeNested(true);
  ctx_ = GuestContext{ExceptionLevel::kEl0, true, false, false};
  vcpu_.cntkctl_el1 = 0;
  vcpu_.cnthctl_el2 = 0;
  ExpectOutcome(SysReg::CNTPCT_EL0, true, AccessOutcome::kTrapToEl1);
  vcpu_.cntkctl_el1 = cntkctl::kEl0Pcten | cntkctl::kEl0Vcten;
  ExpectOutcome(SysReg::CNTPCT_EL0, true, AccessOutcome::kTrapToEl2);
  vcpu_.cnthctl_el2 = cnthctl::kEl1Pcten;
  EXPECT_EQ(ReadValue(SysReg::CNTPCT_EL0), Guest().value);
  vcpu_.cntvoff_el2 = Ticks{9};
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), Guest().value - 9);
}

TEST_F(EmulateTest, NonVheTgeEl0DenialIsRoutedToEl2) {
  // HCR_EL2.TGE = 1 with E2H = 0: CNTKCTL_EL1 still decides (only {E2H,TGE}
  // = {1,1} hands EL0 control to CNTHCTL_EL2), but the trap it causes goes to
  // EL2, not EL1. Arm ARM, CNTKCTL_EL1.EL0{P,V}CTEN / EL0{P,V}TEN: "Traps EL0
  // accesses ... to EL1, or to EL2 when it is implemented and enabled for the
  // current Security state and HCR_EL2.TGE is 1"; the register accessibility
  // pseudocode reads "if EL2Enabled() && HCR_EL2.TGE == '1' then
  // AArch64.SystemAccessTrap(EL2, 0x18) else AArch64.SystemAccessTrap(EL1, 0x18)".
  MakeNested(false);
  ctx_ = GuestContext{ExceptionLevel::kEl0, false, true, false};
  vcpu_.cnthctl_el2 = cnthctl::kEl1PctenE2h0 | cnthctl::kEl1PcenE2h0;
  vcpu_.cntkctl_el1 = 0;
  ExpectOutcome(SysReg::CNTVCT_EL0, true, AccessOutcome::kTrapToEl2);
  ExpectOutcome(SysReg::CNTPCT_EL0, true, AccessOutcome::kTrapToEl2);
  ExpectOutcome(SysReg::CNTFRQ_EL0, true, AccessOutcome::kTrapToEl2);
  ExpectBoth(SysReg::CNTV_CTL_EL0, AccessOutcome::kTrapToEl2);
  ExpectBoth(SysReg::CNTP_CVAL_EL0, AccessOutcome::kTrapToEl2);
  // Allowed by CNTKCTL_EL1, the access proceeds in the EL1&0 regime: CNTVOFF
  // applies and CNTV_* is the EL1 virtual timer.
  vcpu_.cntkctl_el1 = cntkctl::kEl0Vcten | cntkctl::kEl0Vten;
  vcpu_.cntvoff_el2 = Ticks{40};
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), Guest().value - 40);
  ExpectWritten(SysReg::CNTV_CVAL_EL0, 8);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual].cval(), Ticks{8});
}

TEST_F(EmulateTest, CntpoffUndefWithoutTheFeature) {
  MakeNested(true);
  vcpu_.features.ecv = true;
  ExpectBoth(SysReg::CNTPOFF_EL2, AccessOutcome::kUndefined);
  EXPECT_EQ(vcpu_.cntpoff_el2, Ticks{0});
  // ECV in CNTHCTL_EL2 is RES0 without it, so nothing can enable an offset.
  ExpectWritten(SysReg::CNTHCTL_EL2, cnthctl::kEcv);
  EXPECT_EQ(vcpu_.cnthctl_el2 & cnthctl::kEcv, 0U);
}

TEST_F(EmulateTest, CntpoffOffsetsNestedEl1PhysicalCountButNotEl2s) {
  MakeNested(true);
  vcpu_.features.ecv = true;
  vcpu_.features.ecv_cntpoff = true;
  constexpr std::uint64_t kCntpoff = 1'000'000;
  ExpectWritten(SysReg::CNTPOFF_EL2, kCntpoff);
  EXPECT_EQ(ReadValue(SysReg::CNTPOFF_EL2), kCntpoff);
  ExpectWritten(SysReg::CNTHCTL_EL2, cnthctl::kEcv | cnthctl::kEl1Pcten | cnthctl::kEl1Pten);
  EXPECT_EQ(ReadValue(SysReg::CNTPCT_EL0), Guest().value);
  At(ExceptionLevel::kEl1);
  EXPECT_EQ(ReadValue(SysReg::CNTPCT_EL0), Guest().value - kCntpoff);
  // The EL1 physical timer compares against the offset count.
  ExpectWritten(SysReg::CNTP_TVAL_EL0, 20);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Physical].cval().value, Guest().value - kCntpoff + 20);
  // The virtual counter is built on the physical count without CNTPOFF.
  EXPECT_EQ(ReadValue(SysReg::CNTVCT_EL0), Guest().value);
}

TEST_F(EmulateTest, CntpoffIsNotInForceWithoutCnthctlEcv) {
  MakeNested(true);
  vcpu_.features.ecv = true;
  vcpu_.features.ecv_cntpoff = true;
  ExpectWritten(SysReg::CNTPOFF_EL2, 1'000'000);
  ExpectWritten(SysReg::CNTHCTL_EL2, cnthctl::kEl1Pcten);
  At(ExceptionLevel::kEl1);
  EXPECT_EQ(ReadValue(SysReg::CNTPCT_EL0), Guest().value);
}

TEST_F(EmulateTest, El2TimerNamesReachEl2TimersAtEl2Only) {
  MakeNested(false);
  ExpectWritten(SysReg::CNTHP_CVAL_EL2, 31);
  ExpectWritten(SysReg::CNTHV_CTL_EL2, ctl::kEnable);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl2Physical].cval(), Ticks{31});
  EXPECT_TRUE(vcpu_.timers[TimerId::kEl2Virtual].enabled());
  // The EL2 timers count the physical count, with no CNTVOFF.
  vcpu_.cntvoff_el2 = Ticks{1'000};
  ExpectWritten(SysReg::CNTHV_TVAL_EL2, 5);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl2Virtual].cval().value, Guest().value + 5);
  At(ExceptionLevel::kEl1);
  ExpectBoth(SysReg::CNTHP_CVAL_EL2, AccessOutcome::kUndefined);
}

TEST_F(EmulateTest, XzrWriteStoresZero) {
  // MSR CNTV_CVAL_EL0, XZR: the caller passes 0 as the content of XZR.
  ExpectWritten(SysReg::CNTV_CVAL_EL0, 99);
  const Result<SysRegAccess> access =
      DecodeSysRegTrap(EncodeSysRegTrap(EncodingOf(SysReg::CNTV_CVAL_EL0), false, kXzr));
  ASSERT_TRUE(access.has_value());
  EXPECT_EQ(access->rt, kXzr);
  EXPECT_EQ(EmulateSysRegAccess(*access, 0, vcpu_, ctx_, Env()).outcome, AccessOutcome::kWritten);
  EXPECT_EQ(vcpu_.timers[TimerId::kEl1Virtual].cval(), Ticks{0});
}

}  // namespace
}  // namespace vtime::arch
