// Checks a merged trace (vtime-trace merge's Chrome JSON) of the lab's
// marker proof (#11): each guest mark "vtime-mark I VALUE" (the guest read
// CNTVCT = VALUE, marked the moment in its own trace, then stored VALUE to
// vtvmm's trace marker) against the host's kvm_mmio record of that store,
// which carries VALUE. After the merge each mark must land inside one of
// that vCPU thread's runs (a kvm_entry and the kvm_exit after it: the guest
// can read its counter only while it runs), in the run that ends with the
// store's exit or an earlier one (an interrupt may take the guest out
// between its read and its store), and at most --max-gap-ns before the
// store's exit; each value must be the val of exactly one 8-byte write to
// the marker's gpa. Prints a FIGURE line per mark and the spread of the
// gaps, then "ok" (exit 0) or the first failure (exit 1). With --stays N
// (a guest that moved: trace_marker_pair.sh) the marks must lie on at least
// N stays, each a (host process, vCPU thread) pair of the merged trace (a
// migration or a restore runs the guest in a new vtvmm process, so a new
// thread, on a host of its own or the same one); a FIGURE line per stay
// gives its marks.
//   marker_check MERGED.json --gpa GPA --max-gap-ns N [--marks N] [--stays N]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace {

int Bad(const std::string& why) {
  std::printf("not ok: %s\n", why.c_str());
  return 1;
}

// The hex number after `key` ("gpa 0x", "val 0x") in `info`.
bool HexAfter(const std::string& info, const std::string& key, std::uint64_t* out) {
  const auto at = info.find(key);
  if (at == std::string::npos) return false;
  char* end = nullptr;
  const char* start = info.c_str() + at + key.size();
  *out = std::strtoull(start, &end, 16);
  return end != start;
}

