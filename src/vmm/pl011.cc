#include "vmm/pl011.h"

namespace vtime::vmm {
namespace {
constexpr std::uint64_t kDr = 0x000;
constexpr std::uint64_t kFr = 0x018;
constexpr std::uint64_t kCr = 0x030;
constexpr std::uint64_t kImsc = 0x038;
// FR: transmit FIFO empty and receive FIFO empty; never busy, never full.
constexpr std::uint32_t kFrIdle = (1U << 7) | (1U << 4);
// PrimeCell peripheral and component IDs of a PL011 (r1p5), at 0xFE0..0xFFC.
constexpr std::uint32_t kIds[8] = {0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1};
}  // namespace

std::uint32_t Pl011::Read(std::uint64_t offset) const {
  if (offset == kFr) return kFrIdle;
  if (offset == kCr) return cr_;
  if (offset == kImsc) return imsc_;
  if (offset >= 0xfe0 && offset <= 0xffc && offset % 4 == 0) return kIds[(offset - 0xfe0) / 4];
  return 0;
}

void Pl011::Write(std::uint64_t offset, std::uint32_t value) {
  if (offset == kDr) {
    out_(static_cast<char>(value & 0xff));
  } else if (offset == kCr) {
    cr_ = value & 0xffff;
  } else if (offset == kImsc) {
    imsc_ = value & 0x7ff;
  }
}

}  // namespace vtime::vmm
