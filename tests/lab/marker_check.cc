// Checks a merged trace (vtime-trace merge's Chrome JSON) of the lab's
// marker proof (#11): each guest mark "vtime-mark I VALUE" (the guest read
// CNTVCT = VALUE, marked the moment in its own trace, then stored VALUE to
// vtvmm's trace marker) against the host's kvm_mmio record of that store,
// which carries VALUE. After the merge each mark must land inside one of
// that vCPU thread's runs (a kvm_entry and the kvm_exit after it: the guest
// can read its counter only while it runs), in the run that ends with the
// store's exit or an earlier one (an interrupt may take the guest out
// between its read and its store) or, when the guest moved between the two,
// in a run of an earlier stay's thread that had left the guest for good
// before the store's thread first entered it; with at most --max-gap-ns of
// the guest's own running between the mark and the store's exit (the time
// its vCPU spent out of the guest in between, from a kvm_exit to the next
// kvm_entry, is the host's, and so is a move's pause). In the first
// --settle-ns of a stay (default 0) the bound is --settle-max-gap-ns: right
// after a migration or a restore every first touch of a page is a stage-2
// fault on the new host and the guest's own tracer catches up, and a Linux
// guest's mark then waited 50 ms for its store in CI. Each value must be
// the val of exactly one 8-byte write to the marker's gpa. Prints a FIGURE
// line per mark and the spread of the gaps, then "ok" (exit 0) or the
// first failure (exit 1). With --stays N
// (a guest that moved: trace_marker_pair.sh) the marks must lie on at least
// N stays, each a (host process, vCPU thread) pair of the merged trace (a
// migration or a restore runs the guest in a new vtvmm process, so a new
// thread, on a host of its own or the same one); a FIGURE line per stay
// gives its marks.
//   marker_check MERGED.json --gpa GPA --max-gap-ns N [--marks N] [--stays N]
//                [--settle-ns N --settle-max-gap-ns N]
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

using Thread = std::pair<long long, long long>;  // (host process, vCPU thread)

// The run of a vCPU thread (sorted entries `ent`, sorted exits `ext`) that
// `ts` falls in or after: its last entry at or before `ts` and the first
// exit after that entry; -1 for what is missing.
std::pair<std::int64_t, std::int64_t> RunOf(const std::vector<std::int64_t>& ent,
                                            const std::vector<std::int64_t>& ext, std::int64_t ts) {
  const auto after = std::upper_bound(ent.begin(), ent.end(), ts);
  if (after == ent.begin()) return {-1, -1};
  const std::int64_t entry = *(after - 1);
  const auto end = std::lower_bound(ext.begin(), ext.end(), entry);
  return {entry, end == ext.end() ? -1 : *end};
}

// The time in [from, to] a vCPU thread spent out of the guest: from each
// of its exits (sorted `ext`) to its next entry (sorted `ent`), clipped.
std::int64_t OutOfGuest(const std::vector<std::int64_t>& ent, const std::vector<std::int64_t>& ext,
                        std::int64_t from, std::int64_t to) {
  std::int64_t out = 0;
  // An exit before `from` whose next entry comes after it counts too.
  auto e = std::upper_bound(ext.begin(), ext.end(), from);
  if (e != ext.begin()) --e;
  for (; e != ext.end() && *e < to; ++e) {
    const auto back = std::upper_bound(ent.begin(), ent.end(), *e);
    const std::int64_t start = std::max(*e, from);
    const std::int64_t end = back == ent.end() ? to : std::min(*back, to);
    if (end > start) out += end - start;
  }
  return out;
}

