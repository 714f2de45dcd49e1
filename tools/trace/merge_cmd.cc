#include "merge_cmd.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "files.h"
#include "readers.h"
#include "vtime/parse.h"
#include "vtime/trace/chrome_json.h"
#include "vtime/trace/clock_sample.h"
#include "vtime/trace/merge.h"
#include "vtime/trace/timeline.h"

namespace vtime::trace_tool {

const char* const kMergeHelp = R"(usage: vtime-trace merge -o OUT.json
           --host samples=FILE[,trace=FILE]...[,name=NAME][,shift=NS]...
           --guest samples=FILE,timeline=FILE[,trace=FILE]...[,name=NAME]...
           [--drop-uncovered] [--quiet]

Puts the traces of hosts and guests on one time axis, the first host's trace
clock, and writes them as Chrome JSON trace events (the Perfetto UI and
chrome://tracing open it): one process per machine, one thread per CPU (a
guest's per vCPU), each record an instant event with its fields.

  --host ...     a host: the clock samples vtime-clocksample wrote on it and
                 its traces (trace-cmd .dat files or ftrace text, recorded
                 with the local or perf trace clock). Its name is the
                 samples' machine name unless name= says otherwise; it must
                 be the name the guest's timeline gives the host (vtvmm
                 --timeline-host). A host after the first is placed by the
                 two hosts' wall clocks (the samples' CLOCK_REALTIME, as
                 good as the hosts' clock sync), or by shift=NS: its trace
                 clock + NS is the first host's.
  --guest ...    a guest: the clock samples vtime-clocksample wrote in it,
                 the offset timeline vtvmm recorded for it (--timeline), and
                 its traces. Each record's timestamp becomes the guest's
                 counter value (the samples' perf conversion), the host's
                 counter value at that moment (the timeline: exact, by the
                 offsets in force) and the host's trace clock (the host's
                 samples). A trace's CPU n is vCPU n.
  -o OUT.json    the output, written whole or not at all
  --drop-uncovered
                 leave out the guest records the timeline does not cover (a
                 count from a time the guest was paused, or that two
                 stretches give) instead of refusing the merge
  --quiet        no progress on stderr

Records the timeline does not cover are never placed by a guess: the merge
is refused with their number and the first one's reason, unless
--drop-uncovered.
)";

namespace {

int Usage(const std::string& why) {
  std::fprintf(stderr, "vtime-trace merge: %s\n(vtime-trace merge --help for usage)\n",
               why.c_str());
  return 2;
}

int Refuse(const std::string& why) {
  std::fprintf(stderr, "vtime-trace merge: %s\n", why.c_str());
  return 1;
}

struct MachineArg {
  bool guest = false;
  std::string samples, timeline, name;
  std::vector<std::string> traces;
  std::optional<std::int64_t> shift;
};

// "key=value,key=value" with ",," for a comma inside a value (as QEMU).
bool ParseList(std::string_view text, bool guest, MachineArg* out, std::string* why) {
  out->guest = guest;
  std::vector<std::string> items(1);
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ',') {
      if (i + 1 < text.size() && text[i + 1] == ',') {
        items.back() += ',';
        ++i;
      } else {
        items.emplace_back();
      }
    } else {
      items.back() += text[i];
    }
  }
  for (const auto& item : items) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
      *why = "'" + item + "' is not key=value";
      return false;
    }
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "samples") {
      out->samples = value;
    } else if (key == "trace") {
      out->traces.push_back(value);
    } else if (key == "name") {
      out->name = value;
    } else if (key == "timeline" && guest) {
      out->timeline = value;
    } else if (key == "shift" && !guest) {
      long long v = 0;
      char* end = nullptr;
      errno = 0;
      v = std::strtoll(value.c_str(), &end, 10);
      if (errno != 0 || end == value.c_str() || *end != '\0') {
        *why = "shift=" + value + " is not a number of nanoseconds";
        return false;
      }
      out->shift = v;
    } else {
      *why = "unknown key '" + key + "' for --" + (guest ? "guest" : "host");
      return false;
    }
  }
  if (out->samples.empty()) {
    *why = std::string("--") + (guest ? "guest" : "host") + " needs samples=FILE";
    return false;
  }
  if (guest && out->timeline.empty()) {
    *why = "--guest needs timeline=FILE";
    return false;
  }
  return true;
}

// The process's anonymous resident memory (heap, buffers), KiB; 0 where
// /proc does not say. Its peak is what the merge holds: the resident set
// also counts the pages of the input files libtracecmd maps, which the
// kernel may drop at will.
std::uint64_t AnonKiB() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  unsigned long long kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "RssAnon: %llu kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}

