#include "vtime/units.h"

#include <cassert>
#include <limits>

namespace vtime {
namespace {

// 128-bit intermediates keep ticks * 1e9 exact for any 64-bit tick count.
__extension__ using U128 = unsigned __int128;

constexpr std::uint64_t kNsPerSecond = 1'000'000'000;
constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

std::uint64_t Saturate(U128 v) { return v > kMax ? kMax : static_cast<std::uint64_t>(v); }

}  // namespace

Nanoseconds TicksToNanosecondsCeil(Ticks ticks, FrequencyHz freq) {
  assert(FrequencyHz::Valid(freq.hz()));
  const U128 num = static_cast<U128>(ticks.value) * kNsPerSecond;
  return Nanoseconds{Saturate((num + freq.hz() - 1) / freq.hz())};
}

Ticks NanosecondsToTicksFloor(Nanoseconds ns, FrequencyHz freq) {
  assert(FrequencyHz::Valid(freq.hz()));
  const U128 num = static_cast<U128>(ns.value) * freq.hz();
  return Ticks{Saturate(num / kNsPerSecond)};
}

}  // namespace vtime
