#include "vtime/trace/merge.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "vtime/trace/chrome_json.h"

namespace vtime::trace {
namespace {

constexpr std::uint64_t kHz = 62'500'000;

// 16 ns a tick, as the lab's kernels publish their 62.5 MHz counter.
PerfClock Clock(std::uint64_t zero) { return PerfClock{zero, 33554432, 21, 0, (1ULL << 56) - 1}; }

class VectorStream final : public TraceStream {
 public:
  explicit VectorStream(std::vector<TraceRecord> records) : records_(std::move(records)) {}
  Result<bool> Next(TraceRecord* out) override {
    if (at_ == records_.size()) return false;
    *out = records_[at_++];
    return true;
  }

 private:
  std::vector<TraceRecord> records_;
  std::size_t at_ = 0;
};

class FailingStream final : public TraceStream {
 public:
  Result<bool> Next(TraceRecord*) override {
    return Fail(ErrorCode::kMalformed, "page 3 is damaged");
  }
};

TraceRecord At(std::uint64_t ns, std::uint32_t cpu, std::string_view name = "e") {
  return TraceRecord{ns, cpu, 1, name, ""};
}

// A guest of 2 vCPUs: runs on host "a" from a-count 1000 (guest 0), pauses at
// a-count 5000, moves to "b" where it resumes at b-count 90000 with its
// counter where it stopped (freeze).
Timeline Migrated() {
  Timeline t;
  t.vcpus = 2;
  t.hosts = {{"a", kHz}, {"b", kHz}};
  t.events = {Event{.kind = EventKind::kStart,
                    .host = 0,
                    .host_count = 1000,
                    .virtual_offset = 1000,
                    .physical_offset = 1000},
              Event{.kind = EventKind::kPause, .host = 0, .host_count = 5000},
              Event{.kind = EventKind::kStart,
                    .host = 1,
                    .host_count = 90000,
                    .virtual_offset = 90000 - 4000,
                    .physical_offset = 90000 - 4000}};
  return t;
}

std::vector<MergedRecord> RunAll(Merger& m, std::vector<MachineStats>* stats = nullptr) {
  std::vector<MergedRecord> out;
  auto r = m.Run(
      [&](const MergedRecord& rec) -> Result<void> {
        out.push_back(rec);
        return {};
      },
      nullptr);
  EXPECT_TRUE(r) << (r ? "" : r.error().Message());
  if (r && stats != nullptr) *stats = *r;
  return out;
}

TEST(Merger, GuestRecordsLandAtTheHostTimeTheOffsetsGive) {
  const PerfClock a = Clock(500), b = Clock(70), g = Clock(3);
  Merger m;
  const auto ha = m.AddHost("a", a, 0);
  const auto hb = m.AddHost("b", b, 1'000'000);
  auto guest = m.AddGuest("vm", g, Migrated());
  ASSERT_TRUE(guest);
  // Guest counts 10 (on a) and 4100 (on b, after the move).
  ASSERT_TRUE(m.AddStream(*guest, std::make_unique<VectorStream>(std::vector<TraceRecord>{
                                      At(g.TraceNs(10), 1), At(g.TraceNs(4100), 0)})));
  ASSERT_TRUE(m.AddStream(
      ha, std::make_unique<VectorStream>(std::vector<TraceRecord>{At(a.TraceNs(1011), 0)})));
  ASSERT_TRUE(m.AddStream(
      hb, std::make_unique<VectorStream>(std::vector<TraceRecord>{At(b.TraceNs(90099), 0)})));
  std::vector<MachineStats> stats;
  const auto out = RunAll(m, &stats);
  ASSERT_EQ(out.size(), 4u);
  // Exact: a's trace clock at a-count 1010, then its own record at 1011.
  EXPECT_EQ(out[0].machine, *guest);
  EXPECT_EQ(out[0].cpu, 1u);
  EXPECT_EQ(out[0].ts_ns, static_cast<std::int64_t>(a.TraceNs(1010)));
  EXPECT_EQ(out[1].machine, ha);
  EXPECT_EQ(out[1].ts_ns, static_cast<std::int64_t>(a.TraceNs(1011)));
  // On b, shifted onto a's axis: the guest's count 4100 is b-count 90100.
  EXPECT_EQ(out[2].machine, hb);
  EXPECT_EQ(out[2].ts_ns, static_cast<std::int64_t>(b.TraceNs(90099)) + 1'000'000);
  EXPECT_EQ(out[3].machine, *guest);
  EXPECT_EQ(out[3].ts_ns, static_cast<std::int64_t>(b.TraceNs(90100)) + 1'000'000);
  EXPECT_EQ(stats[*guest].placed, 2u);
  EXPECT_EQ(stats[*guest].uncovered, 0u);
}

TEST(Merger, EveryCoveredTickMapsExactly) {
  std::mt19937_64 rng(11);
  const PerfClock a = Clock(123456), b = Clock(99), g = Clock(41);
  Merger m;
  m.AddHost("a", a, 0);
  m.AddHost("b", b, -5000);
  const auto guest = *m.AddGuest("vm", g, Migrated());
  std::vector<std::uint64_t> ticks;
  for (int i = 0; i < 2000; ++i) ticks.push_back(rng() % 8000);
  std::sort(ticks.begin(), ticks.end());
  std::vector<TraceRecord> records;
  for (auto t : ticks) records.push_back(At(g.TraceNs(t), 0));
  ASSERT_TRUE(m.AddStream(guest, std::make_unique<VectorStream>(records)));
  const auto out = RunAll(m);
  ASSERT_EQ(out.size(), ticks.size());
  for (std::size_t i = 0; i < ticks.size(); ++i) {
    const std::int64_t want = ticks[i] < 4000
                                  ? static_cast<std::int64_t>(a.TraceNs(ticks[i] + 1000))
                                  : static_cast<std::int64_t>(b.TraceNs(ticks[i] + 86000)) - 5000;
    ASSERT_EQ(out[i].ts_ns, want) << "guest tick " << ticks[i];
  }
}

TEST(Merger, OutputIsInTimeOrderAcrossStreams) {
  std::mt19937_64 rng(5);
  const PerfClock a = Clock(0);
  Merger m;
  const auto h = m.AddHost("a", a, 0);
  for (int s = 0; s < 5; ++s) {
    std::vector<TraceRecord> r;
    std::uint64_t t = rng() % 100;
    for (int i = 0; i < 300; ++i) r.push_back(At(t += rng() % 50, static_cast<std::uint32_t>(s)));
    ASSERT_TRUE(m.AddStream(h, std::make_unique<VectorStream>(r)));
  }
  const auto out = RunAll(m);
  ASSERT_EQ(out.size(), 1500u);
  for (std::size_t i = 1; i < out.size(); ++i) ASSERT_LE(out[i - 1].ts_ns, out[i].ts_ns);
}

TEST(Merger, CountsWhatTheTimelineDoesNotCoverWithTheReason) {
  const PerfClock a = Clock(0), g = Clock(0);
  Merger m;
  m.AddHost("a", a, 0);  // no samples of "b"
  const auto guest = *m.AddGuest("vm", g, Migrated());
  ASSERT_TRUE(m.AddStream(guest, std::make_unique<VectorStream>(std::vector<TraceRecord>{
                                     At(g.TraceNs(5), 0),         // on a: placed
                                     At(g.TraceNs(5), 7),         // no vCPU 7
                                     At(g.TraceNs(4500), 0)})));  // on b: no samples
  std::vector<MachineStats> stats;
  const auto out = RunAll(m, &stats);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(stats[guest].records, 3u);
  EXPECT_EQ(stats[guest].placed, 1u);
  EXPECT_EQ(stats[guest].uncovered, 2u);
  EXPECT_NE(stats[guest].first_uncovered.find("not a vCPU"), std::string::npos)
      << stats[guest].first_uncovered;
}

TEST(Merger, RefusesACountTwoStretchesGiveAndOneBeforeTheStart) {
  Timeline t;
  t.vcpus = 1;
  t.hosts = {{"a", kHz}};
  // Start at a-count 1000 (guest 100); at a-count 2000 (guest 1100) a
  // counter write moves the guest back to 500: guest counts 500..1099 are
  // given twice, and those below 100 never.
  t.events = {Event{.kind = EventKind::kStart,
                    .host = 0,
                    .host_count = 1000,
                    .virtual_offset = 900,
                    .physical_offset = 900},
              Event{.kind = EventKind::kOffsets,
                    .host = 0,
                    .host_count = 2000,
                    .virtual_offset = 1500,
                    .physical_offset = 1000}};
  const PerfClock a = Clock(0), g = Clock(1'000'000);
  for (std::uint64_t tick : {700u, 50u}) {
    Merger m;
    m.AddHost("a", a, 0);
    const auto guest = *m.AddGuest("vm", g, t);
    ASSERT_TRUE(m.AddStream(
        guest, std::make_unique<VectorStream>(std::vector<TraceRecord>{At(g.TraceNs(tick), 0)})));
    std::vector<MachineStats> stats;
    EXPECT_TRUE(RunAll(m, &stats).empty()) << tick;
    EXPECT_EQ(stats[guest].uncovered, 1u) << tick;
  }
  // A timestamp before the guest's clock's zero cannot be a tick at all.
  Merger m;
  m.AddHost("a", a, 0);
  const auto guest = *m.AddGuest("vm", g, t);
  ASSERT_TRUE(
      m.AddStream(guest, std::make_unique<VectorStream>(std::vector<TraceRecord>{At(999, 0)})));
  std::vector<MachineStats> stats;
  EXPECT_TRUE(RunAll(m, &stats).empty());
  EXPECT_NE(stats[guest].first_uncovered.find("before the perf clock's zero"), std::string::npos)
      << stats[guest].first_uncovered;
}

TEST(Merger, AStreamThatFailsFailsTheMerge) {
  Merger m;
  const auto h = m.AddHost("a", Clock(0), 0);
  ASSERT_TRUE(m.AddStream(h, std::make_unique<FailingStream>()));
  auto r = m.Run([](const MergedRecord&) -> Result<void> { return {}; }, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().context.find("page 3"), std::string::npos);
  EXPECT_FALSE(m.AddStream(9, std::make_unique<FailingStream>()));
}

TEST(Merger, RefusesABadGuest) {
  Merger m;
  Timeline bad = Migrated();
  bad.events.erase(bad.events.begin());  // starts with a pause
  EXPECT_FALSE(m.AddGuest("vm", Clock(0), bad));
  EXPECT_FALSE(m.AddGuest("vm", PerfClock{}, Migrated()));  // no multiplier
}

TEST(FtraceText, ReadsTheTracefsAndTraceCmdForms) {
  auto r = ParseFtraceLine(
      "          <idle>-0       [001] d..2.  1234.567890: sched_switch: prev_comm=swapper");
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->cpu, 1u);
  EXPECT_EQ((*r)->pid, 0);
  EXPECT_EQ((*r)->ts_ns, 1234'567'890'000u);
  EXPECT_EQ((*r)->name, "sched_switch");
  EXPECT_EQ((*r)->info, "prev_comm=swapper");
  // A task name with spaces and dashes, no flags, nanoseconds.
  r = ParseFtraceLine(" my task-name-42 [003] 5.000000123: tracing_mark_write: vtime-mark 1 77");
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->pid, 42);
  EXPECT_EQ((*r)->cpu, 3u);
  EXPECT_EQ((*r)->ts_ns, 5'000'000'123u);
  EXPECT_EQ((*r)->info, "vtime-mark 1 77");
  for (const char* skip :
       {"", "# tracer: nop", "   #  | |", "CPU:2 [LOST 17 EVENTS]", "CPU 1 is empty", "cpus=2"}) {
    auto s = ParseFtraceLine(skip);
    ASSERT_TRUE(s) << skip;
    EXPECT_FALSE(*s) << skip;
  }
}

TEST(FtraceText, RefusesWhatIsNotATraceLine) {
  for (const char* bad :
       {"hello world", "a-1 [000] 12: x: y", "a-1 [000] 1.0000000001: x: y",
        "a-x [000] 1.000001: x: y", "a-1 [000] 1.000001:", "a-1 [99999999999] 1.000001: x: y",
        "a-1 [000] 99999999999999999999.000001: x: y"}) {
    auto r = ParseFtraceLine(bad);
    EXPECT_FALSE(r) << bad;
  }
}

// The structure the trace event format asks of each event, as the
// Perfetto UI's JSON importer reads it.
void CheckTraceEventFormat(const nlohmann::json& doc) {
  ASSERT_TRUE(doc.is_object());
  ASSERT_TRUE(doc.contains("traceEvents"));
  ASSERT_TRUE(doc["traceEvents"].is_array());
  for (const auto& e : doc["traceEvents"]) {
    ASSERT_TRUE(e.is_object());
    ASSERT_TRUE(e["ph"].is_string());
    ASSERT_TRUE(e["name"].is_string());
    ASSERT_TRUE(e["pid"].is_number_integer());
    ASSERT_TRUE(e["tid"].is_number_integer());
    const std::string ph = e["ph"];
    if (ph == "M") {
      ASSERT_TRUE(e["args"].is_object());
      const std::string n = e["name"];
      if (n == "process_name" || n == "thread_name") {
        ASSERT_TRUE(e["args"]["name"].is_string());
      }
    } else {
      ASSERT_EQ(ph, "i");
      ASSERT_TRUE(e["ts"].is_number());
      ASSERT_EQ(e["s"], "t");
      ASSERT_TRUE(e["cat"].is_string());
    }
  }
}

TEST(ChromeJson, WritesValidEventsWhateverTheText) {
  std::string text;
  ChromeJsonWriter w(
      [&](std::string_view s) -> Result<void> {
        text += s;
        return {};
      },
      4096);  // spills many times
  ASSERT_TRUE(w.Process(1, "host \"a\"\\", 0));
  ASSERT_TRUE(w.Thread(1, 10000, "CPU 0", 0));
  const std::string nasty =
      std::string("tab\there nul") + '\0' + "\x01 bad\xff\xc3(utf8 ok:\xc3\xa9";
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(w.Instant(1, 10000, 1'000'000'123 + i, "ev", "host", nasty, -i));
  }
  ASSERT_TRUE(w.Instant(1, 10000, -1'500, "neg", "host", "", 0));
  ASSERT_TRUE(w.Finish());
  EXPECT_FALSE(w.Instant(1, 1, 0, "late", "", "", 0));
  const auto doc = nlohmann::json::parse(text);  // throws on invalid JSON or UTF-8
  CheckTraceEventFormat(doc);
  const auto& ev = doc["traceEvents"];
  ASSERT_EQ(ev.size(), 4u + 501u);
  EXPECT_EQ(ev[0]["args"]["name"], "host \"a\"\\");
  EXPECT_DOUBLE_EQ(ev[4]["ts"].get<double>(), 1000000.123);
  EXPECT_EQ(
      ev[4]["args"]["info"].get<std::string>(),
      std::string("tab\there nul") + '\0' + "\x01 bad\xef\xbf\xbd\xef\xbf\xbd(utf8 ok:\xc3\xa9");
  EXPECT_EQ(ev[4]["args"]["task"], 0);
  EXPECT_DOUBLE_EQ(ev.back()["ts"].get<double>(), -1.5);
}

TEST(ChromeJson, MicrosecondsKeepTheNanoseconds) {
  std::string s;
  AppendMicros(s, 0);
  s += ' ';
  AppendMicros(s, 1'234'567);
  s += ' ';
  AppendMicros(s, -7);
  s += ' ';
  AppendMicros(s, INT64_MIN);
  EXPECT_EQ(s, "0.000 1234.567 -0.007 -9223372036854775.808");
}

TEST(ChromeJson, ASinkThatFailsIsReported) {
  ChromeJsonWriter w(
      [](std::string_view) -> Result<void> { return Fail(ErrorCode::kSystem, "disk full"); });
  auto r = w.Finish();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().context, "disk full");
}

}  // namespace
}  // namespace vtime::trace