std::string Millions(std::uint64_t n) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f M", static_cast<double>(n) / 1e6);
  return b;
}

}  // namespace

int MergeCommand(int argc, char** argv) {
  std::vector<MachineArg> machines;
  std::string output;
  bool drop = false, quiet = false;
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool more = i + 1 < argc;
    if (a == "--help" || a == "-h") {
      std::fputs(kMergeHelp, stdout);
      return 0;
    }
    if (a == "--host" || a == "--guest") {
      if (!more) return Usage(std::string(a) + " needs a list (see --help)");
      MachineArg m;
      std::string why;
      if (!ParseList(argv[++i], a == "--guest", &m, &why)) return Usage(why);
      machines.push_back(std::move(m));
    } else if (a == "-o" || a == "--output") {
      if (!more) return Usage("-o needs a file");
      output = argv[++i];
    } else if (a == "--drop-uncovered") {
      drop = true;
    } else if (a == "--quiet") {
      quiet = true;
    } else {
      return Usage("unknown argument '" + std::string(a) + "'");
    }
  }
  if (output.empty()) return Usage("-o OUT.json is needed");
  std::size_t hosts = 0, traces = 0;
  for (const auto& m : machines) {
    hosts += m.guest ? 0 : 1;
    traces += m.traces.size();
  }
  if (hosts == 0) return Usage("at least one --host is needed: its trace clock is the axis");
  if (traces == 0) return Usage("no trace= given: nothing to merge");

  // Hosts first, so that the guests' timelines find them by name.
  trace::Merger merger;
  std::vector<std::pair<std::uint32_t, const MachineArg*>> added;
  bool first_host = true;
  std::optional<trace::ClockSamples> first_wall;
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& m : machines) {
      if (m.guest != (pass == 1)) continue;
      auto samples = LoadClockSamples(m.samples);
      if (!samples) return Refuse(samples.error().context);
      const std::string name = m.name.empty() ? samples->machine : m.name;
      if (!m.guest) {
        std::int64_t shift = 0;
        if (first_host) {
          first_wall = samples->wall_clock ? std::optional(*samples) : std::nullopt;
        } else if (m.shift) {
          shift = *m.shift;
        } else {
          // Both hosts' wall clocks: trace_b + (wall_b - trace_b) - (wall_a
          // - trace_a) is a's trace clock, within the samples' widths plus
          // however far apart the two wall clocks are.
          using Clock = trace::ClockSamples::Clock;
          if (!first_wall || !samples->wall_clock) {
            return Refuse("host '" + name +
                          "' is not the first: give shift=NS (its trace clock + NS is the "
                          "first host's), or clock samples of both hosts with wall-clock "
                          "readings (vtime-clocksample writes them)");
          }
          auto wa = first_wall->OffsetOf(Clock::kRealtime);
          auto wb = samples->OffsetOf(Clock::kRealtime);
          if (!wa) return Refuse(wa.error().context);
          if (!wb) return Refuse(wb.error().context);
          shift = wb->ns - wa->ns;
          std::fprintf(stderr,
                       "vtime-trace merge: host '%s' placed by the hosts' wall clocks: shift %lld "
                       "ns, within %llu ns plus the two wall clocks' difference\n",
                       name.c_str(), static_cast<long long>(shift),
                       static_cast<unsigned long long>((wa->width_ns + wb->width_ns) / 2 + 1));
        }
        added.emplace_back(merger.AddHost(name, samples->perf, shift), &m);
        first_host = false;
        continue;
      }
      auto timeline = LoadTimeline(m.timeline);
      if (!timeline) return Refuse(timeline.error().context);
      auto id = merger.AddGuest(name, samples->perf, *timeline);
      if (!id) return Refuse(id.error().Message());
      added.emplace_back(*id, &m);
    }
  }
  for (const auto& [id, m] : added) {
    for (const auto& path : m->traces) {
      auto streams = OpenTrace(path);
      if (!streams) return Refuse(streams.error().Message());
      for (auto& s : *streams) {
        if (auto r = merger.AddStream(id, std::move(s)); !r) return Refuse(r.error().Message());
      }
    }
  }

  const std::string temp = output + ".tmp";
  std::FILE* out = std::fopen(temp.c_str(), "wb");
  if (out == nullptr) return Refuse(temp + ": " + std::strerror(errno));
  auto fail = [&](const std::string& why) {
    std::fclose(out);
    std::remove(temp.c_str());
    return Refuse(why);
  };
  trace::ChromeJsonWriter json([&](std::string_view text) -> Result<void> {
    if (std::fwrite(text.data(), 1, text.size(), out) != text.size()) {
      return Fail(ErrorCode::kSystem, temp + ": write: " + std::strerror(errno));
    }
    return {};
  });
  // Machine m is process m + 1; its CPU c is thread (m + 1) * 10000 + c,
  // so that no two machines share a thread id.
  auto tid_of = [](std::uint32_t machine, std::uint32_t cpu) {
    return (machine + 1) * 10000 + cpu;
  };
  for (std::uint32_t m = 0; m < merger.machines(); ++m) {
    const std::string label = (merger.guest(m) ? "guest " : "host ") + merger.name(m);
    if (auto r = json.Process(m + 1, label, static_cast<std::int32_t>(m)); !r) {
      return fail(r.error().Message());
    }
  }
  std::vector<std::vector<bool>> named(merger.machines());
  const auto started = std::chrono::steady_clock::now();
  auto last_report = started;
  const bool tty = isatty(2) != 0;
  std::uint64_t peak_anon = AnonKiB();
  auto stats = merger.Run(
      [&](const trace::MergedRecord& r) -> Result<void> {
        auto& seen = named[r.machine];
        if (r.cpu < 4096 && (r.cpu >= seen.size() || !seen[r.cpu])) {
          if (r.cpu >= seen.size()) seen.resize(r.cpu + 1);
          seen[r.cpu] = true;
          const std::string label =
              (merger.guest(r.machine) ? "vCPU " : "CPU ") + std::to_string(r.cpu);
          if (auto t = json.Thread(r.machine + 1, tid_of(r.machine, r.cpu), label,
                                   static_cast<std::int32_t>(r.cpu));
              !t) {
            return t;
          }
        }
        return json.Instant(r.machine + 1, tid_of(r.machine, r.cpu), r.ts_ns, r.name,
                            merger.guest(r.machine) ? "guest" : "host", r.info, r.pid);
      },
      [&](std::uint64_t read, double done) {
        peak_anon = std::max(peak_anon, AnonKiB());
        if (quiet) return;
        const auto now = std::chrono::steady_clock::now();
        if (now - last_report < std::chrono::seconds(1)) return;
        last_report = now;
        if (done >= 0) {
          std::fprintf(stderr, "vtime-trace merge: %s records read (%.0f %%)%s",
                       Millions(read).c_str(), done * 100, tty ? "\r" : "\n");
        } else {
          std::fprintf(stderr, "vtime-trace merge: %s records read%s", Millions(read).c_str(),
                       tty ? "\r" : "\n");
        }
      },
      1 << 18);
  if (!stats) return fail(stats.error().Message());
  peak_anon = std::max(peak_anon, AnonKiB());
  std::uint64_t total = 0, placed = 0, uncovered = 0;
  std::string refusal;
  for (const auto& s : *stats) {
    total += s.records;
    placed += s.placed;
    uncovered += s.uncovered;
    if (s.uncovered != 0) {
      refusal += "\n  " + std::string(s.guest ? "guest " : "host ") + s.name + ": " +
                 std::to_string(s.uncovered) + " of " + std::to_string(s.records) +
                 " records not covered; the first: " + s.first_uncovered;
    }
  }
  if (uncovered != 0 && !drop) {
    return fail("the timeline does not cover every record (--drop-uncovered leaves them out):" +
                refusal);
  }
  if (auto r = json.Finish(); !r) return fail(r.error().Message());
  if (std::fclose(out) != 0) {
    std::remove(temp.c_str());
    return Refuse(temp + ": " + std::strerror(errno));
  }
  if (std::rename(temp.c_str(), output.c_str()) != 0) {
    std::remove(temp.c_str());
    return Refuse(output + ": " + std::strerror(errno));
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (tty && !quiet) std::fputs("\n", stderr);
  for (const auto& s : *stats) {
    std::printf("%s %s: %llu records, %llu placed", s.guest ? "guest" : "host", s.name.c_str(),
                static_cast<unsigned long long>(s.records),
                static_cast<unsigned long long>(s.placed));
    if (s.uncovered != 0) {
      std::printf(", %llu not covered (left out; the first: %s)",
                  static_cast<unsigned long long>(s.uncovered), s.first_uncovered.c_str());
    }
    std::printf("\n");
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "merged %llu records into %s in %.2f s (%.2f M records/s), peak memory %.1f MiB "
      "(anonymous; resident with the inputs' mapped pages %.1f MiB)\n",
      static_cast<unsigned long long>(placed), output.c_str(), secs,
      secs > 0 ? static_cast<double>(total) / secs / 1e6 : 0.0,
      static_cast<double>(peak_anon) / 1024.0, static_cast<double>(usage.ru_maxrss) / 1024.0);
  return 0;
}

}  // namespace vtime::trace_tool
