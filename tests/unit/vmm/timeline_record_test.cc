#include "vmm/timeline_record.h"

#include <gtest/gtest.h>

namespace vtime::vmm {
namespace {

using trace::EventKind;
using trace::GuestCounter;

constexpr std::uint64_t kHz = 62'500'000;

TEST(TimelineRecord, AFirstOffsetStartsTheGuestAndAnotherChangesIt) {
  trace::Timeline t;
  t.vcpus = 2;
  const std::uint32_t a = JoinTimelineHost(t, "a", kHz, 100);
  RecordOffsets(t, a, 100, 100, 100);
  RecordOffsets(t, a, 150, 100, 100);  // the same offsets: nothing to say
  RecordOffsets(t, a, 200, 50, 100);
  ASSERT_EQ(t.events.size(), 2u);
  EXPECT_EQ(t.events[0].kind, EventKind::kStart);
  EXPECT_EQ(t.events[1].kind, EventKind::kOffsets);
  ASSERT_TRUE(t.Validate().has_value()) << t.Validate().error().Message();
  auto at = t.ToHost(1, GuestCounter::kVirtual, 160);  // 210 - 50
  ASSERT_TRUE(at.has_value()) << at.error().Message();
  EXPECT_EQ(at->count, 210u);
}

TEST(TimelineRecord, APauseThenOffsetsIsAStartOnTheHostItJoined) {
  trace::Timeline t;
  const std::uint32_t a = JoinTimelineHost(t, "a", kHz, 1000);
  RecordOffsets(t, a, 1000, 1000, 1000);
  RecordPause(t, a, 5000);
  // A restore on the same host later, under freeze: the guest resumes at
  // the count it paused at (4000), 3000 ticks later.
  EXPECT_EQ(JoinTimelineHost(t, "a", kHz, 8000), a);
  RecordOffsets(t, a, 8000, 4000, 4000);
  ASSERT_EQ(t.events.back().kind, EventKind::kStart);
  ASSERT_TRUE(t.Validate().has_value()) << t.Validate().error().Message();
  auto before = t.ToHost(0, GuestCounter::kVirtual, 3999);
  auto after = t.ToHost(0, GuestCounter::kVirtual, 4001);
  ASSERT_TRUE(before.has_value() && after.has_value());
  EXPECT_EQ(before->count, 4999u);
  EXPECT_EQ(after->count, 8001u);
}

TEST(TimelineRecord, ANestedOffsetIsRecordedOnceWhileTheGuestRunsAndMapsTheNestedCount) {
  trace::Timeline t;
  t.vcpus = 2;
  const std::uint32_t a = JoinTimelineHost(t, "a", kHz, 100);
  std::uint64_t seen = 0;
  // Seen before the guest starts: not placed (seen again later).
  EXPECT_FALSE(RecordNestedOffset(t, a, 1, 30, 90, seen));
  EXPECT_EQ(seen, 0u);
  RecordOffsets(t, a, 100, 100, 100);
  EXPECT_FALSE(RecordNestedOffset(t, a, 1, 0, 110, seen));  // CNTVOFF_EL2 still its reset 0
  EXPECT_TRUE(RecordNestedOffset(t, a, 1, 30, 120, seen));
  EXPECT_FALSE(RecordNestedOffset(t, a, 1, 30, 130, seen));  // unchanged: nothing
  EXPECT_EQ(seen, 30u);
  ASSERT_EQ(t.events.size(), 2u);
  EXPECT_EQ(t.events[1].kind, EventKind::kNestedOffset);
  EXPECT_EQ(t.events[1].vcpu, 1u);
  ASSERT_TRUE(t.Validate().has_value()) << t.Validate().error().Message();
  // vCPU 1's nested guest read 1000 - 100 - 30 at host count 1000; vCPU 0
  // has no nested offset.
  auto at = t.ToHost(1, GuestCounter::kVirtual, 870);
  ASSERT_TRUE(at.has_value()) << at.error().Message();
  EXPECT_EQ(at->count, 1000u);
  at = t.ToHost(0, GuestCounter::kVirtual, 900);
  ASSERT_TRUE(at.has_value()) << at.error().Message();
  EXPECT_EQ(at->count, 1000u);
  // A count given before the last event is placed at that event, never
  // behind it; a pause stops recording.
  std::uint64_t seen0 = 0;
  EXPECT_TRUE(RecordNestedOffset(t, a, 0, 7, 50, seen0));
  EXPECT_EQ(t.events.back().host_count, 120u);
  RecordPause(t, a, 200);
  EXPECT_FALSE(RecordNestedOffset(t, a, 0, 8, 210, seen0));
  EXPECT_EQ(seen0, 7u);
  ASSERT_TRUE(t.Validate().has_value()) << t.Validate().error().Message();
}

TEST(TimelineRecord, ACounterThatCannotBeTheNamedHostsIsANewHost) {
  trace::Timeline t;
  const std::uint32_t a = JoinTimelineHost(t, "lab", kHz, 1000);
  RecordOffsets(t, a, 1000, 1000, 1000);
  RecordPause(t, a, 9000);
  // Another machine of the same name whose counter is behind: not the same
  // counter, so a host of its own, under a name that says so.
  const std::uint32_t b = JoinTimelineHost(t, "lab", kHz, 500);
  EXPECT_NE(b, a);
  EXPECT_EQ(t.hosts[b].name, "lab #2");
  // And one with another frequency.
  const std::uint32_t c = JoinTimelineHost(t, "lab", 24'000'000, 20'000);
  EXPECT_EQ(t.hosts[c].name, "lab #3");
  // A new name is a new host.
  EXPECT_EQ(t.hosts[JoinTimelineHost(t, "b", kHz, 1)].name, "b");
  EXPECT_EQ(t.hosts.size(), 4u);
}

}  // namespace
}  // namespace vtime::vmm
