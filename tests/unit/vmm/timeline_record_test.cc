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
