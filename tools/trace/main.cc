// vtime-trace: host and guest time on one timeline (seed 002). It reads the
// offset timeline vtvmm records (--timeline), maps single counter values
// through it, checks clock samples, and merges whole traces (merge_cmd.cc).
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>

#include "files.h"
#include "merge_cmd.h"
#include "plot_cmd.h"
#include "vtime/parse.h"
#include "vtime/trace/clock_sample.h"
#include "vtime/trace/timeline.h"

namespace {

using vtime::trace::EventKind;
using vtime::trace::GuestCounter;
using vtime::trace::Timeline;

constexpr const char* kHelp = R"(usage: vtime-trace timeline FILE
       vtime-trace samples FILE
       vtime-trace map FILE --vcpu N --virtual|--physical COUNT
       vtime-trace map FILE --vcpu N --virtual|--physical --at HOST:COUNT
       vtime-trace merge -o OUT.json --host samples=S,trace=T... --guest ... (merge --help)
       vtime-trace plot FILE -o OUT.svg [--vcpu N] [--physical] [--size WxH]

Host and guest time on one timeline: the offset timeline vtvmm records with
--timeline FILE says, for every stretch the guest ran, on which host and with
which offsets, so a guest's counter value and the host's counter value at
the same moment follow from each other exactly.

