#include "vtime/trace/plot.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vtime::trace {
namespace {

constexpr std::uint64_t kHz = 62'500'000;

std::size_t Count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// Whether the elements nest (each opened tag closed in order, none left
// open) and every '&' starts an entity: enough to catch a broken picture.
bool WellFormed(const std::string& s) {
  std::vector<std::string> open;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '&') {
      const auto semi = s.find(';', i);
      const std::string entity = s.substr(i, semi == std::string::npos ? 0 : semi - i + 1);
      if (entity != "&amp;" && entity != "&lt;" && entity != "&gt;" && entity != "&quot;" &&
          entity != "&apos;") {
        return false;
      }
    }
    if (s[i] != '<') continue;
    const auto end = s.find('>', i);
    if (end == std::string::npos) return false;
    const std::string tag = s.substr(i + 1, end - i - 1);
    i = end;
    if (tag.empty() || tag[0] == '?') continue;
    if (tag[0] == '/') {
      if (open.empty() || open.back() != tag.substr(1)) return false;
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(tag.substr(0, tag.find(' ')));
    }
  }
  return open.empty();
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
  EXPECT_TRUE(WellFormed(*svg));
  // The legend names what the picture holds, and only that.
  EXPECT_NE(svg->find(">VM offsets changed<"), std::string::npos);
  EXPECT_EQ(svg->find("CNTVOFF_EL2"), std::string::npos);
}

TEST(Plot, LabelsTheGuestAxisWithRoundTicks) {
  // The guest's counter runs from 0 to 2.75 s (the open last run drawn for
  // a quarter of the 3 s the guest ran before it): ticks every 0.5 s.
  auto svg = PlotSvg(Life(), PlotOptions{});
  ASSERT_TRUE(svg);
  EXPECT_EQ(Count(*svg, "class=\"tick\""), 6u);
  EXPECT_NE(svg->find(">0.0 s</text>"), std::string::npos);
  EXPECT_NE(svg->find(">0.5 s</text>"), std::string::npos);
  EXPECT_NE(svg->find(">2.5 s</text>"), std::string::npos);
  EXPECT_EQ(svg->find(">-0"), std::string::npos);
  // The host axis: where each stretch starts on its host's counter.
  EXPECT_NE(svg->find(">16 us</text>"), std::string::npos);  // count 1000
  EXPECT_NE(svg->find(">5.000 s</text>"), std::string::npos);
}

// vCPU 1 of a guest whose guest hypervisor sets CNTVOFF_EL2 on it: 2 s into
// the run it moves the (nested) guest's counter 0.5 s back.
Timeline Nested() {
  Timeline t;
  t.vcpus = 2;
  t.hosts = {{"a", kHz}};
  t.events = {Event{.kind = EventKind::kStart, .host = 0, .host_count = 0},
              Event{.kind = EventKind::kNestedOffset,
                    .host = 0,
                    .host_count = 2 * kHz,
                    .vcpu = 1,
                    .cntvoff = kHz / 2},
              Event{.kind = EventKind::kPause, .host = 0, .host_count = 4 * kHz}};
  return t;
}

TEST(Plot, MarksANestedOffsetOnTheVcpuItWasSetOn) {
  PlotOptions o;
  o.vcpu = 1;
  auto svg = PlotSvg(Nested(), o);
  ASSERT_TRUE(svg) << svg.error().Message();
  EXPECT_EQ(Count(*svg, "class=\"run\""), 2u);
  EXPECT_EQ(Count(*svg, "class=\"nested\""), 1u);
  EXPECT_EQ(Count(*svg, "class=\"offsets\""), 0u);
  EXPECT_NE(svg->find("CNTVOFF_EL2: guest -500 ms"), std::string::npos);
  EXPECT_NE(svg->find(">CNTVOFF_EL2 set (nested)<"), std::string::npos);
  EXPECT_EQ(Count(*svg, "class=\"pause\""), 0u);  // the pause ends the timeline
  EXPECT_TRUE(WellFormed(*svg));
  // vCPU 0's counter and the physical counter do not see it.
  auto other = PlotSvg(Nested(), PlotOptions{});
  ASSERT_TRUE(other);
  EXPECT_EQ(Count(*other, "class=\"run\""), 1u);
  EXPECT_EQ(Count(*other, "class=\"nested\""), 0u);
  o.counter = GuestCounter::kPhysical;
  auto physical = PlotSvg(Nested(), o);
  ASSERT_TRUE(physical);
  EXPECT_EQ(Count(*physical, "class=\"nested\""), 0u);
}

