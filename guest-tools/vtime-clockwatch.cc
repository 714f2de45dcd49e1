// vtime-clockwatch: the Linux counterpart of the bare-metal `clockwatch`
// guest. Reads CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_BOOTTIME and (on
// arm64) CNTVCT_EL0 in a loop and reports every step between two
// consecutive reads that is larger than a threshold, and every backward
// step, so that a pause of the VM (snapshot, migration) or a clock that
// goes backwards shows up as one line.
#include <signal.h>
#include <time.h>

#include <array>
#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string_view>
#include <vector>

#include "arm_counter.h"
#include "options.h"
#include "step_watch.h"
#include "vtime/result.h"

namespace {

using vtime::ErrorCode;
using vtime::Fail;
using vtime::Result;
using vtime::guest_tools::OptionValue;
using vtime::guest_tools::Step;
using vtime::guest_tools::StepWatch;

constexpr const char* kHelp =
    R"(Usage: vtime-clockwatch [--duration SECS] [--threshold-us N] [--interval-us N]
                        [--max-log N] [--timer-s SECS]

Reads CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_BOOTTIME and, on arm64, CNTVCT_EL0
(isb first; frequency from CNTFRQ_EL0) once per iteration for SECS seconds of
CLOCK_MONOTONIC (default 10; SIGTERM or SIGINT end it early, with the same
report), and keeps every step between two consecutive
reads of one clock that is larger than N us (default 1000), and every step
backwards. They are printed at the end, so that printing never adds to a
step:
  vtime-clockwatch: step clock=NAME t_ns=T from=A to=B size_ns=S
  vtime-clockwatch: BACKWARDS step clock=NAME t_ns=T from=A to=B size_ns=-S
(T: CLOCK_MONOTONIC since the start at the read before the step; CNTVCT steps
also give size_ticks). Then one summary line per clock and one ok / not ok
line per clock ("never went backwards").

  --interval-us N  sleep N us between iterations (default 0: busy loop); the
                   threshold should then exceed the interval
  --max-log N      keep at most N step lines (default 1000); the rest are
                   counted as lost
  --timer-s SECS   also arm a one-shot POSIX timer (timer_create on
                   CLOCK_MONOTONIC, SIGEV_SIGNAL) SECS seconds after the
                   start, and report at the end how often it fired and
                   when, by CLOCK_MONOTONIC and CLOCK_REALTIME from the arming:
  vtime-clockwatch: timer armed_s=N fired=K mono_after_ns=M real_after_ns=R
                   (fired must be 1; M - N s is how late it was)

Exit status: 0 if no clock went backwards, 1 if one did, 2 for a bad command
line.
)";

constexpr std::uint64_t kNsPerSec = 1'000'000'000;
// Set by SIGTERM or SIGINT: the watch ends at the next iteration and reports.
volatile sig_atomic_t g_stop = 0;
// The --timer-s timer's firings, and the clocks at the first (set in the
// signal handler: clock_gettime is async-signal-safe).
std::atomic<int> g_timer_fired{0};  // lock-free, so async-signal-safe
timespec g_timer_mono{}, g_timer_real{};
constexpr const char* kProg = "vtime-clockwatch";

struct Options {
  std::uint64_t duration_s = 10;
  std::uint64_t threshold_us = 1000;
  std::uint64_t interval_us = 0;
  std::size_t max_log = 1000;
  std::uint64_t timer_s = 0;  // 0: no timer
};

