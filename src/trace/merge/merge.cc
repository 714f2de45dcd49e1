#include "vtime/trace/merge.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <string>
#include <utility>

namespace vtime::trace {

namespace {

constexpr std::uint32_t kNoHost = std::numeric_limits<std::uint32_t>::max();

}  // namespace

std::uint32_t Merger::AddHost(std::string name, const PerfClock& clock, std::int64_t shift_ns) {
  Machine m;
  m.name = std::move(name);
  m.clock = clock;
  m.shift_ns = shift_ns;
  machines_.push_back(std::move(m));
  return static_cast<std::uint32_t>(machines_.size() - 1);
}

Result<std::uint32_t> Merger::AddGuest(std::string name, const PerfClock& clock,
                                       const Timeline& timeline) {
  if (auto v = clock.Validate(); !v) {
    return Fail(v.error().code, "guest " + name + ": " + v.error().context);
  }
  auto index = TimelineIndex::Build(timeline);
  if (!index) return Fail(index.error().code, "guest " + name + ": " + index.error().context);
  Machine m;
  m.name = std::move(name);
  m.guest = true;
  m.clock = clock;
  m.index = std::move(*index);
  // A guest's hosts are the hosts added so far that bear their names; a
  // host of the timeline with no trace and no samples stays unknown, and
  // the records of the guest's time there are counted as not covered.
  for (const auto& h : timeline.hosts) {
    std::uint32_t found = kNoHost;
    for (std::uint32_t i = 0; i < machines_.size(); ++i) {
      if (!machines_[i].guest && machines_[i].name == h.name) found = i;
    }
    m.host_of.push_back(found);
    m.timeline_hosts.push_back(h.name);
  }
  machines_.push_back(std::move(m));
  return static_cast<std::uint32_t>(machines_.size() - 1);
}

Result<void> Merger::AddStream(std::uint32_t machine, std::unique_ptr<TraceStream> stream) {
  if (machine >= machines_.size()) {
    return Fail(ErrorCode::kInvalidArgument, "no machine " + std::to_string(machine));
  }
  Source s;
  s.machine = machine;
  s.stream = std::move(stream);
  sources_.push_back(std::move(s));
  return {};
}

Result<bool> Merger::Advance(Source& s, MachineStats& stats) {
  const Machine& m = machines_[s.machine];
  TraceRecord r;
  for (;;) {
    auto more = s.stream->Next(&r);
    if (!more) return tl::unexpected(more.error());
    if (!*more) return false;
    ++stats.records;
    // The reason is spelled out for the first record not covered only: a
    // trace that starts long before the guest's timeline would otherwise
    // build a message per record.
    auto uncovered = [&](auto&& why) {
      if (stats.uncovered++ == 0) {
        stats.first_uncovered = "record " + std::to_string(stats.records) + " (CPU " +
                                std::to_string(r.cpu) + ", " + std::to_string(r.ts_ns) +
                                " ns): " + why();
      }
    };
    constexpr auto kMaxNs = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    std::int64_t at = 0;
    if (!m.guest) {
      if (r.ts_ns > kMaxNs) {
        uncovered([] { return std::string("a timestamp past 2^63 ns"); });
        continue;
      }
      at = static_cast<std::int64_t>(r.ts_ns) + m.shift_ns;
    } else {
      auto ticks = m.clock.Ticks(r.ts_ns);
      if (!ticks) {
        uncovered([&] { return ticks.error().context; });
        continue;
      }
      // Cursors exist for the vCPUs the timeline has, made on first use (a
      // trace's CPU number cannot size an allocation beyond them).
      if (r.cpu >= s.cursors.size() || !s.cursors[r.cpu]) {
        auto stream = m.index->Stream(r.cpu, GuestCounter::kVirtual);
        if (!stream) {
          uncovered([&] {
            return "CPU " + std::to_string(r.cpu) + " is not a vCPU of the timeline's guest";
          });
          continue;
        }
        if (r.cpu >= s.cursors.size()) s.cursors.resize(std::size_t{r.cpu} + 1);
        s.cursors[r.cpu] = *stream;
      }
      const auto p = s.cursors[r.cpu]->Map(*ticks);
      if (!p) {
        uncovered(
            [&] { return m.index->ToHost(r.cpu, GuestCounter::kVirtual, *ticks).error().context; });
        continue;
      }
      if (m.host_of[p->host] == kNoHost) {
        uncovered([&] {
          return "the guest ran on host '" + m.timeline_hosts[p->host] +
                 "' then, and no clock samples of that host were given";
        });
        continue;
      }
      const Machine& h = machines_[m.host_of[p->host]];
      const std::uint64_t ns = h.clock.TraceNs(p->count);
      if (ns > kMaxNs) {
        uncovered([] { return std::string("the host's trace clock there is past 2^63 ns"); });
        continue;
      }
      at = static_cast<std::int64_t>(ns) + h.shift_ns;
    }
    ++stats.placed;
    s.head = MergedRecord{at, s.machine, r.cpu, r.pid, r.name, r.info};
    return true;
  }
}

Result<std::vector<MachineStats>> Merger::Run(
    const std::function<Result<void>(const MergedRecord&)>& emit,
    const std::function<void(std::uint64_t, double)>& progress, std::uint64_t progress_every) {
  std::vector<MachineStats> stats(machines_.size());
  for (std::size_t i = 0; i < machines_.size(); ++i) {
    stats[i].name = machines_[i].name;
    stats[i].guest = machines_[i].guest;
  }
  // Earliest head first; equal times keep the order the streams were added.
  auto later = [this](std::size_t a, std::size_t b) {
    const auto& x = sources_[a].head;
    const auto& y = sources_[b].head;
    return x.ts_ns != y.ts_ns ? x.ts_ns > y.ts_ns : a > b;
  };
  std::vector<std::size_t> heap;
  std::uint64_t read = 0, next_report = progress_every;
  auto report = [&] {
    read = 0;
    for (const auto& st : stats) read += st.records;
    if (read < next_report || !progress) return;
    next_report = read + progress_every;
    double done = 0;
    int known = 0;
    for (const auto& s : sources_) {
      if (const double d = s.stream->Done(); d >= 0) {
        done += d;
        ++known;
      }
    }
    progress(read, known > 0 ? done / known : -1);
  };
  for (std::size_t i = 0; i < sources_.size(); ++i) {
    auto live = Advance(sources_[i], stats[sources_[i].machine]);
    if (!live) return tl::unexpected(live.error());
    if (*live) {
      heap.push_back(i);
      std::push_heap(heap.begin(), heap.end(), later);
    }
  }
  std::uint64_t since_report = 0;
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const std::size_t i = heap.back();
    if (auto e = emit(sources_[i].head); !e) return tl::unexpected(e.error());
    auto live = Advance(sources_[i], stats[sources_[i].machine]);
    if (!live) return tl::unexpected(live.error());
    if (*live) {
      std::push_heap(heap.begin(), heap.end(), later);
    } else {
      heap.pop_back();
    }
    if (++since_report == 65536) {
      since_report = 0;
      report();
    }
  }
  return stats;
}

}  // namespace vtime::trace
