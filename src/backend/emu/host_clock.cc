// The emulated host counter: CLOCK_MONOTONIC scaled to the VMM's frequency.
#include <time.h>

#include "vtime/backend/emu.h"

namespace vtime::emu {
namespace {

std::uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace

HostCount EmuHostClock::Count() const {
  // The lab's 1 GHz is the common case: no 128-bit division on every read.
  if (frequency_.hz() == 1'000'000'000) return HostCount{MonotonicNs()};
  return HostCount{NanosecondsToTicksFloor(Nanoseconds{MonotonicNs()}, frequency_).value};
}

state::CapturePair EmuHostClock::CaptureNow() const {
  const HostCount host = Count();
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return state::CapturePair{host.value, static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 +
                                            static_cast<std::int64_t>(ts.tv_nsec)};
}

std::chrono::steady_clock::time_point EmuHostClock::TimeOf(HostCount count) const {
  // Rounded up, so that a sleep until then never wakes before the count.
  const Nanoseconds ns = TicksToNanosecondsCeil(Ticks{count.value}, frequency_);
  constexpr std::uint64_t kMax = static_cast<std::uint64_t>(INT64_MAX);
  return std::chrono::steady_clock::time_point(
      std::chrono::nanoseconds(static_cast<std::int64_t>(ns.value > kMax ? kMax : ns.value)));
}

}  // namespace vtime::emu
