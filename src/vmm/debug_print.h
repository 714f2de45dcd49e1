// vtvmm's bulk print device: a guest hands the VMM a whole buffer of text
// with two register writes, where the PL011 costs one VM exit per byte.
// vtime's own test guests use it to print long logs (clockwatch's step
// log); it is not part of QEMU's virt machine.
//
// Registers (little-endian, at layout::kDebugPrint):
//   0x00 ADDR  write: guest-physical address of the buffer (32- or 64-bit
//              write; a 32-bit write at 0x04 sets the upper half)
//   0x08 LEN   write: prints LEN bytes from ADDR, at most kMaxLength
//   0x10 ID    read: kMagic ("VTDP")
// Everything else reads as zero and ignores writes. The guest controls
// every value: a buffer outside guest RAM, or too long, prints nothing and
// is reported (once) instead.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <string>

namespace vtime::vmm {

class DebugPrint {
 public:
  static constexpr std::uint32_t kMagic = 0x50445456;  // "VTDP"
  static constexpr std::uint32_t kMaxLength = 0x10000;
  static constexpr std::uint64_t kSize = 0x1000;

  /// `ram` is guest RAM, mapped at guest-physical `ram_base`; `out` gets
  /// each printed buffer, `refuse` the reason a request printed nothing.
  DebugPrint(std::span<const std::uint8_t> ram, std::uint64_t ram_base,
             std::function<void(std::string_view)> out,
             std::function<void(const std::string&)> refuse)
      : ram_(ram), ram_base_(ram_base), out_(std::move(out)), refuse_(std::move(refuse)) {}

  std::uint64_t Read(std::uint64_t offset, unsigned size) const;
  void Write(std::uint64_t offset, std::uint64_t value, unsigned size);

  /// The ADDR register, which a snapshot carries: a guest may be stopped
  /// between its ADDR and LEN writes.
  [[nodiscard]] std::uint64_t address() const { return addr_; }
  void set_address(std::uint64_t addr) { addr_ = addr; }

 private:
  std::span<const std::uint8_t> ram_;
  std::uint64_t ram_base_;
  std::function<void(std::string_view)> out_;
  std::function<void(const std::string&)> refuse_;
  std::uint64_t addr_ = 0;
};

}  // namespace vtime::vmm
