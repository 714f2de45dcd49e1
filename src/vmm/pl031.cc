#include "vmm/pl031.h"

namespace vtime::vmm {
namespace {
constexpr std::uint64_t kDr = 0x000;
constexpr std::uint64_t kMr = 0x004;
constexpr std::uint64_t kLr = 0x008;
constexpr std::uint64_t kCr = 0x00C;
constexpr std::uint64_t kImsc = 0x010;
constexpr std::uint64_t kRis = 0x014;
constexpr std::uint64_t kMis = 0x018;
constexpr std::uint64_t kIcr = 0x01C;
constexpr std::uint64_t kIdBase = 0xFE0;
// PrimeCell peripheral ID 0x00041031 (part 0x031, designer 0x41 "ARM",
// revision 0) and component ID 0xB105F00D, one byte per register.
constexpr std::uint32_t kIds[8] = {0x31, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1};
}  // namespace

std::uint32_t Pl031::Count(std::int64_t now_s) const {
  // The counter is 32 bits wide and wraps; the offset is whatever the guest
  // made it, so the sum is taken modulo 2^32 without signed overflow.
  return static_cast<std::uint32_t>(static_cast<std::uint64_t>(now_s) +
                                    static_cast<std::uint64_t>(state_.offset_s));
}

void Pl031::Advance(std::int64_t now_s) {
  const std::uint32_t now = Count(now_s);
  if (last_count_) {
    // The match fires on the tick that makes the counter equal RTCMR: was
    // that tick in (last, now]? Only forward steps under 2^31 count; a wall
    // clock stepped backwards moves nothing.
    const std::uint32_t stepped = now - *last_count_;
    const std::uint32_t to_match = state_.match - *last_count_;
    if (stepped < 0x80000000U && to_match != 0 && to_match <= stepped) state_.ris = true;
  }
  last_count_ = now;
}

std::uint32_t Pl031::Read(std::uint64_t offset, std::int64_t now_s, bool* known) {
  Advance(now_s);
  switch (offset) {
    case kDr:
      return Count(now_s);
    case kMr:
      return state_.match;
    case kLr:
      return state_.load;
    case kCr:
      return 1;
    case kImsc:
      return state_.imsc ? 1 : 0;
    case kRis:
      return state_.ris ? 1 : 0;
    case kMis:
      return InterruptLine() ? 1 : 0;
    case kIcr:
      return 0;  // write only
    default:
      break;
  }
  if (offset >= kIdBase && offset < kSize && offset % 4 == 0) return kIds[(offset - kIdBase) / 4];
  *known = false;
  return 0;
}

void Pl031::Write(std::uint64_t offset, std::uint32_t value, std::int64_t now_s, bool* known) {
  Advance(now_s);
  switch (offset) {
    case kMr:
      state_.match = value;
      return;
    case kLr: {
      state_.load = value;
      // From now on the counter reads `value`; that jump is a load, not
      // ticks, so it cannot fire a match.
      state_.offset_s = static_cast<std::int64_t>(value) - now_s;
      last_count_ = value;
      return;
    }
    case kImsc:
      state_.imsc = (value & 1) != 0;
      return;
    case kIcr:
      if ((value & 1) != 0) state_.ris = false;
      return;
    case kDr:
    case kCr:
    case kRis:
    case kMis:
      return;  // read only, or (RTCCR) already started
    default:
      break;
  }
  if (offset >= kIdBase && offset < kSize && offset % 4 == 0) return;  // read only
  *known = false;
}

}  // namespace vtime::vmm
