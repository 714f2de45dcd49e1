#include "vtime/trace/plot.h"

#include <gtest/gtest.h>

#include <string>

namespace vtime::trace {
namespace {

constexpr std::uint64_t kHz = 62'500'000;

std::size_t Count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// On host a from count 1000 (guest 0) for 2 s, an offset change that moves
// the guest 1 s back, a pause of 3 s on a, a restart there with the
// guest's counter continuing (freeze), a pause, then a move to b.
Timeline Life() {
  Timeline t;
  t.vcpus = 2;
  t.hosts = {{"a<b&\"c\"", kHz}, {"b", kHz}};
  const std::uint64_t s = kHz;
  t.events = {Event{.kind = EventKind::kStart,
                    .host = 0,
                    .host_count = 1000,
                    .virtual_offset = 1000,
                    .physical_offset = 1000},
              Event{.kind = EventKind::kOffsets,
                    .host = 0,
                    .host_count = 1000 + s,
                    .virtual_offset = 1000 + s,
                    .physical_offset = 1000},
              Event{.kind = EventKind::kPause, .host = 0, .host_count = 1000 + 2 * s},
              Event{.kind = EventKind::kStart,
                    .host = 0,
                    .host_count = 1000 + 5 * s,
                    .virtual_offset = 1000 + 4 * s,
                    .physical_offset = 1000 + 2 * s},
              Event{.kind = EventKind::kPause, .host = 0, .host_count = 1000 + 6 * s},
              Event{.kind = EventKind::kStart,
                    .host = 1,
                    .host_count = 50,
                    .virtual_offset = 50 - 2 * s,
                    .physical_offset = 50 - 3 * s}};
  return t;
}

TEST(Plot, DrawsEachStretchPauseAndOffsetChange) {
  auto svg = PlotSvg(Life(), PlotOptions{});
  ASSERT_TRUE(svg) << svg.error().Message();
  EXPECT_EQ(svg->rfind("<?xml version=\"1.0\"", 0), 0u);
  EXPECT_NE(svg->find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg->find("viewBox=\"0 0 960 540\""), std::string::npos);
  EXPECT_EQ(Count(*svg, "class=\"run\""), 4u);  // two stretches on a, one more on a, one on b
  EXPECT_EQ(Count(*svg, "class=\"pause\""), 2u);
  EXPECT_EQ(Count(*svg, "class=\"offsets\""), 1u);
  EXPECT_NE(svg->find("paused 3 s"), std::string::npos);  // both ends on a
  EXPECT_NE(svg->find("moved to b"), std::string::npos);
  EXPECT_NE(svg->find("offsets: guest -1 s"), std::string::npos);
  EXPECT_NE(svg->find("guest +0 s"), std::string::npos);  // freeze: no step
  // The host's name, escaped for XML, never raw.
  EXPECT_NE(svg->find("on a&lt;b&amp;&quot;c&quot;"), std::string::npos);
  EXPECT_EQ(svg->find("a<b"), std::string::npos);
  EXPECT_EQ(svg->substr(svg->size() - 7), "</svg>\n");
}

TEST(Plot, ThePhysicalCounterHasItsOwnSteps) {
  PlotOptions o;
  o.counter = GuestCounter::kPhysical;
  auto svg = PlotSvg(Life(), o);
  ASSERT_TRUE(svg);
  EXPECT_NE(svg->find("physical (CNTPCT)"), std::string::npos);
  EXPECT_EQ(Count(*svg, "class=\"offsets\""), 0u);  // the change moved the virtual offset only
  EXPECT_NE(svg->find("guest +1 s"), std::string::npos);  // physical: 1 s on across the pause
}

TEST(Plot, IsDeterministic) {
  EXPECT_EQ(*PlotSvg(Life(), PlotOptions{}), *PlotSvg(Life(), PlotOptions{}));
}

TEST(Plot, Refuses) {
  PlotOptions o;
  o.vcpu = 2;
  EXPECT_FALSE(PlotSvg(Life(), o));
  o = PlotOptions{};
  o.width = 100;
  EXPECT_FALSE(PlotSvg(Life(), o));
  Timeline bad = Life();
  bad.events.erase(bad.events.begin());
  EXPECT_FALSE(PlotSvg(bad, PlotOptions{}));
}

}  // namespace
}  // namespace vtime::trace
