// One test per VM-clock rule (seed 000 as the kernel implements it).
#include "vtime/arch/vm_clock.h"

#include <gtest/gtest.h>

namespace vtime::arch {
namespace {

constexpr HostCount kT0{5'000'000'000};

TEST(VmClock, LegacyVcpuCreationStartsVirtualCounterNearZero) {
  VmClock clock;
  clock.OnVcpuCreated(kT0);
  EXPECT_EQ(clock.VirtualCount(kT0), Ticks{0});
  EXPECT_EQ(clock.VirtualCount(HostCount{kT0.value + 42}), Ticks{42});
  // The physical counter is the host's.
  EXPECT_EQ(clock.PhysicalCount(kT0), Ticks{kT0.value});
  EXPECT_EQ(clock.virtual_source(), OffsetSource::kVcpuCreation);
}

TEST(VmClock, LegacyEachVcpuCreationRewritesTheVmWideOffset) {
  VmClock clock;
  clock.OnVcpuCreated(kT0);
  const HostCount later{kT0.value + 1'000};
  clock.OnVcpuCreated(later);
  // Every vCPU, including the first, now counts from the second creation.
  EXPECT_EQ(clock.VirtualCount(later), Ticks{0});
  EXPECT_EQ(clock.virtual_offset(), Ticks{later.value});
}

TEST(VmClock, LegacyVcpuCreationZeroesAnEarlierPhysicalWrite) {
  VmClock clock;
  clock.OnVcpuCreated(kT0);
  ASSERT_TRUE(clock.WriteCounterValue(CounterKind::kPhysical, Ticks{7}, kT0).has_value());
  EXPECT_EQ(clock.PhysicalCount(kT0), Ticks{7});
  clock.OnVcpuCreated(kT0);
  EXPECT_EQ(clock.physical_offset(), Ticks{0});
  EXPECT_EQ(clock.PhysicalCount(kT0), Ticks{kT0.value});
}

TEST(VmClock, LegacyVirtualWriteMovesOffsetFromNow) {
  VmClock clock;
  clock.OnVcpuCreated(kT0);
  const HostCount now{kT0.value + 500};
  const auto effect = clock.WriteCounterValue(CounterKind::kVirtual, Ticks{1'000'000}, now);
  ASSERT_TRUE(effect.has_value());
  EXPECT_EQ(*effect, CounterWriteEffect::kApplied);
  EXPECT_EQ(clock.VirtualCount(now), Ticks{1'000'000});
  EXPECT_EQ(clock.VirtualCount(HostCount{now.value + 10}), Ticks{1'000'010});
  EXPECT_EQ(clock.virtual_source(), OffsetSource::kCounterWrite);
  // The physical counter is untouched by a virtual write.
  EXPECT_EQ(clock.PhysicalCount(now), Ticks{now.value});
}

TEST(VmClock, LegacyPhysicalWriteMovesPhysicalOffset) {
  VmClock clock;
  clock.OnVcpuCreated(kT0);
  const auto effect = clock.WriteCounterValue(CounterKind::kPhysical, Ticks{99}, kT0);
  ASSERT_TRUE(effect.has_value());
  EXPECT_EQ(*effect, CounterWriteEffect::kApplied);
  EXPECT_EQ(clock.PhysicalCount(kT0), Ticks{99});
  EXPECT_EQ(clock.VirtualCount(kT0), Ticks{0});
  EXPECT_EQ(clock.physical_source(), OffsetSource::kCounterWrite);
}

TEST(VmClock, LegacyWritesSampleNowSoLastWriterWins) {
  // Restoring the same value per vCPU at different instants leaves the
  // offset of the last write: the skew the VM offset API removes.
  VmClock clock;
  ASSERT_TRUE(clock.WriteCounterValue(CounterKind::kVirtual, Ticks{100}, kT0).has_value());
  const HostCount later{kT0.value + 37};
  ASSERT_TRUE(clock.WriteCounterValue(CounterKind::kVirtual, Ticks{100}, later).has_value());
  EXPECT_EQ(clock.VirtualCount(later), Ticks{100});
  EXPECT_EQ(clock.VirtualCount(kT0), Ticks{63});
}

TEST(VmClock, LegacyWriteIntoThePastMovesTheCountBackwards) {
  VmClock clock;
  clock.OnVcpuCreated(kT0);
  const HostCount now{kT0.value + 1'000'000};
  ASSERT_EQ(clock.VirtualCount(now), Ticks{1'000'000});
  ASSERT_TRUE(clock.WriteCounterValue(CounterKind::kVirtual, Ticks{5}, now).has_value());
  EXPECT_EQ(clock.VirtualCount(now), Ticks{5});
}

TEST(VmClock, SetVmOffsetSetsBothOffsets) {
  VmClock clock;
  clock.OnVcpuCreated(kT0);
  ASSERT_TRUE(clock.SetVmOffset(Ticks{1'234}).has_value());
  EXPECT_TRUE(clock.vm_offset_set());
  EXPECT_EQ(clock.virtual_offset(), Ticks{1'234});
  EXPECT_EQ(clock.physical_offset(), Ticks{1'234});
  EXPECT_EQ(clock.VirtualCount(kT0), clock.PhysicalCount(kT0));
  EXPECT_EQ(clock.virtual_source(), OffsetSource::kVmOffset);
  EXPECT_EQ(clock.physical_source(), OffsetSource::kVmOffset);
}

TEST(VmClock, CounterWritesAfterVmOffsetSucceedAndChangeNothing) {
  VmClock clock;
  ASSERT_TRUE(clock.SetVmOffset(Ticks{1'000}).has_value());
  for (const CounterKind kind : {CounterKind::kVirtual, CounterKind::kPhysical}) {
    const auto effect = clock.WriteCounterValue(kind, Ticks{0}, kT0);
    ASSERT_TRUE(effect.has_value());
    EXPECT_EQ(*effect, CounterWriteEffect::kIgnored);
  }
  EXPECT_EQ(clock.virtual_offset(), Ticks{1'000});
  EXPECT_EQ(clock.physical_offset(), Ticks{1'000});
}

TEST(VmClock, VcpuCreationAfterVmOffsetChangesNothing) {
  VmClock clock;
  ASSERT_TRUE(clock.SetVmOffset(Ticks{1'000}).has_value());
  clock.OnVcpuCreated(kT0);
  EXPECT_EQ(clock.virtual_offset(), Ticks{1'000});
  EXPECT_EQ(clock.physical_offset(), Ticks{1'000});
  EXPECT_EQ(clock.virtual_source(), OffsetSource::kVmOffset);
}

TEST(VmClock, VmOffsetCanBeSetAgainOnAPausedVm) {
  VmClock clock;
  ASSERT_TRUE(clock.SetVmOffset(Ticks{1}).has_value());
  ASSERT_TRUE(clock.SetVmOffset(Ticks{2}).has_value());
  EXPECT_EQ(clock.virtual_offset(), Ticks{2});
  EXPECT_EQ(clock.physical_offset(), Ticks{2});
}

TEST(VmClock, WithoutVmOffsetApiSetVmOffsetIsRefusedAndLegacyRulesStay) {
  VmClock clock(HostTimerFeatures{.vm_offset_api = false});
  const auto result = clock.SetVmOffset(Ticks{5});
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(result.error().context.find("KVM_CAP_COUNTER_OFFSET"), std::string::npos);
  EXPECT_FALSE(clock.vm_offset_set());
  const auto effect = clock.WriteCounterValue(CounterKind::kVirtual, Ticks{10}, kT0);
  ASSERT_TRUE(effect.has_value());
  EXPECT_EQ(*effect, CounterWriteEffect::kApplied);
}

TEST(VmClock, WithoutPhysicalOffsetThePhysicalCounterIsTheHosts) {
  VmClock clock(HostTimerFeatures{.vm_offset_api = true, .physical_offset = false});
  const auto write = clock.WriteCounterValue(CounterKind::kPhysical, Ticks{1}, kT0);
  ASSERT_FALSE(write.has_value());
  EXPECT_EQ(write.error().code, ErrorCode::kUnsupported);
  ASSERT_TRUE(clock.SetVmOffset(Ticks{500}).has_value());
  EXPECT_EQ(clock.VirtualCount(kT0), Ticks{kT0.value - 500});
  EXPECT_EQ(clock.PhysicalCount(kT0), Ticks{kT0.value});
  EXPECT_EQ(clock.physical_mechanism(), PhysicalOffsetMechanism::kUnavailable);
  EXPECT_FALSE(clock.PhysicalAccessesTrap());
}

TEST(VmClock, PhysicalOffsetUsesCntpoffWithEcv) {
  VmClock clock(HostTimerFeatures{.ecv_cntpoff = true});
  ASSERT_TRUE(clock.SetVmOffset(Ticks{500}).has_value());
  EXPECT_EQ(clock.physical_mechanism(), PhysicalOffsetMechanism::kCntpoff);
  EXPECT_FALSE(clock.PhysicalAccessesTrap());
  EXPECT_EQ(clock.PhysicalCount(kT0), Ticks{kT0.value - 500});
}

TEST(VmClock, PhysicalOffsetWithoutEcvTrapsOnlyWhenNonZero) {
  VmClock clock(HostTimerFeatures{.ecv_cntpoff = false});
  EXPECT_EQ(clock.physical_mechanism(), PhysicalOffsetMechanism::kTrapAndEmulate);
  ASSERT_TRUE(clock.SetVmOffset(Ticks{0}).has_value());
  EXPECT_FALSE(clock.PhysicalAccessesTrap());
  ASSERT_TRUE(clock.SetVmOffset(Ticks{1}).has_value());
  EXPECT_TRUE(clock.PhysicalAccessesTrap());
  EXPECT_EQ(clock.PhysicalCount(kT0), Ticks{kT0.value - 1});
}

TEST(VmClock, NestedCntvoffComposesPerVcpu) {
  VmClock clock;
  ASSERT_TRUE(clock.SetVmOffset(Ticks{1'000}).has_value());
  const NestedOffsets vcpu0{.enabled = true, .cntvoff_el2 = Ticks{10}};
  const NestedOffsets vcpu1{.enabled = true, .cntvoff_el2 = Ticks{20}};
  EXPECT_EQ(clock.VirtualCount(kT0, vcpu0), Ticks{kT0.value - 1'000 - 10});
  EXPECT_EQ(clock.VirtualCount(kT0, vcpu1), Ticks{kT0.value - 1'000 - 20});
  // The physical view is shared.
  EXPECT_EQ(clock.CountsFor(kT0, vcpu0)[TimerId::kEl1Physical],
            clock.CountsFor(kT0, vcpu1)[TimerId::kEl1Physical]);
}

TEST(VmClock, NestedVcpuVirtualCounterIsBuiltOnThePhysicalOffset) {
  VmClock clock;
  clock.OnVcpuCreated(kT0);
  const NestedOffsets nested{.enabled = true, .cntvoff_el2 = Ticks{0}};
  // The virtual offset from vCPU creation does not apply to a nested vCPU.
  EXPECT_EQ(clock.VirtualCount(kT0, nested), Ticks{kT0.value});
  // A legacy CNTVCT write through a nested vCPU moves the physical offset.
  ASSERT_TRUE(clock.WriteCounterValue(CounterKind::kVirtual, Ticks{77}, kT0, /*nested_vcpu=*/true)
                  .has_value());
  EXPECT_EQ(clock.physical_offset(), Ticks{kT0.value - 77});
  EXPECT_EQ(clock.VirtualCount(kT0, nested), Ticks{77});
  EXPECT_EQ(clock.PhysicalCount(kT0), Ticks{77});
}

TEST(VmClock, El2TimersCompareAgainstThePhysicalView) {
  VmClock clock;
  ASSERT_TRUE(clock.SetVmOffset(Ticks{300}).has_value());
  const NestedOffsets nested{.enabled = true, .cntvoff_el2 = Ticks{50}};
  const TimerCounts counts = clock.CountsFor(kT0, nested);
  EXPECT_EQ(counts[TimerId::kEl1Virtual], Ticks{kT0.value - 350});
  EXPECT_EQ(counts[TimerId::kEl1Physical], Ticks{kT0.value - 300});
  EXPECT_EQ(counts[TimerId::kEl2Virtual], Ticks{kT0.value - 300});
  EXPECT_EQ(counts[TimerId::kEl2Physical], Ticks{kT0.value - 300});
}

TEST(VmClock, OffsetArithmeticIsModulo2To64) {
  VmClock clock;
  // An offset above the host count makes the guest count wrap, not clamp.
  ASSERT_TRUE(clock.SetVmOffset(Ticks{kT0.value + 1}).has_value());
  EXPECT_EQ(clock.VirtualCount(kT0), Ticks{~std::uint64_t{0}});
  EXPECT_EQ(clock.VirtualCount(HostCount{kT0.value + 1}), Ticks{0});
}

TEST(VmClock, FreezeRestoreAsOffsetResumesTheSavedCount) {
  // What a restore does with the VM offset: the saved guest count at pause
  // becomes the count at resume on a host whose counter is elsewhere.
  VmClock source;
  ASSERT_TRUE(source.SetVmOffset(Ticks{1'000}).has_value());
  const HostCount pause{kT0.value};
  const Ticks saved = source.VirtualCount(pause);
  VmClock destination;
  const HostCount resume{777};  // a host that booted later: smaller counter
  ASSERT_TRUE(destination.SetVmOffset(OffsetFor(resume, saved)).has_value());
  EXPECT_EQ(destination.VirtualCount(resume), saved);
  EXPECT_EQ(destination.PhysicalCount(resume), source.PhysicalCount(pause));
}

}  // namespace
}  // namespace vtime::arch
