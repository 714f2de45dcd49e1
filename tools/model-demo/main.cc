// vtime-model-demo: plays a scripted timeline against the pure timer model
// and prints what the guest reads and when each timer line rises and falls.
//
// Exit status: 0 on success, 2 for a usage error or a bad script.
#include <charconv>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "scenario.h"

namespace {

constexpr int kExitUsage = 2;
constexpr std::string_view kProgram = "vtime-model-demo";

void PrintUsage(std::ostream& out) {
  out << "usage: " << kProgram << " [--help] [--list-commands] [--frequency HZ] SCRIPT\n";
}

void PrintHelp(std::ostream& out) {
  PrintUsage(out);
  out << R"(
Plays SCRIPT (or standard input for '-') against vtime's pure model of the Arm
Generic Timer and KVM's VM counter offsets, and prints one line per event:
what the guest reads, how offsets move, and the exact host time at which each
timer line rises or falls. Nothing is read from a real clock: time is the
host counter, as the script gives it.

options:
  --frequency HZ    counter frequency (CNTFRQ_EL0), default 1000000000 (1 GHz,
                    so a tick is a nanosecond); accepts Hz, kHz, MHz, GHz
                    suffixes (24MHz). Durations in the script (10ms) are
                    converted at this frequency; times print in ms.
  --list-commands   print the script language and exit
  --help            print this help and exit

Time axis: every TIME is a reading of the current host's counter. A restore
with 'host-counter H' moves the VM to a destination host whose counter reads
H at that instant; from the next line on, TIME is on the destination's axis.

Exit status: 0 on success, 2 for a usage error or an error in the script
(reported as SCRIPT: line N: what is wrong).

)";
  out << "Script language:\n\n" << vtime::model_demo::CommandReference();
}

int UsageError(std::string_view message) {
  std::cerr << kProgram << ": " << message << '\n';
  PrintUsage(std::cerr);
  return kExitUsage;
}

// "1000000000", "24MHz", "1GHz", "32768Hz".
std::optional<std::uint64_t> ParseFrequency(std::string_view s) {
  std::uint64_t value = 0;
  const auto res = std::from_chars(s.data(), s.data() + s.size(), value);
  if (res.ec != std::errc() || value == 0) return std::nullopt;
  const std::string_view unit(res.ptr, static_cast<std::size_t>(s.data() + s.size() - res.ptr));
  std::uint64_t scale = 1;
  if (unit == "kHz") {
    scale = 1'000;
  } else if (unit == "MHz") {
    scale = 1'000'000;
  } else if (unit == "GHz") {
    scale = 1'000'000'000;
  } else if (!unit.empty() && unit != "Hz") {
    return std::nullopt;
  }
  if (value > UINT64_MAX / scale) return std::nullopt;
  return value * scale;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  std::uint64_t hz = 1'000'000'000;
  std::optional<std::string_view> script_path;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (a == "--help" || a == "-h") {
      PrintHelp(std::cout);
      return 0;
    }
    if (a == "--list-commands") {
      std::cout << vtime::model_demo::CommandReference();
      return 0;
    }
    if (a == "--frequency" || a.starts_with("--frequency=")) {
      std::string_view value;
      if (a == "--frequency") {
        if (i + 1 >= args.size()) return UsageError("--frequency needs a value (e.g. 24MHz)");
        value = args[++i];
      } else {
        value = a.substr(std::string_view("--frequency=").size());
      }
      const std::optional<std::uint64_t> f = ParseFrequency(value);
      if (!f) {
        return UsageError("bad --frequency '" + std::string(value) +
                          "': expected a non-zero number of Hz, optionally with Hz, kHz, "
                          "MHz or GHz");
      }
      hz = *f;
      continue;
    }
    if (a.size() > 1 && a.front() == '-') {
      return UsageError("unknown option '" + std::string(a) + "'");
    }
    if (script_path) return UsageError("only one SCRIPT may be given");
    script_path = a;
  }
  if (!script_path) return UsageError("missing SCRIPT (a file, or - for standard input)");

  std::string text;
  if (*script_path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in{std::string(*script_path), std::ios::binary};
    if (!in) {
      std::cerr << kProgram << ": cannot open script '" << *script_path << "'\n";
      return kExitUsage;
    }
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) {
      std::cerr << kProgram << ": cannot read script '" << *script_path << "'\n";
      return kExitUsage;
    }
  }
  const std::string shown = *script_path == "-" ? "<stdin>" : std::string(*script_path);

  const vtime::FrequencyHz freq(hz);
  const vtime::Result<vtime::model_demo::Script> script =
      vtime::model_demo::ParseScript(text, freq);
  if (!script) {
    std::cerr << kProgram << ": " << shown << ": " << script.error().Message() << '\n';
    return kExitUsage;
  }
  std::cout << "# " << shown << ": " << script->commands.size() << " commands, counter at " << hz
            << " Hz\n";
  const vtime::Result<vtime::model_demo::PlayLog> log =
      vtime::model_demo::PlayScript(*script, freq, std::cout);
  std::cout.flush();
  if (!log) {
    std::cerr << kProgram << ": " << shown << ": " << log.error().Message() << '\n';
    return kExitUsage;
  }
  return 0;
}
