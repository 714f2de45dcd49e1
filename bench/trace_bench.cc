// The map stage of a trace merge (seed 002, #11): a guest trace's
// timestamps (its trace clock, ns) to the host's trace clock, through the
// guest's perf conversion, the offset timeline and the host's conversion,
// one event at a time in trace order. Compared with the slow path
// (Timeline::ToHost, which walks the timeline on every call).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "vtime/trace/merge.h"
#include "vtime/trace/perf_clock.h"
#include "vtime/trace/timeline.h"

namespace {

using vtime::trace::Event;
using vtime::trace::EventKind;
using vtime::trace::GuestCounter;
using vtime::trace::PerfClock;
using vtime::trace::Timeline;
using vtime::trace::TimelineIndex;

// The lab's 62.5 MHz counter as Linux publishes it (16 ns a tick), a
// 56-bit short counter, different zeros on the two machines.
PerfClock Clock(std::uint64_t zero) { return PerfClock{zero, 33554432, 21, 0, (1ULL << 56) - 1}; }

// A guest that ran on host a, moved to b and back (ten pauses).
Timeline TenMoves() {
  Timeline t;
  t.vcpus = 2;
  t.hosts = {{"a", 62'500'000}, {"b", 62'500'000}};
  std::uint64_t guest = 0, count[2] = {1'000'000'000, 5'000'000'000};
  for (std::uint32_t run = 0; run < 11; ++run) {
    const std::uint32_t h = run % 2;
    t.events.push_back(Event{.kind = EventKind::kStart,
                             .host = h,
                             .host_count = count[h],
                             .virtual_offset = count[h] - guest,
                             .physical_offset = count[h] - guest});
    count[h] += 62'500'000ULL * 60;  // a minute on each
    guest += 62'500'000ULL * 60;
    t.events.push_back(Event{.kind = EventKind::kPause, .host = h, .host_count = count[h]});
    count[h] += 1'000'000;
  }
  return t;
}

// Guest timestamps in order across the whole life, a few ns apart.
std::vector<std::uint64_t> GuestTimes(const PerfClock& guest, std::size_t n) {
  std::vector<std::uint64_t> ns(n);
  const std::uint64_t span = 62'500'000ULL * 60 * 11 - 1;
  for (std::size_t i = 0; i < n; ++i) ns[i] = guest.TraceNs(span * i / n);
  return ns;
}

void BM_MapIndexed(benchmark::State& state) {
  const Timeline t = TenMoves();
  auto index = TimelineIndex::Build(t);
  const PerfClock guest = Clock(7), host[2] = {Clock(100), Clock(200)};
  const auto times = GuestTimes(guest, 1 << 16);
  for (auto _ : state) {
    auto cursor = index->Stream(0, GuestCounter::kVirtual);
    std::uint64_t sum = 0;
    for (std::uint64_t ns : times) {
      const auto ticks = guest.Ticks(ns);
      const auto at = cursor->Map(*ticks);
      sum += host[at->host].TraceNs(at->count);
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(times.size()));
}
BENCHMARK(BM_MapIndexed);

void BM_MapTimelineWalk(benchmark::State& state) {
  const Timeline t = TenMoves();
  const PerfClock guest = Clock(7), host[2] = {Clock(100), Clock(200)};
  const auto times = GuestTimes(guest, 1 << 10);
  for (auto _ : state) {
    std::uint64_t sum = 0;
    for (std::uint64_t ns : times) {
      const auto ticks = guest.Ticks(ns);
      const auto at = t.ToHost(0, GuestCounter::kVirtual, *ticks);
      sum += host[at->host].TraceNs(at->count);
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(times.size()));
}
BENCHMARK(BM_MapTimelineWalk);

// Records made on the fly at `step` ns apart (no file, no parse): what the
// merge stage costs on its own.
class SynthStream final : public vtime::trace::TraceStream {
 public:
  SynthStream(std::vector<std::uint64_t> times, std::uint32_t cpu)
      : times_(std::move(times)), cpu_(cpu) {}
  vtime::Result<bool> Next(vtime::trace::TraceRecord* out) override {
    if (at_ == times_.size()) return false;
    out->ts_ns = times_[at_++];
    out->cpu = cpu_;
    out->name = "sched_switch";
    return true;
  }

 private:
  std::vector<std::uint64_t> times_;
  std::size_t at_ = 0;
  std::uint32_t cpu_;
};

// The map-and-merge stage: two hosts' traces and a guest's two vCPUs, 2^18
// records each stream (2^20 in all), put on the first host's axis in time
// order and handed to a sink that only sums them (the JSON text is the
// writer's cost, measured end to end by scripts/bench --merge).
void BM_MapAndMerge(benchmark::State& state) {
  const Timeline t = TenMoves();
  const PerfClock guest = Clock(7), host[2] = {Clock(100), Clock(200)};
  const std::size_t per = 1 << 18;
  const auto guest_times = GuestTimes(guest, per);
  std::vector<std::uint64_t> host_times[2];
  for (int h = 0; h < 2; ++h) {
    host_times[h].resize(per);
    for (std::size_t i = 0; i < per; ++i) {
      host_times[h][i] = host[h].TraceNs(1'000'000'000 + 62'500'000ULL * 60 * 11 * i / per);
    }
  }
  std::uint64_t records = 0;
  for (auto _ : state) {
    state.PauseTiming();
    vtime::trace::Merger m;
    const auto a = m.AddHost("a", host[0], 0);
    const auto b = m.AddHost("b", host[1], 1'000'000);
    const auto g = *m.AddGuest("g", guest, t);
    (void)m.AddStream(a, std::make_unique<SynthStream>(host_times[0], 0));
    (void)m.AddStream(b, std::make_unique<SynthStream>(host_times[1], 0));
    (void)m.AddStream(g, std::make_unique<SynthStream>(guest_times, 0));
    (void)m.AddStream(g, std::make_unique<SynthStream>(guest_times, 1));
    state.ResumeTiming();
    std::int64_t sum = 0;
    auto stats = m.Run(
        [&](const vtime::trace::MergedRecord& r) -> vtime::Result<void> {
          sum += r.ts_ns;
          return {};
        },
        nullptr);
    benchmark::DoNotOptimize(sum);
    for (const auto& s : *stats) records += s.placed;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
}
BENCHMARK(BM_MapAndMerge)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
