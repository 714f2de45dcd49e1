#include "vmm/debug_print.h"

#include "vtime/hex.h"

namespace vtime::vmm {
namespace {
constexpr std::uint64_t kAddr = 0x00;
constexpr std::uint64_t kAddrHigh = 0x04;
constexpr std::uint64_t kLen = 0x08;
constexpr std::uint64_t kId = 0x10;
}  // namespace

std::uint64_t DebugPrint::Read(std::uint64_t offset, unsigned size) const {
  if (offset == kId && size == 4) return kMagic;
  return 0;
}

void DebugPrint::Write(std::uint64_t offset, std::uint64_t value, unsigned size) {
  if (offset == kAddr && size == 8) {
    addr_ = value;
  } else if (offset == kAddr && size == 4) {
    addr_ = (addr_ & ~std::uint64_t{0xffffffff}) | (value & 0xffffffff);
  } else if (offset == kAddrHigh && size == 4) {
    addr_ = (addr_ & 0xffffffff) | (value << 32);
  } else if (offset == kLen && (size == 4 || size == 8)) {
    const std::uint64_t len = size == 4 ? (value & 0xffffffff) : value;
    if (len == 0) return;
    if (len > kMaxLength) {
      refuse_("bulk print of " + std::to_string(len) + " bytes: at most " +
              std::to_string(kMaxLength) + " per request");
      return;
    }
    // [addr, addr + len) inside RAM, without overflowing.
    if (addr_ < ram_base_ || addr_ - ram_base_ > ram_.size() ||
        len > ram_.size() - (addr_ - ram_base_)) {
      refuse_("bulk print of " + std::to_string(len) + " bytes at " + Hex(addr_) +
              ": not inside guest RAM");
      return;
    }
    const auto* p = ram_.data() + (addr_ - ram_base_);
    out_(std::string_view(reinterpret_cast<const char*>(p), len));
  }
}

}  // namespace vtime::vmm
