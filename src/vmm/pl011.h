// The PL011 UART as far as a guest's console needs it: transmit, flags that
// say "ready", and the PrimeCell ID registers Linux probes. Reads of other
// registers are zero and writes to them are ignored.
#pragma once

#include <cstdint>
#include <functional>

namespace vtime::vmm {

class Pl011 {
 public:
  /// `out` receives every byte the guest transmits.
  explicit Pl011(std::function<void(char)> out) : out_(std::move(out)) {}
  std::uint32_t Read(std::uint64_t offset) const;
  void Write(std::uint64_t offset, std::uint32_t value);

 private:
  std::function<void(char)> out_;
  std::uint32_t cr_ = 0x300;  // TXE | RXE
  std::uint32_t imsc_ = 0;
};

}  // namespace vtime::vmm