// Microseconds with three decimals, as the merge writes them, to ns.
std::int64_t Ns(double us) { return std::llround(us * 1000.0); }

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t gpa = 0;
  long long max_gap = -1, want_marks = -1, want_stays = -1;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--gpa") gpa = std::strtoull(argv[i + 1], nullptr, 0);
    if (a == "--max-gap-ns") max_gap = std::atoll(argv[i + 1]);
    if (a == "--marks") want_marks = std::atoll(argv[i + 1]);
    if (a == "--stays") want_stays = std::atoll(argv[i + 1]);
  }
  if (argc < 6 || gpa == 0 || max_gap < 0) {
    std::fprintf(stderr,
                 "usage: marker_check MERGED.json --gpa GPA --max-gap-ns N [--marks N] "
                 "[--stays N]\n");
    return 2;
  }
  std::ifstream in(argv[1]);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    return Bad(std::string(argv[1]) + ": not JSON: " + e.what());
  }
  struct Mark {
    long long index;
    std::uint64_t value;
    std::int64_t ts;
    long long pid;
  };
  std::vector<Mark> marks;
  struct Write {
    std::int64_t ts;
    long long pid;   // the host process (machine) of the merged trace
    long long task;  // the vCPU thread
  };
  std::map<std::uint64_t, std::vector<Write>> writes;
  // Per (pid, task): the vCPU thread's entries into the guest and its exits.
  std::map<std::pair<long long, long long>, std::vector<std::int64_t>> entries, exits;
  std::map<long long, std::string> names;
  long long other_accesses = 0;
  for (const auto& e : doc.at("traceEvents")) {
    const std::string ph = e.at("ph");
    if (ph == "M") {
      if (e.at("name") == "process_name") names[e.at("pid")] = e.at("args").at("name");
      continue;
    }
    const std::string info = e.at("args").value("info", "");
    const auto mark_at = info.find("vtime-mark ");
    if (e.at("cat") == "host" && e.at("name") == "kvm_entry") {
      entries[{e.at("pid"), e.at("args").value("task", -1LL)}].push_back(Ns(e.at("ts")));
    } else if (e.at("cat") == "host" && e.at("name") == "kvm_exit") {
      exits[{e.at("pid"), e.at("args").value("task", -1LL)}].push_back(Ns(e.at("ts")));
    } else if (e.at("cat") == "guest" && mark_at != std::string::npos) {
      long long idx = 0, value = 0;
      if (std::sscanf(info.c_str() + mark_at, "vtime-mark %lld %lli", &idx, &value) != 2 ||
          value < 0) {
        return Bad("a guest mark that does not parse: " + info);
      }
      marks.push_back(Mark{idx, static_cast<std::uint64_t>(value), Ns(e.at("ts")), e.at("pid")});
    } else if (e.at("cat") == "host" && e.at("name") == "kvm_mmio") {
      std::uint64_t at = 0, val = 0;
      if (!HexAfter(info, "gpa 0x", &at) || (at & ~0xfffULL) != gpa) continue;
      if (info.find("write") == std::string::npos || info.find("len 8") == std::string::npos ||
          !HexAfter(info, "val 0x", &val)) {
        ++other_accesses;
        continue;
      }
      writes[val].push_back({Ns(e.at("ts")), e.at("pid"), e.at("args").value("task", -1LL)});
    }
  }
  if (marks.empty()) return Bad("no guest marks in the merged trace");
  // Each thread's entries and exits in time order, once for all the marks.
  for (auto* per_thread : {&entries, &exits}) {
    for (auto& [thread, times] : *per_thread) std::sort(times.begin(), times.end());
  }
  if (want_marks >= 0 && static_cast<long long>(marks.size()) != want_marks) {
    return Bad(std::to_string(marks.size()) + " guest marks, wanted " + std::to_string(want_marks));
  }
  if (other_accesses != 0) {
    return Bad(std::to_string(other_accesses) + " other accesses to the marker's page");
  }
  std::vector<std::int64_t> gaps, windows;
  std::map<std::string, int> per_host;
  // The stays (host process, vCPU thread) in the order of their first mark,
  // with their marks.
  std::vector<std::pair<std::pair<long long, long long>, int>> stays;
  long long split = 0;  // marks read in one run and stored in a later one
  for (const auto& m : marks) {
    const auto it = writes.find(m.value);
    if (it == writes.end()) {
      return Bad("mark " + std::to_string(m.index) + " (value " + std::to_string(m.value) +
                 "): no kvm_mmio write of that value");
    }
    if (it->second.size() != 1) {
      return Bad("mark " + std::to_string(m.index) + ": " + std::to_string(it->second.size()) +
                 " writes of its value");
    }
    const Write w = it->second.front();
    const std::int64_t gap = w.ts - m.ts;
    const std::string what = "mark " + std::to_string(m.index);
    if (gap < 0) return Bad(what + " lands " + std::to_string(-gap) + " ns after its exit");
    if (gap > max_gap) {
      return Bad(what + " lands " + std::to_string(gap) + " ns before its exit, more than " +
                 std::to_string(max_gap));
    }
    // The run of that vCPU thread the mark lies in: its last entry before
    // the mark and the first exit after that entry.
    const auto& ent = entries[{w.pid, w.task}];
    const auto& ext = exits[{w.pid, w.task}];
    if (ext.empty()) return Bad(what + ": no kvm_exit of its vCPU thread (record kvm:kvm_exit)");
    const auto after = std::upper_bound(ent.begin(), ent.end(), m.ts);
    if (after == ent.begin()) return Bad(what + ": no kvm_entry of its vCPU thread before it");
    const std::int64_t entry = *(after - 1);
    const auto run_end = std::lower_bound(ext.begin(), ext.end(), entry);
    if (run_end == ext.end() || *run_end > w.ts) {
      return Bad(what + ": no kvm_exit of its vCPU thread between its last entry and its store");
    }
    if (*run_end < m.ts) {
      return Bad(what + " lands " + std::to_string(m.ts - *run_end) +
                 " ns after its vCPU left the guest (entered " + std::to_string(m.ts - entry) +
                 " ns before it): outside every run of its vCPU");
    }
    // Runs between the one of the read and the one of the store.
    const auto later_exits = std::upper_bound(ext.begin(), ext.end(), w.ts) - run_end;
    if (later_exits > 1) ++split;
    std::printf(
        "FIGURE mark %lld value %llu on %s: entry %lld ns before the mark, exit %lld ns after "
        "it, store's exit %lld ns after it%s\n",
        m.index, static_cast<unsigned long long>(m.value), names[w.pid].c_str(),
        static_cast<long long>(m.ts - entry), static_cast<long long>(*run_end - m.ts),
        static_cast<long long>(gap),
        later_exits > 1 ? (" (" + std::to_string(later_exits - 1) + " exit(s) between)").c_str()
                        : "");
    windows.push_back(*run_end - entry);
    gaps.push_back(gap);
    ++per_host[names[w.pid]];
    const std::pair<long long, long long> stay{w.pid, w.task};
    if (stays.empty() || stays.back().first != stay) {
      for (const auto& s : stays) {
        if (want_stays >= 0 && s.first == stay) {
          return Bad(what + ": back on an earlier stay after a later one");
        }
      }
      stays.push_back({stay, 0});
    }
    ++stays.back().second;
  }
  std::sort(gaps.begin(), gaps.end());
  std::printf("FIGURE %zu marks: exit after mark min %lld ns, median %lld ns, max %lld ns\n",
              gaps.size(), static_cast<long long>(gaps.front()),
              static_cast<long long>(gaps[gaps.size() / 2]), static_cast<long long>(gaps.back()));
  std::sort(windows.begin(), windows.end());
  std::printf(
      "FIGURE the run (entry to exit) each mark lies in: min %lld ns, median %lld ns, max %lld "
      "ns\n",
      static_cast<long long>(windows.front()), static_cast<long long>(windows[windows.size() / 2]),
      static_cast<long long>(windows.back()));
  std::printf("FIGURE %lld of %zu marks were stored in a later run than the one that read them\n",
              split, gaps.size());
  for (const auto& [host, n] : per_host) std::printf("  %d marks on %s\n", n, host.c_str());
  if (want_stays >= 0) {
    for (std::size_t i = 0; i < stays.size(); ++i) {
      std::printf("FIGURE stay %zu: %d marks on %s, vCPU thread %lld\n", i + 1, stays[i].second,
                  names[stays[i].first.first].c_str(), stays[i].first.second);
    }
    if (static_cast<long long>(stays.size()) < want_stays) {
      return Bad("the marks lie on " + std::to_string(stays.size()) + " stays, wanted at least " +
                 std::to_string(want_stays));
    }
  }
  std::printf("ok: every mark lands inside a run of its vCPU, at or before its store's exit\n");
  return 0;
}
