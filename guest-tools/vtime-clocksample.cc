// vtime-clocksample: what a machine's traces need to be put on the counter's
// timeline (seed 002). Reads its kernel's counter-to-trace-clock conversion
// from a perf event's mmap page (the `local` and `perf` trace clocks on
// arm64 are the scheduler clock, on the arch counter) and takes direct
// readings of the counter around CLOCK_MONOTONIC and CLOCK_REALTIME, and
// writes them in the
// text form of vtime/trace/clock_sample.h. Runs on a host or in a guest.
#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "arm_counter.h"
#include "options.h"
#include "vtime/trace/clock_sample.h"

namespace {

using vtime::guest_tools::OptionValue;

constexpr const char* kHelp =
    R"(Usage: vtime-clocksample [--samples N] [--interval-ms MS] [--machine NAME]
                         [--output FILE]

Writes this machine's clock samples: the counter-to-trace-clock conversion its
kernel publishes in a perf event's mmap page (time_zero, time_mult,
time_shift, time_cycles, time_mask), CNTFRQ_EL0, and N direct readings
(default 10, MS ms apart, default 100) of CNTVCT_EL0 just before and just
after CLOCK_MONOTONIC and CLOCK_REALTIME. vtime-trace uses them to turn this
machine's trace timestamps (trace clock `local` or `perf`) into counter ticks,
and the wall clock to place two hosts' traces side by side.

  --machine NAME   the machine's name in the file (default: the host name and
                   the first 8 digits of its boot id, "NAME boot 1a2b3c4d":
                   the name vtvmm gives this host in its timeline)
  --output FILE    write there instead of standard output

Exit status: 0 written, 1 this kernel publishes no conversion
(cap_user_time_zero is 0, or perf events are not allowed), 2 usage.
)";

#if defined(__aarch64__)
using vtime::guest_tools::ReadCntfrq;
using vtime::guest_tools::ReadCntvct;

std::uint64_t ClockNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// The conversion from a perf event's first page, read under its seqlock.
bool ReadPerfClock(vtime::trace::PerfClock* out, std::string* why) {
  perf_event_attr attr{};
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_DUMMY;
  attr.exclude_kernel = 1;
  const long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
  if (fd < 0) {
    *why = std::string("perf_event_open: ") + std::strerror(errno) +
           " (perf_event_paranoid may forbid it)";
    return false;
  }
  const long page = sysconf(_SC_PAGESIZE);
  void* map =
      mmap(nullptr, static_cast<std::size_t>(page), PROT_READ, MAP_SHARED, static_cast<int>(fd), 0);
  if (map == MAP_FAILED) {
    *why = std::string("mmap of the perf page: ") + std::strerror(errno);
    close(static_cast<int>(fd));
    return false;
  }
  const auto* pc = static_cast<const volatile perf_event_mmap_page*>(map);
  bool zero = false;
  for (;;) {
    const std::uint32_t seq = pc->lock;
    std::atomic_thread_fence(std::memory_order_acquire);
    zero = pc->cap_user_time_zero != 0;
    const bool short_counter = pc->cap_user_time_short != 0;
    out->time_zero = pc->time_zero;
    out->time_mult = pc->time_mult;
    out->time_shift = pc->time_shift;
    out->time_cycles = short_counter ? pc->time_cycles : 0;
    out->time_mask = short_counter ? pc->time_mask : 0;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (pc->lock == seq && (seq & 1) == 0) break;
  }
  munmap(map, static_cast<std::size_t>(page));
  close(static_cast<int>(fd));
  if (!zero) {
    *why = "this kernel publishes no trace clock conversion (cap_user_time_zero is 0)";
    return false;
  }
  return true;
}
#endif

int Usage(const std::string& why) {
  std::fprintf(stderr, "vtime-clocksample: %s\n(vtime-clocksample --help for usage)\n",
               why.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  unsigned samples = 10, interval_ms = 100;
  std::string machine, output;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    if (a == "--samples" || a == "--interval-ms") {
      auto v = a == "--samples" ? OptionValue<unsigned>(args, i, 1, vtime::trace::kMaxClockSamples)
                                : OptionValue<unsigned>(args, i, 0, 60'000);
      if (!v) return Usage(v.error().context);
      (a == "--samples" ? samples : interval_ms) = *v;
    } else if ((a == "--machine" || a == "--output") && i + 1 < args.size() &&
               !args[i + 1].empty()) {
      (a == "--machine" ? machine : output) = std::string(args[++i]);
    } else {
      return Usage("unknown or incomplete argument '" + std::string(a) + "'");
    }
  }
#if defined(__aarch64__)
  vtime::trace::ClockSamples s;
  if (machine.empty()) {
    // The name vtvmm gives a host in its timeline (--timeline-host): one
    // boot of one machine is one counter.
    char host[257] = {};
    gethostname(host, sizeof host - 1);
    machine = host[0] != '\0' ? host : "unnamed";
    if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
      char id[64] = {};
      if (std::fgets(id, sizeof id, f) != nullptr && std::strlen(id) >= 8) {
        machine += " boot " + std::string(id, 8);
      }
      std::fclose(f);
    }
  }
  if (machine.size() > 256) return Usage("--machine: at most 256 bytes");
  s.machine = machine;
  s.wall_clock = true;
  s.counter_frequency_hz = ReadCntfrq();
  std::string why;
  if (!ReadPerfClock(&s.perf, &why)) {
    std::fprintf(stderr, "vtime-clocksample: %s\n", why.c_str());
    return 1;
  }
  for (unsigned n = 0; n < samples; ++n) {
    if (n != 0 && interval_ms != 0) usleep(interval_ms * 1000u);
    const std::uint64_t before = ReadCntvct();
    const std::uint64_t mono = ClockNs(CLOCK_MONOTONIC);
    const std::uint64_t wall = ClockNs(CLOCK_REALTIME);
    const std::uint64_t after = ReadCntvct();
    s.samples.push_back(vtime::trace::ClockSample{before, mono, after, wall});
  }
  const std::string text = s.Format();
  FILE* f = output.empty() ? stdout : std::fopen(output.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "vtime-clocksample: %s: %s\n", output.c_str(), std::strerror(errno));
    return 1;
  }
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if ((f != stdout ? std::fclose(f) : std::fflush(f)) != 0 || !ok) {
    std::fprintf(stderr, "vtime-clocksample: writing the samples failed\n");
    return 1;
  }
  return 0;
#else
  (void)samples;
  (void)interval_ms;
  std::fprintf(stderr, "vtime-clocksample: reads the arm64 counter: an arm64 build is needed\n");
  return 1;
#endif
}