// The time in [from, to] a vCPU thread spent in the guest.
std::int64_t InGuest(const std::vector<std::int64_t>& ent, const std::vector<std::int64_t>& ext,
                     std::int64_t from, std::int64_t to) {
  return to - from - OutOfGuest(ent, ext, from, to);
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t gpa = 0;
  long long max_gap = -1, want_marks = -1, want_stays = -1, settle_ns = 0, settle_max_gap = -1;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--gpa") gpa = std::strtoull(argv[i + 1], nullptr, 0);
    if (a == "--max-gap-ns") max_gap = std::atoll(argv[i + 1]);
    if (a == "--marks") want_marks = std::atoll(argv[i + 1]);
    if (a == "--stays") want_stays = std::atoll(argv[i + 1]);
    if (a == "--settle-ns") settle_ns = std::atoll(argv[i + 1]);
    if (a == "--settle-max-gap-ns") settle_max_gap = std::atoll(argv[i + 1]);
  }
  if (settle_max_gap < 0) settle_max_gap = max_gap;
  if (argc < 6 || gpa == 0 || max_gap < 0 || settle_ns < 0) {
    std::fprintf(stderr,
                 "usage: marker_check MERGED.json --gpa GPA --max-gap-ns N [--marks N] "
                 "[--stays N] [--settle-ns N --settle-max-gap-ns N]\n");
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
  std::map<Thread, std::vector<std::int64_t>> entries, exits;
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
    } else if (e.at("cat") == "guest" && mark_at != std::string::npos &&
               (e.at("name") == "print" || e.at("name") == "tracing_mark_write")) {
      // A trace_marker write (Linux's ftrace "print" event, the bare
      // guest's "tracing_mark_write" lines); not, say, a sched_switch of
      // the vtime-mark process.
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
  std::vector<std::int64_t> gaps, windows, in_guest;
  std::map<std::string, int> per_host;
  // The stays (host process, vCPU thread) in the order of their first mark,
  // with their marks.
  std::vector<std::pair<Thread, int>> stays;
  long long split = 0;  // marks read in one run and stored in a later one
  long long moved = 0;  // marks read on one stay and stored on a later one
  long long early = 0;  // marks stored in the settling time of their stay
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
    const Thread store_thread{w.pid, w.task};
    const auto& ent = entries[store_thread];
    const auto& ext = exits[store_thread];
    if (ext.empty()) return Bad(what + ": no kvm_exit of its vCPU thread (record kvm:kvm_exit)");
    if (ent.empty() || ent.front() > w.ts) {
      return Bad(what + ": no kvm_entry of its vCPU thread before its store");
    }
    // The run the mark lies in: on the store's thread, or (a move between
    // the mark and the store) on an earlier stay's thread that ended before
    // the store's thread first entered the guest.
    Thread mark_thread = store_thread;
    if (ent.front() > m.ts) {
      bool found = false;
      for (const auto& [thread, thread_ent] : entries) {
        const auto& thread_ext = exits[thread];
        if (thread == store_thread || thread_ext.empty() || thread_ext.back() > ent.front()) {
          continue;
        }
        if (RunOf(thread_ent, thread_ext, m.ts).second >= m.ts) {
          mark_thread = thread;
          found = true;
          break;
        }
      }
      if (!found) {
        return Bad(what + " lands " + std::to_string(ent.front() - m.ts) +
                   " ns before its store's vCPU thread first entered the guest, and inside no "
                   "run of an earlier stay's");
      }
      ++moved;
    }
    const auto& mark_ent = entries[mark_thread];
    const auto& mark_ext = exits[mark_thread];
    const auto [entry, run_end] = RunOf(mark_ent, mark_ext, m.ts);
    if (entry < 0) return Bad(what + ": no kvm_entry of its vCPU thread before it");
    if (run_end < 0 || (mark_thread == store_thread && run_end > w.ts)) {
      return Bad(what + ": no kvm_exit of its vCPU thread between its last entry and its store");
    }
    if (run_end < m.ts) {
      return Bad(what + " lands " + std::to_string(m.ts - run_end) +
                 " ns after its vCPU left the guest (entered " + std::to_string(m.ts - entry) +
                 " ns before it): outside every run of its vCPU");
    }
    // The guest's own running between the mark and the store's exit.
    const std::int64_t guest_part = mark_thread == store_thread
                                        ? InGuest(ent, ext, m.ts, w.ts)
                                        : InGuest(mark_ent, mark_ext, m.ts, mark_ext.back()) +
                                              InGuest(ent, ext, ent.front(), w.ts);
    // Early in a stay the guest is slow (stage-2 faults on every first
    // touch, its own tracer catching up): a bound of its own.
    const bool settling = w.ts - ent.front() <= settle_ns;
    const long long bound = settling ? settle_max_gap : max_gap;
    if (guest_part > bound) {
      return Bad(what + " lands " + std::to_string(gap) + " ns before its exit, " +
                 std::to_string(guest_part) + " ns of them in the guest, more than " +
                 std::to_string(bound) +
                 (settling ? " (" + std::to_string(w.ts - ent.front()) + " ns into its stay)"
                           : std::string()));
    }
    if (settling) ++early;
    // Runs between the one of the read and the one of the store.
    const auto later_exits = mark_thread == store_thread
                                 ? std::upper_bound(ext.begin(), ext.end(), w.ts) -
                                       std::lower_bound(ext.begin(), ext.end(), run_end)
                                 : 0;
    if (later_exits > 1) ++split;
    std::string note;
    if (mark_thread != store_thread) {
      note = " (the guest moved in between: " + std::to_string(guest_part) + " ns in the guest)";
    } else if (later_exits > 1) {
      note = " (" + std::to_string(later_exits - 1) + " exit(s) between, " +
             std::to_string(gap - guest_part) + " ns of them out of the guest)";
    }
    std::printf(
        "FIGURE mark %lld value %llu on %s: entry %lld ns before the mark, exit %lld ns after "
        "it, store's exit %lld ns after it%s\n",
        m.index, static_cast<unsigned long long>(m.value), names[w.pid].c_str(),
        static_cast<long long>(m.ts - entry), static_cast<long long>(run_end - m.ts),
        static_cast<long long>(gap), note.c_str());
    windows.push_back(run_end - entry);
    gaps.push_back(gap);
    in_guest.push_back(guest_part);
    ++per_host[names[w.pid]];
    if (stays.empty() || stays.back().first != store_thread) {
      for (const auto& s : stays) {
        if (want_stays >= 0 && s.first == store_thread) {
          return Bad(what + ": back on an earlier stay after a later one");
        }
      }
      stays.push_back({store_thread, 0});
    }
    ++stays.back().second;
  }
  std::sort(gaps.begin(), gaps.end());
  std::printf("FIGURE %zu marks: exit after mark min %lld ns, median %lld ns, max %lld ns\n",
              gaps.size(), static_cast<long long>(gaps.front()),
              static_cast<long long>(gaps[gaps.size() / 2]), static_cast<long long>(gaps.back()));
  std::sort(in_guest.begin(), in_guest.end());
  std::printf("FIGURE of which in the guest: min %lld ns, median %lld ns, max %lld ns\n",
              static_cast<long long>(in_guest.front()),
              static_cast<long long>(in_guest[in_guest.size() / 2]),
              static_cast<long long>(in_guest.back()));
  std::sort(windows.begin(), windows.end());
  std::printf(
      "FIGURE the run (entry to exit) each mark lies in: min %lld ns, median %lld ns, max %lld "
      "ns\n",
      static_cast<long long>(windows.front()), static_cast<long long>(windows[windows.size() / 2]),
      static_cast<long long>(windows.back()));
  std::printf("FIGURE %lld of %zu marks were stored in a later run than the one that read them\n",
              split, gaps.size());
  std::printf("FIGURE %lld of %zu marks were stored on a later stay than the one that read them\n",
              moved, gaps.size());
  if (settle_ns > 0) {
    std::printf("FIGURE %lld of %zu marks were stored in their stay's first %lld ns\n", early,
                gaps.size(), settle_ns);
  }
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