Result<Options> ParseOptions(const std::vector<std::string_view>& args) {
  Options options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    Result<std::uint64_t> value = 0;
    if (arg == "--duration") {
      value = OptionValue<std::uint64_t>(args, i, 1, 86'400 * 365);
      if (value) options.duration_s = *value;
    } else if (arg == "--threshold-us") {
      value = OptionValue<std::uint64_t>(args, i, 0, 3'600'000'000);
      if (value) options.threshold_us = *value;
    } else if (arg == "--interval-us") {
      value = OptionValue<std::uint64_t>(args, i, 0, 60'000'000);
      if (value) options.interval_us = *value;
    } else if (arg == "--timer-s") {
      value = OptionValue<std::uint64_t>(args, i, 1, 86'400 * 365);
      if (value) options.timer_s = *value;
    } else if (arg == "--max-log") {
      value = OptionValue<std::uint64_t>(args, i, 0, 10'000'000);
      if (value) options.max_log = static_cast<std::size_t>(*value);
    } else {
      return Fail(ErrorCode::kInvalidArgument,
                  "unknown argument '" + std::string(arg) + "' (see --help)");
    }
    if (!value) return tl::unexpected(value.error());
  }
  return options;
}

// ---------------------------------------------------------------- clocks

// A CLOCK_* reading in nanoseconds, as the unsigned bit pattern of the
// signed value: StepWatch takes differences modulo 2^64, which is exact for
// either.
std::uint64_t ReadClock(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<std::uint64_t>(std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec);
}

using vtime::guest_tools::kHaveCounter;
using vtime::guest_tools::ReadCntfrq;
using vtime::guest_tools::ReadCntvct;

// ---------------------------------------------------------------- watching

enum ClockIndex : std::size_t { kMonotonic, kRealtime, kBoottime, kCntvct, kClockCount };
constexpr std::array<const char*, kClockCount> kClockNames = {"CLOCK_MONOTONIC", "CLOCK_REALTIME",
                                                              "CLOCK_BOOTTIME", "CNTVCT"};

struct LoggedStep {
  std::size_t clock = 0;
  std::uint64_t t_ns = 0;  // CLOCK_MONOTONIC since the start, at the read before.
  Step step;
};

// A CLOCK_* value for printing: the signed nanoseconds it came from.
std::int64_t Signed(std::uint64_t bits) { return static_cast<std::int64_t>(bits); }

// A step's size in ns, signed; CNTVCT's converted at `freq`.
std::int64_t SizeNs(const LoggedStep& s, std::uint64_t freq) {
  if (s.clock != kCntvct) return s.step.delta;
  const std::uint64_t ns = vtime::guest_tools::TicksToNanoseconds(s.step.magnitude(), freq);
  const auto clamped = static_cast<std::int64_t>(ns > INT64_MAX ? INT64_MAX : ns);
  return s.step.backwards() ? -clamped : clamped;
}

void PrintStep(const LoggedStep& s, std::uint64_t freq) {
  const char* loud = s.step.backwards() ? "BACKWARDS " : "";
  if (s.clock == kCntvct) {
    std::printf("%s: %sstep clock=%s t_ns=%" PRIu64 " from=%" PRIu64 " to=%" PRIu64
                " size_ticks=%" PRId64 " size_ns=%" PRId64 "\n",
                kProg, loud, kClockNames[s.clock], s.t_ns, s.step.before, s.step.after,
                s.step.delta, SizeNs(s, freq));
  } else {
    std::printf("%s: %sstep clock=%s t_ns=%" PRIu64 " from=%" PRId64 " to=%" PRId64
                " size_ns=%" PRId64 "\n",
                kProg, loud, kClockNames[s.clock], s.t_ns, Signed(s.step.before),
                Signed(s.step.after), SizeNs(s, freq));
  }
}

int Run(const Options& options) {
  const std::uint64_t freq = ReadCntfrq();
  const bool counter = kHaveCounter && freq != 0;
  std::printf(
      "%s: duration_s=%" PRIu64 " threshold_us=%" PRIu64 " interval_us=%" PRIu64 " max_log=%zu",
      kProg, options.duration_s, options.threshold_us, options.interval_us, options.max_log);
  if (counter) std::printf(" cntfrq=%" PRIu64, freq);
  std::printf("\n");
  if (!kHaveCounter) {
    std::printf("%s: no CNTVCT on this architecture\n", kProg);
  } else if (!counter) {
    std::printf("%s: CNTFRQ_EL0 reads 0: not watching CNTVCT\n", kProg);
  }
  std::fflush(stdout);

  const std::uint64_t threshold_ns = options.threshold_us * 1000;
  std::array<StepWatch, kClockCount> watches = {
      StepWatch(threshold_ns), StepWatch(threshold_ns), StepWatch(threshold_ns),
      StepWatch(counter ? vtime::guest_tools::MicrosecondsToTicksFloor(options.threshold_us, freq)
                        : 0)};
  const std::size_t clocks = counter ? kClockCount : kCntvct;
  std::vector<LoggedStep> log;
  log.reserve(options.max_log);  // No allocation inside the loop.
  std::uint64_t lost = 0;
  const timespec interval{static_cast<time_t>(options.interval_us / 1'000'000),
                          static_cast<long>(options.interval_us % 1'000'000 * 1000)};

  struct sigaction stop {};
  stop.sa_handler = [](int) { g_stop = 1; };
  sigemptyset(&stop.sa_mask);
  sigaction(SIGTERM, &stop, nullptr);
  sigaction(SIGINT, &stop, nullptr);
  const std::uint64_t start = ReadClock(CLOCK_MONOTONIC);
  const std::uint64_t start_real = ReadClock(CLOCK_REALTIME);
  timer_t timer{};
  if (options.timer_s != 0) {
    struct sigaction fired {};
    fired.sa_handler = [](int) {
      if (g_timer_fired.fetch_add(1) == 0) {
        clock_gettime(CLOCK_MONOTONIC, &g_timer_mono);
        clock_gettime(CLOCK_REALTIME, &g_timer_real);
      }
    };
    sigemptyset(&fired.sa_mask);
    sigaction(SIGALRM, &fired, nullptr);
    sigevent ev{};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGALRM;
    itimerspec at{};
    at.it_value.tv_sec = static_cast<time_t>(options.timer_s);
    if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0 || timer_settime(timer, 0, &at, nullptr) != 0) {
      std::printf("%s: cannot arm the POSIX timer\n", kProg);
      return 1;
    }
  }
  std::uint64_t previous_mono = start;
  const std::uint64_t duration_ns = options.duration_s * kNsPerSec;
  for (;;) {
    std::array<std::uint64_t, kClockCount> now{};
    now[kMonotonic] = ReadClock(CLOCK_MONOTONIC);
    now[kRealtime] = ReadClock(CLOCK_REALTIME);
    now[kBoottime] = ReadClock(CLOCK_BOOTTIME);
    if (counter) now[kCntvct] = ReadCntvct();
    for (std::size_t c = 0; c < clocks; ++c) {
      if (auto step = watches[c].Observe(now[c])) {
        if (log.size() < options.max_log) {
          log.push_back({c, previous_mono - start, *step});
        } else {
          ++lost;
        }
      }
    }
    previous_mono = now[kMonotonic];
    // Elapsed is taken modulo 2^64 as signed: a monotonic clock that went
    // backwards does not end the run early.
    if (Signed(now[kMonotonic] - start) >= static_cast<std::int64_t>(duration_ns) || g_stop != 0)
      break;
    if (options.interval_us != 0) clock_nanosleep(CLOCK_MONOTONIC, 0, &interval, nullptr);
  }

  for (const LoggedStep& s : log) PrintStep(s, freq);
  for (std::size_t c = 0; c < clocks; ++c) {
    const auto& st = watches[c].stats();
    std::printf("%s: summary clock=%s samples=%" PRIu64, kProg, kClockNames[c], st.samples);
    const char* unit = c == kCntvct ? "ticks" : "ns";
    std::printf(" max_forward_%s=%" PRIu64, unit, st.max_forward);
    if (c == kCntvct) {
      std::printf(" max_forward_ns=%" PRIu64,
                  vtime::guest_tools::TicksToNanoseconds(st.max_forward, freq));
    }
    std::printf(" backwards=%" PRIu64 " max_backwards_%s=%" PRIu64 " steps_over_threshold=%" PRIu64
                "\n",
                st.backwards, unit, st.max_backwards, st.over_threshold);
  }
  std::printf("%s: steps_logged=%zu lost=%" PRIu64 "\n", kProg, log.size(), lost);
  int status = 0;
  if (options.timer_s != 0) {
    const int fired = g_timer_fired.load();
    std::printf("%s: timer armed_s=%" PRIu64 " fired=%d", kProg, options.timer_s, fired);
    if (fired > 0) {
      auto ns = [](const timespec& t) {
        return static_cast<std::uint64_t>(std::int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec);
      };
      std::printf(" mono_after_ns=%" PRId64 " real_after_ns=%" PRId64,
                  Signed(ns(g_timer_mono) - start), Signed(ns(g_timer_real) - start_real));
    }
    std::printf("\n");
    timer_delete(timer);
  }
  for (std::size_t c = 0; c < clocks; ++c) {
    const auto& st = watches[c].stats();
    const bool ok = st.backwards == 0;
    if (!ok) status = 1;
    std::printf("%s - %s: %s never went backwards", ok ? "ok" : "not ok", kProg, kClockNames[c]);
    if (!ok) std::printf(": backwards=%" PRIu64, st.backwards);
    std::printf("\n");
  }
  std::printf("%s: exit %d\n", kProg, status);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::string_view arg : args) {
    if (arg == "-h" || arg == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
  }
  auto options = ParseOptions(args);
  if (!options) {
    std::fprintf(stderr, "vtime-clockwatch: %s\n", options.error().Message().c_str());
    return 2;
  }
  return Run(*options);
}
