// Property tests (rapidcheck) over the VM clock, the timers and the unit
// conversions.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <ostream>
#include <vector>

#include "vtime/arch/timer.h"
#include "vtime/arch/vm_clock.h"
#include "vtime/result.h"
#include "vtime/units.h"

namespace vtime::arch {
namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t kNsPerSecond = 1'000'000'000;

// Exact reference arithmetic for the conversions.
__extension__ using U128 = unsigned __int128;

// CVAL = count + SignExtend(value[31:0]), computed without casts to signed.
std::uint64_t AddSext32(std::uint64_t count, std::uint64_t value) {
  const std::uint64_t low = value & 0xffff'ffffULL;
  const std::uint64_t extended =
      (low & 0x8000'0000ULL) != 0 ? (low | 0xffff'ffff'0000'0000ULL) : low;
  return count + extended;
}

// ---------------------------------------------------------------------------
// Random operation sequences over one VM clock and the EL1 timers.

enum class OpKind : std::uint8_t {
  kAdvance,             // the host counter moves forward
  kCreateVcpu,          // VmClock::OnVcpuCreated
  kWriteVirtualCount,   // legacy CNTVCT write
  kWritePhysicalCount,  // legacy CNTPCT write
  kSetVmOffset,         // VmClock::SetVmOffset
  kWriteCtl,            // Timer::WriteCtl
  kWriteCval,           // Timer::WriteCval
  kWriteTval,           // Timer::WriteTval
};
constexpr int kOpKinds = 8;

struct Op {
  OpKind kind = OpKind::kAdvance;
  std::uint64_t delta = 0;  // kAdvance: 0..2^40
  std::uint64_t value = 0;  // counter value, offset, CTL, CVAL or TVAL
  bool near = false;        // kWriteCval: CVAL = count + nudge instead of value
  std::int64_t nudge = 0;
  bool physical = false;  // which EL1 timer the timer ops program
};

std::ostream& operator<<(std::ostream& os, const Op& op) {
  static constexpr const char* kNames[] = {
      "Advance",     "CreateVcpu", "WriteVirtualCount", "WritePhysicalCount",
      "SetVmOffset", "WriteCtl",   "WriteCval",         "WriteTval"};
  os << kNames[static_cast<int>(op.kind)] << "{delta=" << op.delta << " value=" << op.value;
  if (op.kind == OpKind::kWriteCval && op.near) os << " near=" << op.nudge;
  return os << (op.physical ? " physical" : " virtual") << "}";
}

std::ostream& operator<<(std::ostream& os, const HostTimerFeatures& f) {
  return os << "{vm_offset_api=" << f.vm_offset_api << " physical_offset=" << f.physical_offset
            << " ecv_cntpoff=" << f.ecv_cntpoff << "}";
}

rc::Gen<Op> GenOp() {
  return rc::gen::apply(
      [](int kind, std::uint64_t delta, std::uint64_t value, bool near, std::int64_t nudge,
         bool physical) {
        return Op{static_cast<OpKind>(kind), delta, value, near, nudge, physical};
      },
      rc::gen::inRange(0, kOpKinds),
      rc::gen::oneOf(rc::gen::inRange<std::uint64_t>(0, 1'000),
                     rc::gen::inRange<std::uint64_t>(0, (1ULL << 40) + 1),
                     rc::gen::just<std::uint64_t>(1ULL << 40), rc::gen::just<std::uint64_t>(0)),
      rc::gen::oneOf(
          rc::gen::arbitrary<std::uint64_t>(),
          rc::gen::element<std::uint64_t>(0, 1, kMax, 1ULL << 63, 0xffff'ffffULL, 0x8000'0000ULL)),
      rc::gen::arbitrary<bool>(), rc::gen::inRange<std::int64_t>(-(1LL << 20), 1LL << 20),
      rc::gen::arbitrary<bool>());
}

rc::Gen<HostTimerFeatures> GenFeatures() {
  return rc::gen::apply(
      [](bool api, bool physical, bool cntpoff) {
        HostTimerFeatures f;
        f.vm_offset_api = api;
        f.physical_offset = physical;
        f.ecv_cntpoff = cntpoff;
        return f;
      },
      rc::gen::arbitrary<bool>(), rc::gen::arbitrary<bool>(), rc::gen::arbitrary<bool>());
}

constexpr TimerId kEl1Timers[] = {TimerId::kEl1Virtual, TimerId::kEl1Physical};

// Property B: the derived timer state agrees with CTL, CVAL and the count.
void CheckTimerInvariants(const VmClock& clock, HostCount now, const VcpuTimers& timers) {
  const TimerCounts counts = clock.CountsFor(now);
  RC_ASSERT(counts[TimerId::kEl1Virtual] == clock.VirtualCount(now));
  RC_ASSERT(counts[TimerId::kEl1Physical] == clock.PhysicalCount(now));

  std::optional<Ticks> soonest;
  std::uint32_t lines = 0;
  for (const TimerId id : kEl1Timers) {
    const Timer& t = timers[id];
    const Ticks count = counts[id];
    const bool condition = t.cval().value <= count.value;
    const bool high = t.enabled() && condition && !t.masked();
    RC_ASSERT(t.Output(count) == high);
    RC_ASSERT(t.Istatus(count) == condition);
    RC_ASSERT(((t.ReadCtl(count) & ctl::kIstatus) != 0) == condition);
    RC_ASSERT((t.ReadCtl(count) & ~ctl::kIstatus) == t.ctl());
    RC_ASSERT((t.ctl() & ~ctl::kWritable) == 0U);
    const std::optional<Ticks> until = t.TicksUntilFire(count);
    if (!t.enabled() || t.masked()) {
      RC_ASSERT(!until.has_value());
    } else {
      RC_ASSERT(until.has_value());
      RC_ASSERT((until->value == 0) == high);
      if (!high) RC_ASSERT((count + *until) == t.cval());
      if (!soonest || *until < *soonest) soonest = until;
    }
    if (high) lines |= 1U << static_cast<unsigned>(id);
  }
  RC_ASSERT(timers.OutputLines(counts) == lines);
  const std::optional<Deadline> deadline = timers.NextDeadline(counts, 2);
  RC_ASSERT(deadline.has_value() == soonest.has_value());
  if (deadline) RC_ASSERT(deadline->delta == *soonest);
}

// Property A: between the rule-defined jumps, both counters advance exactly
// as the host counter does (mod 2^64), and nothing else moves them.
RC_GTEST_PROP(VmClockProperty, CountsAdvanceWithTheHostExceptOnRuleJumps, ()) {
  const HostTimerFeatures features = *GenFeatures();
  const std::vector<Op> ops = *rc::gen::container<std::vector<Op>>(GenOp());
  HostCount now{*rc::gen::arbitrary<std::uint64_t>()};
  RC_LOG() << "features " << features << ", start " << now.value << "\n";
  VmClock clock(features);
  VcpuTimers timers;
  CheckTimerInvariants(clock, now, timers);

  for (const Op& op : ops) {
    const Ticks v0 = clock.VirtualCount(now);
    const Ticks p0 = clock.PhysicalCount(now);
    const bool was_set = clock.vm_offset_set();
    std::uint64_t host_delta = 0;
    bool may_jump = false;
    const TimerId id = op.physical ? TimerId::kEl1Physical : TimerId::kEl1Virtual;
    const Ticks timer_count = clock.CountsFor(now)[id];

    switch (op.kind) {
      case OpKind::kAdvance:
        now = HostCount{now.value + op.delta};
        host_delta = op.delta;
        break;
      case OpKind::kCreateVcpu:
        clock.OnVcpuCreated(now);
        if (!was_set) {
          may_jump = true;
          // Legacy reset: virtual counter from 0, physical counter the host's.
          RC_ASSERT(clock.VirtualCount(now) == Ticks{0});
          RC_ASSERT(clock.PhysicalCount(now) == Ticks{now.value});
        }
        break;
      case OpKind::kWriteVirtualCount:
      case OpKind::kWritePhysicalCount: {
        const bool physical = op.kind == OpKind::kWritePhysicalCount;
        const Result<CounterWriteEffect> r = clock.WriteCounterValue(
            physical ? CounterKind::kPhysical : CounterKind::kVirtual, Ticks{op.value}, now);
        if (!r) {
          RC_ASSERT(physical);
          RC_ASSERT(!features.physical_offset);
          RC_ASSERT(r.error().code == ErrorCode::kUnsupported);
        } else if (*r == CounterWriteEffect::kApplied) {
          RC_ASSERT(!was_set);
          may_jump = true;
          // The written counter reads the value; the other is untouched.
          if (physical) {
            RC_ASSERT(clock.PhysicalCount(now) == Ticks{op.value});
            RC_ASSERT(clock.VirtualCount(now) == v0);
          } else {
            RC_ASSERT(clock.VirtualCount(now) == Ticks{op.value});
            RC_ASSERT(clock.PhysicalCount(now) == p0);
          }
        } else {
          RC_ASSERT(was_set);
        }
        break;
      }
      case OpKind::kSetVmOffset: {
        const Result<void> r = clock.SetVmOffset(Ticks{op.value});
        if (!r) {
          RC_ASSERT(!features.vm_offset_api);
          RC_ASSERT(r.error().code == ErrorCode::kUnsupported);
          RC_ASSERT(!clock.vm_offset_set());
        } else {
          RC_ASSERT(features.vm_offset_api);
          RC_ASSERT(clock.vm_offset_set());
          may_jump = true;
          RC_ASSERT(clock.VirtualCount(now) == GuestView(now, Ticks{op.value}));
          if (features.physical_offset) {
            RC_ASSERT(clock.PhysicalCount(now) == GuestView(now, Ticks{op.value}));
          } else {
            // Without a physical offset the physical counter is the host's.
            RC_ASSERT(clock.PhysicalCount(now) == Ticks{now.value});
          }
        }
        break;
      }
      case OpKind::kWriteCtl:
        timers[id].WriteCtl(op.value);
        RC_ASSERT(timers[id].ctl() == (op.value & ctl::kWritable));
        break;
      case OpKind::kWriteCval: {
        const Ticks cval = op.near ? Ticks{timer_count.value + static_cast<std::uint64_t>(op.nudge)}
                                   : Ticks{op.value};
        timers[id].WriteCval(cval);
        RC_ASSERT(timers[id].cval() == cval);
        break;
      }
      case OpKind::kWriteTval:
        timers[id].WriteTval(timer_count, op.value);
        RC_ASSERT(timers[id].cval().value == AddSext32(timer_count.value, op.value));
        break;
    }

    const Ticks v1 = clock.VirtualCount(now);
    const Ticks p1 = clock.PhysicalCount(now);
    if (!may_jump) {
      RC_ASSERT((v1 - v0).value == host_delta);
      RC_ASSERT((p1 - p0).value == host_delta);
    }
    if (features.physical_offset == false) RC_ASSERT(p1 == Ticks{now.value});
    RC_ASSERT(clock.vm_offset_set() ==
              (was_set || (op.kind == OpKind::kSetVmOffset && features.vm_offset_api)));
    CheckTimerInvariants(clock, now, timers);
  }
}

// Property A, focused: once the VM offset is set, no sequence of legacy
// operations moves either counter relative to the host.
RC_GTEST_PROP(VmClockProperty, AfterVmOffsetLegacyOperationsChangeNothing,
              (std::uint64_t offset, std::uint64_t start)) {
  HostTimerFeatures features = *GenFeatures();
  features.vm_offset_api = true;
  RC_LOG() << "features " << features << "\n";
  VmClock clock(features);
  HostCount now{start};
  RC_ASSERT(clock.SetVmOffset(Ticks{offset}).has_value());
  const Ticks voffset = clock.virtual_offset();
  const Ticks poffset = clock.physical_offset();
  const std::vector<Op> ops = *rc::gen::container<std::vector<Op>>(GenOp());
  for (const Op& op : ops) {
    switch (op.kind) {
      case OpKind::kCreateVcpu:
        clock.OnVcpuCreated(now);
        break;
      case OpKind::kWriteVirtualCount: {
        const auto r = clock.WriteCounterValue(CounterKind::kVirtual, Ticks{op.value}, now);
        RC_ASSERT(r.has_value());
        RC_ASSERT(*r == CounterWriteEffect::kIgnored);
        break;
      }
      case OpKind::kWritePhysicalCount: {
        const auto r = clock.WriteCounterValue(CounterKind::kPhysical, Ticks{op.value}, now);
        RC_ASSERT(r.has_value() == features.physical_offset);
        if (r) RC_ASSERT(*r == CounterWriteEffect::kIgnored);
        break;
      }
      default:
        now = HostCount{now.value + op.delta};
        break;
    }
    RC_ASSERT(clock.virtual_offset() == voffset);
    RC_ASSERT(clock.physical_offset() == poffset);
    RC_ASSERT(clock.VirtualCount(now) == GuestView(now, Ticks{offset}));
  }
}

// ---------------------------------------------------------------------------
// Property C: TVAL.

RC_GTEST_PROP(TimerProperty, TvalWriteThenReadRoundTrips,
              (std::uint64_t count, std::uint64_t value, std::uint64_t ctl_value)) {
  Timer t;
  t.WriteCtl(ctl_value);
  t.WriteTval(Ticks{count}, value);
  RC_ASSERT(t.ReadTval(Ticks{count}) == (value & 0xffff'ffffULL));
  RC_ASSERT(t.cval().value == AddSext32(count, value));
  RC_ASSERT(static_cast<std::uint32_t>(t.TvalSigned(Ticks{count})) ==
            static_cast<std::uint32_t>(value & 0xffff'ffffULL));
  // A TVAL write leaves CTL alone.
  RC_ASSERT(t.ctl() == (ctl_value & ctl::kWritable));
}

RC_GTEST_PROP(TimerProperty, TvalCountsDown, (std::uint64_t count, std::uint32_t tval)) {
  const auto elapsed = *rc::gen::inRange<std::uint64_t>(0, 1ULL << 33);
  Timer t;
  t.WriteTval(Ticks{count}, tval);
  const Ticks later{count + elapsed};
  RC_ASSERT(t.ReadTval(later) == ((std::uint64_t{tval} - elapsed) & 0xffff'ffffULL));
}

// ---------------------------------------------------------------------------
// Property D: tick / nanosecond conversions.

RC_GTEST_PROP(UnitsProperty, CeilThenFloorNeverLosesATickInSaneRanges, ()) {
  // 1 kHz .. 10 GHz and up to 2^40 ticks: nothing saturates.
  const auto hz = *rc::gen::inRange<std::uint64_t>(1'000, 10'000'000'001);
  const auto ticks = *rc::gen::inRange<std::uint64_t>(0, (1ULL << 40) + 1);
  const FrequencyHz f{hz};
  const Nanoseconds ns = TicksToNanosecondsCeil(Ticks{ticks}, f);
  RC_ASSERT(ns.value < kMax);
  const Ticks back = NanosecondsToTicksFloor(ns, f);
  RC_ASSERT(back.value >= ticks);
  // Rounding up by less than a nanosecond costs at most ceil(f / 1e9) ticks.
  RC_ASSERT(back.value - ticks <= (hz + kNsPerSecond - 1) / kNsPerSecond);
  // The armed time is never early: ns * f >= ticks * 1e9.
  RC_ASSERT(static_cast<U128>(ns.value) * hz >= static_cast<U128>(ticks) * kNsPerSecond);
}

RC_GTEST_PROP(UnitsProperty, ConversionsMatchExactArithmeticAndSaturate, ()) {
  const auto hz = *rc::gen::oneOf(
      rc::gen::inRange<std::uint64_t>(1, 20'000'000'000),
      rc::gen::element<std::uint64_t>(1, 999'999'999, 1'000'000'000, 1'000'000'001, kMax));
  const auto x = *rc::gen::oneOf(rc::gen::arbitrary<std::uint64_t>(),
                                 rc::gen::inRange<std::uint64_t>(kMax - 1'000'000, kMax),
                                 rc::gen::element<std::uint64_t>(0, 1, kMax, kMax / 2));
  const FrequencyHz f{hz};

  const U128 ns_exact = (static_cast<U128>(x) * kNsPerSecond + hz - 1) / hz;
  const std::uint64_t ns_want = ns_exact > kMax ? kMax : static_cast<std::uint64_t>(ns_exact);
  RC_ASSERT(TicksToNanosecondsCeil(Ticks{x}, f).value == ns_want);

  const U128 ticks_exact = static_cast<U128>(x) * hz / kNsPerSecond;
  const std::uint64_t ticks_want =
      ticks_exact > kMax ? kMax : static_cast<std::uint64_t>(ticks_exact);
  RC_ASSERT(NanosecondsToTicksFloor(Nanoseconds{x}, f).value == ticks_want);

  // Round trip: never below the start unless the first step saturated.
  const Nanoseconds ns = TicksToNanosecondsCeil(Ticks{x}, f);
  if (ns.value != kMax) RC_ASSERT(NanosecondsToTicksFloor(ns, f).value >= x);
}

RC_GTEST_PROP(UnitsProperty, ConversionsAreMonotonic, (std::uint64_t a, std::uint64_t b)) {
  const auto hz = *rc::gen::inRange<std::uint64_t>(1, 20'000'000'000);
  const FrequencyHz f{hz};
  const std::uint64_t lo = a < b ? a : b;
  const std::uint64_t hi = a < b ? b : a;
  RC_ASSERT(TicksToNanosecondsCeil(Ticks{lo}, f) <= TicksToNanosecondsCeil(Ticks{hi}, f));
  RC_ASSERT(NanosecondsToTicksFloor(Nanoseconds{lo}, f) <=
            NanosecondsToTicksFloor(Nanoseconds{hi}, f));
}

TEST(UnitsSaturation, HugeValuesSaturateInsteadOfWrapping) {
  EXPECT_EQ(TicksToNanosecondsCeil(Ticks{kMax}, FrequencyHz{24'000'000}).value, kMax);
  EXPECT_EQ(TicksToNanosecondsCeil(Ticks{kMax}, FrequencyHz{1}).value, kMax);
  EXPECT_EQ(NanosecondsToTicksFloor(Nanoseconds{kMax}, FrequencyHz{2'000'000'000}).value, kMax);
  EXPECT_EQ(NanosecondsToTicksFloor(Nanoseconds{kMax}, FrequencyHz{kMax}).value, kMax);
  // At exactly 1 GHz both are the identity, even at the top.
  EXPECT_EQ(TicksToNanosecondsCeil(Ticks{kMax}, FrequencyHz{kNsPerSecond}).value, kMax);
  EXPECT_EQ(NanosecondsToTicksFloor(Nanoseconds{kMax - 1}, FrequencyHz{kNsPerSecond}).value,
            kMax - 1);
}

}  // namespace
}  // namespace vtime::arch
