// Checks a Chrome JSON trace as the trace event format defines it and the
// Perfetto UI's importer reads it: an object with a "traceEvents" array;
// each event an object with a string "ph" and "name" and integer "pid" and
// "tid"; metadata events ("M") naming processes and threads with a string
// args.name; instant events ("i") with a numeric "ts", a scope "s" of g, p
// or t, and, as vtime-trace writes them, a string "cat" and object "args";
// every thread named before its first event. Prints a summary line per
// process (its name, instants, first and last ts), then "ok".
//   chrome_json_check FILE [--step-ns N]   (--step-ns: consecutive
//   instants, in file order, are exactly N ns apart)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>

namespace {

int Bad(const std::string& why) {
  std::cout << "not ok: " << why << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && !(argc == 4 && std::string(argv[2]) == "--step-ns")) {
    std::cerr << "usage: chrome_json_check FILE [--step-ns N]\n";
    return 2;
  }
  const long long step = argc == 4 ? std::atoll(argv[3]) : -1;
  std::ifstream in(argv[1]);
  if (!in) return Bad(std::string(argv[1]) + ": cannot open");
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    return Bad(std::string("not JSON: ") + e.what());
  }
  if (!doc.is_object() || !doc.contains("traceEvents") || !doc["traceEvents"].is_array()) {
    return Bad("no traceEvents array");
  }
  struct Process {
    std::string name;
    long long instants = 0;
    double first = 0, last = 0;
  };
  std::map<long long, Process> processes;
  std::set<std::pair<long long, long long>> threads;
  double previous = 0;
  long long index = -1, instants = 0;
  for (const auto& e : doc["traceEvents"]) {
    ++index;
    const std::string at = "event " + std::to_string(index) + ": ";
    if (!e.is_object()) return Bad(at + "not an object");
    if (!e.contains("ph") || !e["ph"].is_string()) return Bad(at + "no string ph");
    if (!e.contains("name") || !e["name"].is_string()) return Bad(at + "no string name");
    if (!e.contains("pid") || !e["pid"].is_number_integer()) return Bad(at + "no integer pid");
    if (!e.contains("tid") || !e["tid"].is_number_integer()) return Bad(at + "no integer tid");
    const std::string ph = e["ph"], name = e["name"];
    const long long pid = e["pid"], tid = e["tid"];
    if (ph == "M") {
      if (!e.contains("args") || !e["args"].is_object()) return Bad(at + "metadata without args");
      if (name == "process_name" || name == "thread_name") {
        if (!e["args"].contains("name") || !e["args"]["name"].is_string()) {
          return Bad(at + name + " without a string args.name");
        }
        if (name == "process_name") processes[pid].name = e["args"]["name"];
        if (name == "thread_name") threads.insert({pid, tid});
      } else if (name != "process_sort_index" && name != "thread_sort_index") {
        return Bad(at + "unknown metadata " + name);
      }
      continue;
    }
    if (ph != "i") return Bad(at + "phase " + ph + " (vtime-trace writes M and i)");
    if (!e.contains("ts") || !e["ts"].is_number()) return Bad(at + "no numeric ts");
    if (!e.contains("s") || !e["s"].is_string()) return Bad(at + "no scope");
    const std::string s = e["s"];
    if (s != "g" && s != "p" && s != "t") return Bad(at + "scope " + s);
    if (!e.contains("cat") || !e["cat"].is_string()) return Bad(at + "no string cat");
    if (!e.contains("args") || !e["args"].is_object()) return Bad(at + "no args object");
    if (threads.count({pid, tid}) == 0) return Bad(at + "a thread not named before it");
    if (processes.count(pid) == 0 || processes[pid].name.empty()) {
      return Bad(at + "a process not named before it");
    }
    const double ts = e["ts"];
    auto& p = processes[pid];
    if (p.instants++ == 0) p.first = ts;
    p.last = ts;
    if (step >= 0 && instants > 0) {
      const long long apart = std::llround((ts - previous) * 1000.0);
      if (apart != step) {
        return Bad(at + "ts " + std::to_string(ts) + " is " + std::to_string(apart) +
                   " ns after the one before, not " + std::to_string(step));
      }
    }
    previous = ts;
    ++instants;
  }
  for (const auto& [pid, p] : processes) {
    std::printf("process %lld %s: %lld instants, ts %.3f .. %.3f us\n", pid, p.name.c_str(),
                p.instants, p.first, p.last);
  }
  std::printf("ok: %lld events, %lld instants, %zu processes, %zu threads\n", index + 1, instants,
              processes.size(), threads.size());
  return 0;
}