  timeline FILE   print the timeline: its hosts (name, counter frequency) and
                  each event (start, offsets, pause, nested offset) at the
                  host count where it happened
  map FILE ...    map one value. With COUNT: the host and host count at which
                  vCPU N read COUNT from its virtual (CNTVCT) or physical
                  (CNTPCT) counter; refused when the guest was not running
                  then, or when two stretches give it (its counter went
                  back). With --at HOST:COUNT: what vCPU N read then (HOST is
                  the host's index in the timeline).
  samples FILE    check a machine's clock samples (vtime-clocksample): its
                  trace clock conversion must agree with its CLOCK_MONOTONIC,
                  read between two counter readings, at one offset for every
                  sample within 1 us (else the conversion is not this
                  machine's, and exit status 1); prints the offset and how
                  closely the samples pin it
  merge ...       put host and guest traces (trace-cmd .dat or ftrace text) on
                  the first host's time axis, exactly where the timeline
                  knows the offsets, and write Chrome JSON for the Perfetto
                  UI (vtime-trace merge --help)
  plot FILE ...   draw the guest's time against its hosts' (SVG): its runs,
                  pauses and migrations with the guest's step at each, offset
                  changes (vtime-trace plot --help)
  --help          this text

Exit status: 0 done, 1 the file or the value was refused (the reason is
printed), 2 usage.
)";

int Usage(const std::string& why) {
  std::fprintf(stderr, "vtime-trace: %s\n(vtime-trace --help for usage)\n", why.c_str());
  return 2;
}

using vtime::ParseU64;

// The timeline in FILE, or a one-line reason on stderr.
bool Load(const std::string& path, Timeline* out) {
  auto t = vtime::trace_tool::LoadTimeline(path);
  if (!t) {
    std::fprintf(stderr, "vtime-trace: %s\n", t.error().context.c_str());
    return false;
  }
  *out = std::move(*t);
  return true;
}

int PrintTimeline(const std::string& path) {
  Timeline t;
  if (!Load(path, &t)) return 1;
  std::printf("guest of %u vCPUs, %zu hosts, %zu events\n", t.vcpus, t.hosts.size(),
              t.events.size());
  for (std::size_t i = 0; i < t.hosts.size(); ++i) {
    std::printf("host %zu: %s, %llu Hz\n", i, t.hosts[i].name.c_str(),
                static_cast<unsigned long long>(t.hosts[i].counter_frequency_hz));
  }
  for (std::size_t i = 0; i < t.events.size(); ++i) {
    const auto& e = t.events[i];
    std::printf("event %zu: %s host=%u count=%llu", i,
                std::string(vtime::trace::NameOf(e.kind)).c_str(), e.host,
                static_cast<unsigned long long>(e.host_count));
    if (e.kind == EventKind::kStart || e.kind == EventKind::kOffsets) {
      std::printf(" virtual_offset=%llu physical_offset=%llu",
                  static_cast<unsigned long long>(e.virtual_offset),
                  static_cast<unsigned long long>(e.physical_offset));
    }
    if (e.kind == EventKind::kNestedOffset) {
      std::printf(" vcpu=%u cntvoff=%llu", e.vcpu, static_cast<unsigned long long>(e.cntvoff));
    }
    std::printf("\n");
  }
  return 0;
}

// Each sample says CLOCK_MONOTONIC - trace clock lies in
// [mono - TraceNs(after), mono - TraceNs(before)]: with the right
// conversion one offset is in all of them (up to the two clocks' own
// rounding, allowed 1 us).
int CheckSamples(const std::string& path) {
  auto s = vtime::trace_tool::LoadClockSamples(path);
  if (!s) {
    std::fprintf(stderr, "vtime-trace: %s\n", s.error().context.c_str());
    return 1;
  }
  const std::uint64_t span_ticks =
      s->samples.back().counter_after - s->samples.front().counter_before;
  std::printf(
      "machine %s: %zu samples over %llu ticks at %llu Hz; trace clock = %llu + (ticks * %u) >> "
      "%u%s\n",
      s->machine.c_str(), s->samples.size(), static_cast<unsigned long long>(span_ticks),
      static_cast<unsigned long long>(s->counter_frequency_hz),
      static_cast<unsigned long long>(s->perf.time_zero), s->perf.time_mult,
      static_cast<unsigned>(s->perf.time_shift), s->perf.Short() ? " (short counter)" : "");
  using Clock = vtime::trace::ClockSamples::Clock;
  auto mono = s->OffsetOf(Clock::kMonotonic);
  if (!mono) {
    std::printf("not ok: %s\n", mono.error().context.c_str());
    return 1;
  }
  if (s->wall_clock) {
    // The wall clock may be stepped (NTP, a clock sync) between samples:
    // say so, but only the monotonic clock judges the conversion.
    auto wall = s->OffsetOf(Clock::kRealtime);
    if (wall) {
      std::printf("CLOCK_REALTIME - trace clock = %lld ns, pinned to %llu ns\n",
                  static_cast<long long>(wall->ns),
                  static_cast<unsigned long long>(wall->width_ns));
    } else {
      std::printf("note: %s\n", wall.error().context.c_str());
    }
  }
  std::printf("ok: CLOCK_MONOTONIC - trace clock = %lld ns, pinned to %llu ns by the samples\n",
              static_cast<long long>(mono->ns), static_cast<unsigned long long>(mono->width_ns));
  return 0;
}

int Map(int argc, char** argv) {
  if (argc < 3) return Usage("map needs a timeline file");
  const std::string path = argv[2];
  std::uint64_t vcpu = 0, count = 0, at_host = 0, at_count = 0;
  bool have_vcpu = false, have_count = false, have_at = false, have_which = false;
  GuestCounter which = GuestCounter::kVirtual;
  for (int i = 3; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool more = i + 1 < argc;
    if (a == "--vcpu") {
      if (!more || !ParseU64(argv[++i], &vcpu) || vcpu > 0xffffffffu) {
        return Usage("--vcpu needs a vCPU number");
      }
      have_vcpu = true;
    } else if (a == "--virtual" || a == "--physical") {
      which = a == "--virtual" ? GuestCounter::kVirtual : GuestCounter::kPhysical;
      have_which = true;
      if (more && std::string_view(argv[i + 1]).rfind("--", 0) != 0) {
        if (!ParseU64(argv[++i], &count)) {
          return Usage(std::string(a) + ": '" + argv[i] + "' is not a counter value");
        }
        have_count = true;
      }
    } else if (a == "--at") {
      const std::string_view v = more ? std::string_view(argv[++i]) : std::string_view();
      const auto colon = v.find(':');
      if (colon == std::string_view::npos || !ParseU64(v.substr(0, colon), &at_host) ||
          !ParseU64(v.substr(colon + 1), &at_count) || at_host > 0xffffffffu) {
        return Usage("--at needs HOST:COUNT (the host's index and its counter value)");
      }
      have_at = true;
    } else {
      return Usage("map: unknown argument '" + std::string(a) + "'");
    }
  }
  if (!have_vcpu || !have_which) return Usage("map needs --vcpu N and --virtual or --physical");
  if (have_count == have_at) return Usage("map needs either a COUNT or --at HOST:COUNT");
  Timeline t;
  if (!Load(path, &t)) return 1;
  const auto n = static_cast<std::uint32_t>(vcpu);
  if (have_count) {
    auto p = t.ToHost(n, which, count);
    if (!p) {
      std::fprintf(stderr, "vtime-trace: %s\n", p.error().Message().c_str());
      return 1;
    }
    std::printf("host=%u count=%llu\n", p->host, static_cast<unsigned long long>(p->count));
    return 0;
  }
  auto g =
      t.ToGuest(n, which, vtime::trace::HostPoint{static_cast<std::uint32_t>(at_host), at_count});
  if (!g) {
    std::fprintf(stderr, "vtime-trace: %s\n", g.error().Message().c_str());
    return 1;
  }
  std::printf("%s=%llu\n", which == GuestCounter::kVirtual ? "virtual" : "physical",
              static_cast<unsigned long long>(*g));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("no command");
  const std::string_view cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (cmd == "timeline") {
    if (argc != 3) return Usage("usage: vtime-trace timeline FILE");
    return PrintTimeline(argv[2]);
  }
  if (cmd == "map") return Map(argc, argv);
  if (cmd == "merge") return vtime::trace_tool::MergeCommand(argc, argv);
  if (cmd == "plot") return vtime::trace_tool::PlotCommand(argc, argv);
  if (cmd == "samples") {
    if (argc != 3) return Usage("usage: vtime-trace samples FILE");
    return CheckSamples(argv[2]);
  }
  return Usage("unknown command '" + std::string(cmd) + "'");
}
