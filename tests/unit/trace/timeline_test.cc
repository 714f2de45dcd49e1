#include "vtime/trace/timeline.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vtime/wire.h"

namespace vtime::trace {
namespace {

constexpr auto kV = GuestCounter::kVirtual;
constexpr auto kP = GuestCounter::kPhysical;

Event Start(std::uint32_t host, std::uint64_t count, std::uint64_t voff, std::uint64_t poff) {
  return Event{EventKind::kStart, host, count, voff, poff, 0, 0};
}
Event Offsets(std::uint32_t host, std::uint64_t count, std::uint64_t voff, std::uint64_t poff) {
  return Event{EventKind::kOffsets, host, count, voff, poff, 0, 0};
}
Event Pause(std::uint32_t host, std::uint64_t count) {
  return Event{EventKind::kPause, host, count, 0, 0, 0, 0};
}
Event Nested(std::uint32_t host, std::uint64_t count, std::uint32_t vcpu, std::uint64_t cntvoff) {
  return Event{EventKind::kNestedOffset, host, count, 0, 0, vcpu, cntvoff};
}

// The offset that puts guest count `guest` at host count `host` (modulo 2^64).
constexpr std::uint64_t Off(std::uint64_t host, std::uint64_t guest) { return host - guest; }

Timeline TwoHosts() {
  Timeline t;
  t.vcpus = 2;
  t.hosts = {Host{"a", 62'500'000}, Host{"b", 62'500'000}};
  return t;
}

// A guest that ran on A from count 1000 (offset 100: guest counts from 900),
// paused at A's 11000 (guest 10900), and resumed under freeze on B, whose
// counter was at 500: B's offset puts guest 10900 at B's 500.
Timeline Frozen() {
  Timeline t = TwoHosts();
  t.events = {Start(0, 1000, 100, 100), Pause(0, 11000), Start(1, 500, Off(500, 10900), Off(500, 10900))};
  return t;
}

TEST(Timeline, MapsAGuestCountToTheHostCountItWasReadAt) {
  const Timeline t = Frozen();
  ASSERT_TRUE(t.Validate().has_value()) << t.Validate().error().Message();
  EXPECT_EQ(t.ToHost(0, kV, 900), (HostPoint{0, 1000}));
  EXPECT_EQ(t.ToHost(1, kV, 10899), (HostPoint{0, 10999}));
  // Frozen: the next count the guest reads is on B, where it resumed.
  EXPECT_EQ(t.ToHost(0, kV, 10900), (HostPoint{1, 500}));
  // The last run has no end: later counts are on B.
  EXPECT_EQ(t.ToHost(0, kP, 1'000'000), (HostPoint{1, 1'000'000u - 10900u + 500u}));
}

TEST(Timeline, HostToGuestAndBackAgreeEverywhereTheGuestRan) {
  const Timeline t = Frozen();
  for (std::uint64_t g = 900; g < 30'000; g += 97) {
    auto h = t.ToHost(1, kV, g);
    ASSERT_TRUE(h.has_value()) << h.error().Message();
    auto back = t.ToGuest(1, kV, *h);
    ASSERT_TRUE(back.has_value()) << back.error().Message();
    EXPECT_EQ(*back, g);
  }
}

TEST(Timeline, RefusesACountFromBeforeTheGuestStarted) {
  auto h = Frozen().ToHost(0, kV, 899);
  ASSERT_FALSE(h.has_value());
  EXPECT_EQ(h.error().code, ErrorCode::kOutOfRange);
  EXPECT_NE(h.error().context.find("in no run"), std::string::npos) << h.error().context;
}

TEST(Timeline, UnderWallclockTheTimeAwayIsNotCovered) {
  Timeline t = TwoHosts();
  // Away 5000 ticks: B's offset puts guest 10900 + 5000 at B's 500.
  t.events = {Start(0, 1000, 100, 100), Pause(0, 11000), Start(1, 500, Off(500, 15900), Off(500, 15900))};
  ASSERT_TRUE(t.Validate().has_value());
  EXPECT_EQ(t.ToHost(0, kV, 10899), (HostPoint{0, 10999}));
  EXPECT_FALSE(t.ToHost(0, kV, 10900).has_value());
  EXPECT_FALSE(t.ToHost(0, kV, 15899).has_value());
  EXPECT_EQ(t.ToHost(0, kV, 15900), (HostPoint{1, 500}));
}

TEST(Timeline, TheHostPointsOfAPauseAreNotTheGuests) {
  const Timeline t = Frozen();
  auto g = t.ToGuest(0, kV, HostPoint{0, 11000});
  ASSERT_FALSE(g.has_value());
  EXPECT_NE(g.error().context.find("not running"), std::string::npos);
  EXPECT_FALSE(t.ToGuest(0, kV, HostPoint{1, 499}).has_value());
  EXPECT_EQ(t.ToGuest(0, kV, HostPoint{0, 10999}), 10899u);
}

TEST(Timeline, AnOffsetChangeWhileRunningStartsANewStretch) {
  Timeline t = TwoHosts();
  // At A's 5000 the VMM moves the guest's virtual time 1000 ahead (a
  // legacy counter write): the guest never reads 4900..5899.
  t.events = {Start(0, 1000, 100, 100), Offsets(0, 5000, Off(100, 1000), 100)};
  EXPECT_EQ(t.ToHost(0, kV, 4899), (HostPoint{0, 4999}));
  EXPECT_FALSE(t.ToHost(0, kV, 5000).has_value());
  EXPECT_EQ(t.ToHost(0, kV, 5900), (HostPoint{0, 5000}));
  // The physical offset did not change: one stretch.
  EXPECT_EQ(t.ToHost(0, kP, 5000), (HostPoint{0, 5100}));
}

TEST(Timeline, RefusesACountTheGuestReadTwice) {
  Timeline t = TwoHosts();
  // Time moved back by 1000 at A's 5000: guest counts 3900..4899 were read
  // before and again after.
  t.events = {Start(0, 1000, 100, 100), Offsets(0, 5000, 1100, 100)};
  auto h = t.ToHost(0, kV, 4000);
  ASSERT_FALSE(h.has_value());
  EXPECT_EQ(h.error().code, ErrorCode::kBadState);
  EXPECT_NE(h.error().context.find("two stretches"), std::string::npos) << h.error().context;
  EXPECT_EQ(t.ToHost(0, kV, 4900), (HostPoint{0, 6000}));
}

TEST(Timeline, ANestedOffsetMovesOnlyThatVcpusVirtualCounter) {
  Timeline t = TwoHosts();
  t.events = {Start(0, 1000, 100, 100), Nested(0, 2000, 1, 300), Pause(0, 9000),
              Start(1, 100, Off(100, 8900), Off(100, 8900))};
  ASSERT_TRUE(t.Validate().has_value()) << t.Validate().error().Message();
  EXPECT_EQ(t.ToHost(0, kV, 2500), (HostPoint{0, 2600}));
  EXPECT_EQ(t.ToHost(1, kV, 1500), (HostPoint{0, 1600}));
  // vCPU 1 after its guest hypervisor set CNTVOFF_EL2 = 300.
  EXPECT_EQ(t.ToHost(1, kV, 2500), (HostPoint{0, 2900}));
  EXPECT_EQ(t.ToHost(1, kP, 2500), (HostPoint{0, 2600}));
  // CNTVOFF_EL2 is vCPU state: it moves with the guest to B.
  EXPECT_EQ(t.ToGuest(1, kV, HostPoint{1, 100}), 8900u - 300u);
  EXPECT_EQ(t.ToGuest(0, kV, HostPoint{1, 100}), 8900u);
}

TEST(Timeline, ValidateSaysWhichEventBreaksWhichRule) {
  struct Case {
    std::vector<Event> events;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{}, "first event must start"},
      {{Pause(0, 5)}, "first event must start"},
      {{Start(0, 10, 0, 0), Start(1, 10, 0, 0)}, "running already"},
      {{Start(0, 10, 0, 0), Pause(0, 20), Offsets(0, 30, 0, 0)}, "paused"},
      {{Start(0, 10, 0, 0), Offsets(1, 30, 0, 0)}, "runs on host 0"},
      {{Start(0, 10, 0, 0), Pause(0, 5)}, "already at 10"},
      {{Start(0, 10, 0, 0), Pause(0, 20), Start(0, 15, 0, 0)}, "already at 20"},
      {{Start(2, 10, 0, 0)}, "2 host(s)"},
      {{Start(0, 10, 0, 0), Nested(0, 20, 2, 0)}, "vCPU 2 of 2"},
      {{Start(0, 10, 0, 0), Event{static_cast<EventKind>(9), 0, 20, 0, 0, 0, 0}}, "no such event"},
  };
  for (const Case& c : cases) {
    Timeline t = TwoHosts();
    t.events = c.events;
    auto v = t.Validate();
    ASSERT_FALSE(v.has_value()) << c.says;
    EXPECT_NE(v.error().context.find(c.says), std::string::npos) << v.error().context;
    EXPECT_FALSE(t.ToHost(0, kV, 0).has_value());
  }
  Timeline t = Frozen();
  t.hosts[1].counter_frequency_hz = 0;
  EXPECT_FALSE(t.Validate().has_value());
}

TEST(Timeline, EncodesAndDecodesExactly) {
  Timeline t = TwoHosts();
  t.events = {Start(0, 1000, 100, 100), Nested(0, 2000, 1, 300), Offsets(0, 3000, 7, 8),
              Pause(0, 9000), Start(1, 100, Off(100, 8900), Off(100, 8900))};
  const std::vector<std::uint8_t> bytes = t.Encode();
  auto back = Timeline::Decode(bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(*back, t);
}

TEST(Timeline, DecodeRefusesDamagedTruncatedAndImpossibleFiles) {
  const std::vector<std::uint8_t> good = Frozen().Encode();
  std::vector<std::uint8_t> flipped = good;
  flipped[30] ^= 1;
  EXPECT_FALSE(Timeline::Decode(flipped).has_value());
  EXPECT_FALSE(Timeline::Decode(std::span(good).first(good.size() - 1)).has_value());

  // Well framed, but claiming more hosts than the bytes could hold: refused
  // before anything is allocated for them.
  wire::Writer w;
  w.U32(1);
  w.U32(0xffff'ffff);
  const std::vector<std::uint8_t> payload = w.Take();
  auto many = Timeline::Decode(
      wire::Frame({'V', 'T', 'T', 'L', 'I', 'N', 'E', 0}, kTimelineFormatVersion, payload));
  ASSERT_FALSE(many.has_value());
  EXPECT_NE(many.error().context.find("do not fit"), std::string::npos) << many.error().context;

  // An event count that disagrees with the bytes.
  wire::Writer e;
  e.U32(1);
  e.U32(1);
  e.U64(1);
  e.U8('a');
  e.U64(62'500'000);
  e.U64(1ull << 60);
  const std::vector<std::uint8_t> p2 = e.Take();
  auto events = Timeline::Decode(
      wire::Frame({'V', 'T', 'T', 'L', 'I', 'N', 'E', 0}, kTimelineFormatVersion, p2));
  ASSERT_FALSE(events.has_value());
  EXPECT_NE(events.error().context.find("events, but"), std::string::npos);

  // A file that decodes but breaks the rules.
  Timeline bad = TwoHosts();
  bad.events = {Pause(0, 1)};
  auto invalid = Timeline::Decode(bad.Encode());
  ASSERT_FALSE(invalid.has_value());
  EXPECT_NE(invalid.error().context.find("first event"), std::string::npos);
}

}  // namespace
}  // namespace vtime::trace
