// The model demonstration's script parser and player.
#include <gtest/gtest.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "scenario.h"
#include "vtime/arch/esr.h"
#include "vtime/hex.h"

namespace vtime::model_demo {
namespace {

using arch::TimerId;

constexpr FrequencyHz kGHz{1'000'000'000};
constexpr std::uint64_t kMs = 1'000'000;  // ticks at 1 GHz

// The error a script fails to parse with (fails the test if it parses).
std::string ParseError(std::string_view text) {
  const Result<Script> s = ParseScript(text, kGHz);
  EXPECT_FALSE(s.has_value()) << "parsed: " << text;
  return s ? std::string() : s.error().context;
}

struct Played {
  std::string out;
  PlayLog log;
};

// Parses and plays a script that must be valid.
Played Play(std::string_view text) {
  Played p;
  const Result<Script> s = ParseScript(text, kGHz);
  EXPECT_TRUE(s.has_value()) << s.error().context;
  if (!s) return p;
  std::ostringstream out;
  const Result<PlayLog> log = PlayScript(*s, kGHz, out);
  EXPECT_TRUE(log.has_value()) << log.error().context;
  p.out = out.str();
  if (log) p.log = *log;
  return p;
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// --- Numbers -----------------------------------------------------------------

TEST(ModelDemoParseCount, TicksHexAndDurations) {
  EXPECT_EQ(ParseCount("12345", kGHz), 12345U);
  EXPECT_EQ(ParseCount("1_000_000", kGHz), 1'000'000U);
  EXPECT_EQ(ParseCount("0x3e8", kGHz), 1000U);
  EXPECT_EQ(ParseCount("10ms", kGHz), 10 * kMs);
  EXPECT_EQ(ParseCount("1.5s", kGHz), 1'500 * kMs);
  EXPECT_EQ(ParseCount("7200.08s", kGHz), 7'200'080 * kMs);
  // Durations convert at the counter's frequency, rounding down.
  const FrequencyHz f24{24'000'000};
  EXPECT_EQ(ParseCount("1ms", f24), 24'000U);
  EXPECT_EQ(ParseCount("250us", f24), 6'000U);
  EXPECT_EQ(ParseCount("40ns", f24), 0U);  // 0.96 ticks
  EXPECT_EQ(ParseCount("1s", f24), 24'000'000U);
  // Negative values wrap modulo 2^64 where allowed.
  EXPECT_EQ(ParseCount("-5ms", kGHz, /*allow_negative=*/true), 0 - 5 * kMs);
  EXPECT_EQ(ParseCount("-1", kGHz, /*allow_negative=*/true), UINT64_MAX);
  EXPECT_EQ(ParseCount("0xffffffffffffffff", kGHz), UINT64_MAX);
}

TEST(ModelDemoParseCount, RejectsWhatIsNotANumber) {
  for (const std::string_view bad : {"", "abc", "10min", "1.5", "ms", "0x", "0xfg", "1e9", "-"}) {
    const Result<std::uint64_t> n = ParseCount(bad, kGHz, /*allow_negative=*/true);
    EXPECT_FALSE(n.has_value()) << bad;
  }
  const Result<std::uint64_t> negative = ParseCount("-5", kGHz);
  ASSERT_FALSE(negative.has_value());
  EXPECT_TRUE(Contains(negative.error().context, "negative")) << negative.error().context;
  // Out of range: more digits than 64 bits hold, and a duration too long.
  const Result<std::uint64_t> big = ParseCount("99999999999999999999", kGHz);
  ASSERT_FALSE(big.has_value());
  EXPECT_TRUE(Contains(big.error().context, "2^64-1")) << big.error().context;
  EXPECT_FALSE(ParseCount("20000000000s", kGHz).has_value());
  const Result<std::uint64_t> unit = ParseCount("10min", kGHz);
  ASSERT_FALSE(unit.has_value());
  EXPECT_TRUE(Contains(unit.error().context, "unknown unit 'min'")) << unit.error().context;
}

// --- Parse errors name the line -------------------------------------------------

TEST(ModelDemoParse, AcceptsAWellFormedScript) {
  const Result<Script> ok = ParseScript(
      "# a comment\n"
      "\n"
      "at 1s create-vcpu   # trailing comment\n"
      "at 1.5s guest vcpu 0 write cntv_ctl_el0 ENABLE|IMASK\n"
      "at 2s note hello  world   \n"
      "run-until 3s",
      kGHz);
  ASSERT_TRUE(ok.has_value()) << ok.error().context;
  ASSERT_EQ(ok->commands.size(), 4U);
  EXPECT_EQ(ok->commands[0].kind, CommandKind::kCreateVcpu);
  EXPECT_EQ(ok->commands[0].time, HostCount{1'000 * kMs});
  EXPECT_EQ(ok->commands[1].kind, CommandKind::kGuestWrite);
  EXPECT_EQ(ok->commands[1].reg, arch::SysReg::CNTV_CTL_EL0);
  EXPECT_EQ(ok->commands[1].value, arch::ctl::kEnable | arch::ctl::kImask);
  EXPECT_EQ(ok->commands[1].line, 4);
  EXPECT_EQ(ok->commands[2].text, "hello  world");
  EXPECT_EQ(ok->commands[3].kind, CommandKind::kRunUntil);
  EXPECT_EQ(ok->commands[3].time, HostCount{3'000 * kMs});
}

TEST(ModelDemoParse, UnknownCommandNamesTheLine) {
  const std::string e = ParseError("at 0 create-vcpu\n\n# comment\nat 1 frobnicate\n");
  EXPECT_EQ(e.rfind("line 4: unknown command 'frobnicate'", 0), 0U) << e;
  const std::string bare = ParseError("at 0 create-vcpu\nfrobnicate 5\n");
  EXPECT_EQ(bare.rfind("line 2: unknown command 'frobnicate'", 0), 0U) << bare;
  // A command without its time says how to write it.
  const std::string no_at = ParseError("show\n");
  EXPECT_EQ(no_at.rfind("line 1: 'show' needs a time", 0), 0U) << no_at;
}

TEST(ModelDemoParse, BadNumberNamesTheLine) {
  const std::string time = ParseError("at 0 create-vcpu\nat 5qs show\n");
  EXPECT_EQ(time.rfind("line 2: bad time: bad number '5qs'", 0), 0U) << time;
  const std::string value = ParseError("at 0 create-vcpu\nat 1 set-vm-offset 12x\n");
  EXPECT_EQ(value.rfind("line 2: bad number '12x'", 0), 0U) << value;
  const std::string vcpu = ParseError("at 0 guest vcpu one read CNTVCT_EL0\n");
  EXPECT_EQ(vcpu.rfind("line 1: bad vCPU number 'one'", 0), 0U) << vcpu;
  const std::string ctl = ParseError("at 0 guest vcpu 0 write CNTV_CTL_EL0 ENABLED\n");
  EXPECT_EQ(ctl.rfind("line 1: bad CTL value 'ENABLED'", 0), 0U) << ctl;
}

TEST(ModelDemoParse, MissingOrExtraArgumentNamesTheLine) {
  const std::string write =
      ParseError("at 0 create-vcpu\nat 1ms guest vcpu 0 write CNTV_TVAL_EL0\n");
  EXPECT_EQ(write.rfind("line 2: missing argument for 'guest'", 0), 0U) << write;
  const std::string counter = ParseError("at 1ms write-counter vcpu 0 virtual\n");
  EXPECT_EQ(counter.rfind("line 1: missing argument for 'write-counter'", 0), 0U) << counter;
  EXPECT_TRUE(Contains(counter, "usage: at TIME write-counter vcpu N virtual|physical VALUE"));
  const std::string at = ParseError("at\n");
  EXPECT_EQ(at.rfind("line 1: missing argument", 0), 0U) << at;
  const std::string extra = ParseError("at 1 show everything\n");
  EXPECT_EQ(extra.rfind("line 1: unexpected 'everything' after 'show'", 0), 0U) << extra;
  const std::string reg = ParseError("at 1 guest vcpu 0 read CNTV_FOO_EL0\n");
  EXPECT_EQ(reg.rfind("line 1: unknown register 'CNTV_FOO_EL0'", 0), 0U) << reg;
}

TEST(ModelDemoParse, TimeGoingBackwardsNamesTheLine) {
  const std::string e = ParseError("at 10ms show\nat 10ms show\nat 5ms show\n");
  EXPECT_EQ(e.rfind("line 3: time goes backwards: 5.000000ms is before 10.000000ms (line 2)", 0),
            0U)
      << e;
  // After a restore onto a destination host, times are on its axis.
  const std::string axis = ParseError(
      "at 0 create-vcpu\nat 1s save a\nat 2s restore a host-counter 100s\nat 50s show\n");
  EXPECT_EQ(axis.rfind("line 4: time goes backwards", 0), 0U) << axis;
  EXPECT_TRUE(ParseScript("at 0 create-vcpu\nat 1s save a\nat 2s restore a host-counter 100s\n"
                          "at 100s show\n",
                          kGHz)
                  .has_value());
}

TEST(ModelDemoParse, RestoreNeedsAnEarlierSaveAndTheFreezePolicy) {
  const std::string unknown = ParseError("at 0 create-vcpu\nat 1 restore nope\n");
  EXPECT_EQ(unknown.rfind("line 2: restore of unknown snapshot 'nope'", 0), 0U) << unknown;
  const std::string policy =
      ParseError("at 0 create-vcpu\nat 1 save a\nat 2 restore a policy wall-clock\n");
  EXPECT_EQ(policy.rfind("line 3: unsupported policy 'wall-clock'", 0), 0U) << policy;
  const std::string dangling = ParseError("at 0 create-vcpu\nat 1 save a\nat 2 restore a policy\n");
  EXPECT_EQ(dangling.rfind("line 3: missing argument after 'policy'", 0), 0U) << dangling;
}

// --- The player ------------------------------------------------------------------

TEST(ModelDemoPlay, VirtualTimerLineRisesAtCvalAndImaskHoldsIt) {
  const Played p = Play(
      "at 1s create-vcpu\n"
      "at 1.1s guest vcpu 0 write CNTV_TVAL_EL0 20ms\n"  // CVAL = 100ms + 20ms
      "at 1.1s guest vcpu 0 write CNTV_CTL_EL0 ENABLE\n"
      "at 1.15s guest vcpu 0 write CNTV_CTL_EL0 ENABLE|IMASK\n"
      "at 1.16s guest vcpu 0 read CNTV_CTL_EL0\n"
      "at 1.2s guest vcpu 0 write CNTV_CTL_EL0 ENABLE\n"
      "run-until 2s\n");
  ASSERT_EQ(p.log.line_events.size(), 3U) << p.out;
  const LineEvent& rise = p.log.line_events[0];
  EXPECT_EQ(rise.time, HostCount{1'120 * kMs});  // exactly when CNTVCT reaches CVAL
  EXPECT_TRUE(rise.high);
  EXPECT_EQ(rise.vcpu, 0U);
  EXPECT_EQ(rise.timer, TimerId::kEl1Virtual);
  EXPECT_EQ(rise.count, Ticks{120 * kMs});
  EXPECT_EQ(rise.cval, Ticks{120 * kMs});
  EXPECT_EQ(rise.line, 4);  // reported while waiting for line 4's command
  const LineEvent& fall = p.log.line_events[1];
  EXPECT_EQ(fall.time, HostCount{1'150 * kMs});  // IMASK pulls it down at the write
  EXPECT_FALSE(fall.high);
  EXPECT_EQ(p.log.line_events[2].time, HostCount{1'200 * kMs});  // unmasked: up again
  EXPECT_TRUE(p.log.line_events[2].high);
  // While masked, ISTATUS still reads 1.
  ASSERT_EQ(p.log.guest_reads.size(), 1U);
  EXPECT_EQ(p.log.guest_reads[0], arch::ctl::kEnable | arch::ctl::kImask | arch::ctl::kIstatus);
  EXPECT_TRUE(Contains(p.out,
                       "t=1120.000000ms     vcpu0 EL1 virtual timer line RISES: CNTVCT=120000000 "
                       "reached CVAL=120000000\n"))
      << p.out;
  EXPECT_TRUE(Contains(p.out, "t=1150.000000ms     vcpu0 EL1 virtual timer line FALLS")) << p.out;
}

TEST(ModelDemoPlay, LegacyVcpuCreationResetsTheVirtualOffsetForEveryVcpu) {
  const Played p = Play(
      "at 1s create-vcpu\n"
      "at 1.5s guest vcpu 0 read CNTVCT_EL0\n"
      "at 1.5s create-vcpu\n"
      "at 1.5s guest vcpu 0 read CNTVCT_EL0\n"
      "at 1.6s guest vcpu 1 read CNTPCT_EL0\n");
  ASSERT_EQ(p.log.guest_reads.size(), 3U);
  EXPECT_EQ(p.log.guest_reads[0], 500 * kMs);
  EXPECT_EQ(p.log.guest_reads[1], 0U);           // vcpu0's count restarted with vcpu1's
  EXPECT_EQ(p.log.guest_reads[2], 1'600 * kMs);  // the physical counter is the host's
  EXPECT_TRUE(Contains(p.out, "CNTVCT of vcpu0 jumps 500000000 -> 0 (-500000000)")) << p.out;
}

TEST(ModelDemoPlay, LegacyCounterWriteMovesTheCountBelowCvalAndTheLineFalls) {
  const Played p = Play(
      "at 0 create-vcpu\n"
      "at 0 create-vcpu\n"
      "at 10ms guest vcpu 0 write CNTV_CVAL_EL0 5ms\n"
      "at 10ms guest vcpu 0 write CNTV_CTL_EL0 ENABLE\n"  // fires at once
      "at 20ms write-counter vcpu 1 virtual 0\n"          // VM-wide: vcpu0's count too
      "run-until 30ms\n");
  ASSERT_EQ(p.log.line_events.size(), 3U) << p.out;
  EXPECT_EQ(p.log.line_events[0].time, HostCount{10 * kMs});
  EXPECT_TRUE(p.log.line_events[0].high);
  EXPECT_EQ(p.log.line_events[1].time, HostCount{20 * kMs});
  EXPECT_FALSE(p.log.line_events[1].high);
  EXPECT_EQ(p.log.line_events[1].count, Ticks{0});
  // It rises again when the moved count reaches CVAL: 5ms after the write.
  EXPECT_EQ(p.log.line_events[2].time, HostCount{25 * kMs});
  EXPECT_TRUE(p.log.line_events[2].high);
}

TEST(ModelDemoPlay, CounterWriteAfterSetVmOffsetIsIgnored) {
  const Played p = Play(
      "at 1s create-vcpu\n"
      "at 1s guest vcpu 0 write CNTP_CVAL_EL0 1.1s\n"
      "at 1s guest vcpu 0 write CNTP_CTL_EL0 ENABLE\n"
      "at 1.2s set-vm-offset 1.15s\n"  // CNTPCT 1.2s -> 50ms: below CVAL, the line falls
      "at 1.3s write-counter vcpu 0 virtual 5s\n"
      "at 1.3s write-counter vcpu 0 physical 5s\n"
      "at 1.3s guest vcpu 0 read CNTVCT_EL0\n"
      "at 1.3s guest vcpu 0 read CNTPCT_EL0\n");
  EXPECT_TRUE(Contains(p.out,
                       "CNTVCT = 5000000000 (ONE_REG KVM_REG_ARM_TIMER_CNT): accepted and "
                       "IGNORED"))
      << p.out;
  EXPECT_TRUE(Contains(p.out,
                       "CNTPCT = 5000000000 (ONE_REG KVM_REG_ARM_PTIMER_CNT): accepted and "
                       "IGNORED"))
      << p.out;
  ASSERT_EQ(p.log.guest_reads.size(), 2U);
  EXPECT_EQ(p.log.guest_reads[0], 150 * kMs);  // 1.3s - 1.15s: the writes changed nothing
  EXPECT_EQ(p.log.guest_reads[1], 150 * kMs);
  // The physical line rose at 1.1s and fell when the offset moved the count back.
  ASSERT_EQ(p.log.line_events.size(), 2U) << p.out;
  EXPECT_EQ(p.log.line_events[0].time, HostCount{1'100 * kMs});
  EXPECT_EQ(p.log.line_events[0].timer, TimerId::kEl1Physical);
  EXPECT_EQ(p.log.line_events[1].time, HostCount{1'200 * kMs});
  EXPECT_FALSE(p.log.line_events[1].high);
  EXPECT_EQ(p.log.line_events[1].count, Ticks{50 * kMs});
  EXPECT_TRUE(Contains(p.out,
                       "EL1 physical timer line FALLS (CNTPCT=50000000, CVAL=1100000000, "
                       "CTL=ENABLE) - after the offset change"))
      << p.out;
}

TEST(ModelDemoPlay, FreezeRestoreKeepsTheGuestCountContinuousAndFiresOnTime) {
  const Played p = Play(
      "at 1s create-vcpu\n"
      "at 1s create-vcpu\n"
      "at 1s set-vm-offset 1s\n"
      "at 1.2s guest vcpu 1 write CNTV_TVAL_EL0 80ms\n"  // CVAL = 280ms
      "at 1.2s guest vcpu 1 write CNTV_CTL_EL0 ENABLE\n"
      "at 1.25s save mig\n"  // CNTVCT = 250ms, 30ms before the deadline
      "at 1.75s restore mig host-counter 7200s policy freeze\n"
      "at 7200s guest vcpu 1 read CNTVCT_EL0\n"
      "at 7200.01s guest vcpu 0 read CNTVCT_EL0\n"
      "at 7200.01s guest vcpu 1 read CNTV_TVAL_EL0\n"
      "run-until 7201s\n");
  ASSERT_EQ(p.log.guest_reads.size(), 3U) << p.out;
  EXPECT_EQ(p.log.guest_reads[0], 250 * kMs);  // resumes at the count it paused at
  EXPECT_EQ(p.log.guest_reads[1], 260 * kMs);
  EXPECT_EQ(p.log.guest_reads[2], 20 * kMs);  // TVAL is derived from the restored CVAL
  ASSERT_EQ(p.log.line_events.size(), 1U) << p.out;
  const LineEvent& rise = p.log.line_events[0];
  EXPECT_EQ(rise.time, HostCount{7'200'030 * kMs});  // 30ms of guest time after the restore
  EXPECT_EQ(rise.vcpu, 1U);
  EXPECT_EQ(rise.count, Ticks{280 * kMs});
  EXPECT_TRUE(Contains(p.out,
                       "freeze: VM offset = host now 7200000000000 - saved CNTVCT 250000000 "
                       "= 7199750000000"))
      << p.out;
  EXPECT_TRUE(Contains(p.out, "guest resumes: CNTVCT=250000000 (saved 250000000: continuous)"))
      << p.out;
}

TEST(ModelDemoPlay, RestoringTheSameSnapshotTwiceGivesTheSameView) {
  const Played p = Play(
      "at 1s create-vcpu\n"
      "at 2s save a\n"  // CNTVCT = 1s
      "at 3s restore a\n"
      "at 3s guest vcpu 0 read CNTVCT_EL0\n"
      "at 9s restore a host-counter 50s\n"
      "at 50s guest vcpu 0 read CNTVCT_EL0\n");
  ASSERT_EQ(p.log.guest_reads.size(), 2U);
  EXPECT_EQ(p.log.guest_reads[0], 1'000 * kMs);
  EXPECT_EQ(p.log.guest_reads[1], 1'000 * kMs);
}

TEST(ModelDemoPlay, GuestAccessesGoThroughTheTrapPath) {
  const Played p = Play(
      "at 0 create-vcpu\n"
      "at 1 guest vcpu 0 write CNTVCT_EL0 5\n"
      "at 1 guest vcpu 0 read CNTFRQ_EL0\n");
  const std::uint64_t esr =
      arch::EncodeSysRegTrap(arch::EncodingOf(arch::SysReg::CNTVCT_EL0), false, 0);
  EXPECT_TRUE(Contains(p.out, "MSR CNTVCT_EL0, x0 (x0=5)  [ESR_EL2 " + Hex(esr) + "]: UNDEFINED"))
      << p.out;
  ASSERT_EQ(p.log.guest_reads.size(), 1U);
  EXPECT_EQ(p.log.guest_reads[0], kGHz.hz());
}

TEST(ModelDemoPlay, LineFallsWhenTheCountWrapsAround) {
  const Played p = Play(
      "at 0 create-vcpu\n"
      "at 0 write-counter vcpu 0 virtual -10\n"
      "at 0 guest vcpu 0 write CNTV_CVAL_EL0 -5\n"
      "at 0 guest vcpu 0 write CNTV_CTL_EL0 ENABLE\n"
      "run-until 100\n");
  ASSERT_EQ(p.log.line_events.size(), 2U) << p.out;
  EXPECT_EQ(p.log.line_events[0].time, HostCount{5});
  EXPECT_TRUE(p.log.line_events[0].high);
  EXPECT_EQ(p.log.line_events[1].time, HostCount{10});  // the count wraps to 0 < CVAL
  EXPECT_FALSE(p.log.line_events[1].high);
  EXPECT_EQ(p.log.line_events[1].count, Ticks{0});
}

TEST(ModelDemoPlay, StateErrorsNameTheLine) {
  const Result<Script> s =
      ParseScript("at 0 create-vcpu\nat 1 guest vcpu 1 read CNTVCT_EL0\n", kGHz);
  ASSERT_TRUE(s.has_value());
  std::ostringstream out;
  const Result<PlayLog> log = PlayScript(*s, kGHz, out);
  ASSERT_FALSE(log.has_value());
  EXPECT_EQ(log.error().code, ErrorCode::kOutOfRange);
  EXPECT_EQ(log.error().context, "line 2: vcpu 1 does not exist (1 created so far)");

  const Result<Script> paused =
      ParseScript("at 0 create-vcpu\nat 1 save a\nat 2 set-vm-offset 0\n", kGHz);
  ASSERT_TRUE(paused.has_value());
  const Result<PlayLog> refused = PlayScript(*paused, kGHz, out);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kBadState);
  EXPECT_EQ(refused.error().context.rfind("line 3: set-vm-offset: the VM is paused", 0), 0U)
      << refused.error().context;
}

TEST(ModelDemoPlay, IsDeterministic) {
  constexpr std::string_view kScript =
      "at 1s create-vcpu\n"
      "at 1.1s guest vcpu 0 write CNTV_TVAL_EL0 20ms\n"
      "at 1.1s guest vcpu 0 write CNTV_CTL_EL0 ENABLE\n"
      "at 1.2s show\n"
      "run-until 2s\n";
  const Played a = Play(kScript);
  const Played b = Play(kScript);
  EXPECT_FALSE(a.out.empty());
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.log.line_events, b.log.line_events);
}

TEST(ModelDemoFormat, HostTimeInMilliseconds) {
  EXPECT_EQ(FormatHostTime(HostCount{1'620'000'000}, kGHz), "1620.000000ms");
  EXPECT_EQ(FormatHostTime(HostCount{5}, kGHz), "0.000005ms");
  EXPECT_EQ(FormatHostTime(HostCount{24'000}, FrequencyHz{24'000'000}), "1.000000ms");
}

}  // namespace
}  // namespace vtime::model_demo
