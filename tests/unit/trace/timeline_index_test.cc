#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "vtime/trace/timeline.h"

namespace vtime::trace {
namespace {

constexpr std::uint64_t kHz = 62'500'000;

// A random valid life: runs on up to three hosts, offset changes (some of
// which send the guest's counter back), nested offsets, pauses; counts on
// each host only grow.
Timeline RandomTimeline(std::mt19937_64& rng) {
  Timeline t;
  t.vcpus = 1 + static_cast<std::uint32_t>(rng() % 3);
  const unsigned hosts = 1 + static_cast<unsigned>(rng() % 3);
  for (unsigned h = 0; h < hosts; ++h) t.hosts.push_back(Host{"h" + std::to_string(h), kHz});
  std::vector<std::uint64_t> now(hosts);
  for (auto& n : now) n = rng() % 1'000'000;
  std::uint32_t host = 0;
  auto step = [&] { now[host] += 1 + rng() % 5000; };
  auto offset = [&]() -> std::uint64_t {
    // Small offsets, negative ones (wrapping), and the occasional huge one.
    switch (rng() % 3) {
      case 0:
        return rng() % 4000;
      case 1:
        return static_cast<std::uint64_t>(-static_cast<std::int64_t>(rng() % 4000));
      default:
        return rng();
    }
  };
  const unsigned runs = 1 + static_cast<unsigned>(rng() % 4);
  for (unsigned r = 0; r < runs; ++r) {
    host = static_cast<std::uint32_t>(rng() % hosts);
    step();
    const std::uint64_t o = offset();
    t.events.push_back(Event{.kind = EventKind::kStart,
                             .host = host,
                             .host_count = now[host],
                             .virtual_offset = o,
                             .physical_offset = rng() % 2 ? o : offset()});
    const unsigned changes = static_cast<unsigned>(rng() % 4);
    for (unsigned c = 0; c < changes; ++c) {
      step();
      if (rng() % 2) {
        t.events.push_back(Event{.kind = EventKind::kOffsets,
                                 .host = host,
                                 .host_count = now[host],
                                 .virtual_offset = offset(),
                                 .physical_offset = offset()});
      } else {
        t.events.push_back(Event{.kind = EventKind::kNestedOffset,
                                 .host = host,
                                 .host_count = now[host],
                                 .vcpu = static_cast<std::uint32_t>(rng() % t.vcpus),
                                 .cntvoff = rng() % 3000});
      }
    }
    if (r + 1 < runs || rng() % 2) {
      step();
      t.events.push_back(Event{.kind = EventKind::kPause, .host = host, .host_count = now[host]});
    }
  }
  return t;
}

// Counts to ask about: every range's edges and their neighbours, and some
// anywhere.
std::vector<std::uint64_t> Probes(const TimelineIndex& index, const Timeline& t,
                                  std::mt19937_64& rng) {
  std::vector<std::uint64_t> probes;
  for (std::uint32_t v = 0; v < t.vcpus; ++v) {
    for (GuestCounter which : {GuestCounter::kVirtual, GuestCounter::kPhysical}) {
      for (const auto& r : index.RangesOf(v, which)) {
        for (std::uint64_t p : {r.first, r.last}) {
          probes.push_back(p - 1);
          probes.push_back(p);
          probes.push_back(p + 1);
        }
      }
    }
  }
  for (int i = 0; i < 20; ++i) probes.push_back(rng());
  return probes;
}

TEST(TimelineIndex, AnswersExactlyAsTheTimelineDoesOnRandomLives) {
  std::mt19937_64 rng(2026);
  std::size_t checked = 0, refused = 0;
  for (int round = 0; round < 100; ++round) {
    const Timeline t = RandomTimeline(rng);
    ASSERT_TRUE(t.Validate().has_value()) << t.Validate().error().Message();
    auto index = TimelineIndex::Build(t);
    ASSERT_TRUE(index.has_value()) << index.error().Message();
    const auto probes = Probes(*index, t, rng);
    for (std::uint32_t v = 0; v < t.vcpus; ++v) {
      for (GuestCounter which : {GuestCounter::kVirtual, GuestCounter::kPhysical}) {
        auto cursor = index->Stream(v, which);
        ASSERT_TRUE(cursor.has_value());
        for (std::uint64_t g : probes) {
          const auto want = t.ToHost(v, which, g);
          const auto got = index->ToHost(v, which, g);
          const auto streamed = cursor->Map(g);
          ASSERT_EQ(want.has_value(), got.has_value()) << "round " << round << " count " << g;
          ASSERT_EQ(want.has_value(), streamed.has_value()) << "round " << round << " count " << g;
          if (want) {
            EXPECT_EQ(*want, *got);
            EXPECT_EQ(*want, *streamed);
          } else {
            EXPECT_EQ(want.error().context, got.error().context);
            ++refused;
          }
          ++checked;
        }
      }
    }
  }
  // Both kinds of answer were exercised.
  EXPECT_GT(checked, 10'000u);
  EXPECT_GT(refused, 1'000u);
}

TEST(TimelineIndex, ACursorFollowsCountsInOrderAcrossAPauseAndACounterThatWentBack) {
  Timeline t;
  t.hosts = {Host{"a", kHz}, Host{"b", kHz}};
  t.events = {
      Event{.kind = EventKind::kStart, .host_count = 1000, .virtual_offset = 1000},
      // A legacy write sends the guest's counter back by 50 at host 1100.
      Event{.kind = EventKind::kOffsets, .host_count = 1100, .virtual_offset = 1050},
      Event{.kind = EventKind::kPause, .host_count = 2000},
      Event{.kind = EventKind::kStart,
            .host = 1,
            .host_count = 10,
            .virtual_offset = std::uint64_t{0} - 940},
  };
  auto index = TimelineIndex::Build(t);
  ASSERT_TRUE(index.has_value()) << index.error().Message();
  auto c = index->Stream(0, GuestCounter::kVirtual);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->Map(0), (HostPoint{0, 1000}));
  EXPECT_EQ(c->Map(49), (HostPoint{0, 1049}));
  EXPECT_EQ(c->Map(50), std::nullopt);  // 50..99: both before and after the write
  EXPECT_EQ(c->Map(99), std::nullopt);
  EXPECT_EQ(c->Map(100), (HostPoint{0, 1150}));
  EXPECT_EQ(c->Map(949), (HostPoint{0, 1999}));
  EXPECT_EQ(c->Map(950), (HostPoint{1, 10}));  // resumed on b where it paused
  EXPECT_EQ(c->Map(10'000), (HostPoint{1, 9060}));
  EXPECT_EQ(c->Map(20), (HostPoint{0, 1020}));  // and back, out of order
  auto refused = index->ToHost(0, GuestCounter::kVirtual, 60);
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().context.find("two stretches"), std::string::npos);
  EXPECT_FALSE(index->Stream(1, GuestCounter::kVirtual).has_value());
}

}  // namespace
}  // namespace vtime::trace