TEST(Plot, AChangeAtTheResumeCountIsNoStretch) {
  // The guest hypervisor's CNTVOFF_EL2 is set again at the count the guest
  // resumed at: nothing ran with the offset it replaced, so the step
  // across the pause is the whole change and no marker is drawn.
  Timeline t = Nested();
  t.events.push_back(Event{.kind = EventKind::kStart, .host = 0, .host_count = 6 * kHz});
  t.events.push_back(Event{.kind = EventKind::kNestedOffset,
                           .host = 0,
                           .host_count = 6 * kHz,
                           .vcpu = 1,
                           .cntvoff = kHz});
  PlotOptions o;
  o.vcpu = 1;
  auto svg = PlotSvg(t, o);
  ASSERT_TRUE(svg) << svg.error().Message();
  EXPECT_EQ(Count(*svg, "class=\"run\""), 3u);
  EXPECT_EQ(Count(*svg, "class=\"nested\""), 1u);  // the first one only
  EXPECT_NE(svg->find("paused 2 s"), std::string::npos);
  // Guest 3.5 s at the pause, 5 s at the resume.
  EXPECT_NE(svg->find("guest +1.5 s"), std::string::npos);
}

TEST(Plot, EscapesWhatXmlCannotHold) {
  Timeline t = Life();
  // A control character, bytes that are not UTF-8, a surrogate's encoding,
  // and UTF-8 that must survive.
  t.hosts[1].name = std::string("x\x01y\xff\xc3(\xed\xa0\x80 caf\xc3\xa9 \xe2\x86\x92");
  auto svg = PlotSvg(t, PlotOptions{});
  ASSERT_TRUE(svg);
  // (Split where "??(" would be a trigraph.)
  EXPECT_NE(svg->find("on x?y?"
                      "?(??? caf\xc3\xa9 \xe2\x86\x92<"),
            std::string::npos);
  EXPECT_EQ(svg->find('\x01'), std::string::npos);
  EXPECT_EQ(svg->find('\xff'), std::string::npos);
  EXPECT_TRUE(WellFormed(*svg));
}

TEST(Plot, TheWellFormedCheckCanFail) {
  auto svg = PlotSvg(Life(), PlotOptions{});
  ASSERT_TRUE(svg);
  EXPECT_FALSE(WellFormed(svg->substr(0, svg->size() / 2)));
  EXPECT_FALSE(WellFormed("<svg><text>a & b</text></svg>"));
  EXPECT_FALSE(WellFormed("<svg><text></svg></text>"));
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
  auto r = PlotSvg(Life(), o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOutOfRange);
  EXPECT_NE(r.error().context.find("vCPU 2 of a 2-vCPU guest"), std::string::npos);
  o = PlotOptions{};
  o.width = 100;
  EXPECT_FALSE(PlotSvg(Life(), o));
  o = PlotOptions{};
  o.height = 9000;
  EXPECT_FALSE(PlotSvg(Life(), o));
  Timeline bad = Life();
  bad.events.erase(bad.events.begin());
  r = PlotSvg(bad, PlotOptions{});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().context.find("the first event must start the guest"), std::string::npos);
  bad = Life();
  bad.hosts[1].counter_frequency_hz = 0;
  EXPECT_FALSE(PlotSvg(bad, PlotOptions{}));
  bad = Life();
  bad.events.back().host = 7;  // no such host
  EXPECT_FALSE(PlotSvg(bad, PlotOptions{}));
}

}  // namespace
}  // namespace vtime::trace
