// The PL011 UART as far as a guest's console needs it: transmit, receive
// through a FIFO with its interrupts, the flags, and the PrimeCell ID
// registers Linux probes. Other registers read as zero and ignore writes.
//
// Receive: bytes enter with Receive() (the VMM's console input), only while
// the guest has the UART and its receiver enabled (CR.UARTEN and CR.RXE)
// and the FIFO has room (32 bytes with LCR_H.FEN, else 1): a refused byte
// stays with the caller, so nothing is dropped. Interrupts (RIS, masked by
// IMSC into MIS; the output line is MIS != 0):
//  - RX: the FIFO holds at least the IFLS trigger level (1 byte without the
//    FIFO); it clears as the guest reads below it;
//  - RT, receive timeout: set when a byte arrives, cleared by ICR or when
//    the FIFO empties. A real PL011 waits 32 bit periods of silence first;
//    vtvmm has no line timing, so it raises RT at once (a driver that reads
//    until RXFE, as Linux's does, cannot tell);
//  - TX: set when a written byte has left (the FIFO drained at once),
//    cleared by ICR: once per write, never a level the guest must mask.
// Pure: no clock, no I/O; the VMM serialises calls.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>

namespace vtime::vmm {

class Pl011 {
 public:
  /// `out` receives every byte the guest transmits.
  explicit Pl011(std::function<void(char)> out) : out_(std::move(out)) {}
  /// A guest read. Reads of DR take a byte from the receive FIFO.
  std::uint32_t Read(std::uint64_t offset);
  void Write(std::uint64_t offset, std::uint32_t value);
  /// Offers one received byte; false (and nothing changes) when the guest
  /// cannot take it now.
  bool Receive(std::uint8_t byte);
  /// Whether Receive would take a byte now.
  [[nodiscard]] bool CanReceive() const;
  /// The interrupt output (MIS != 0).
  [[nodiscard]] bool Interrupt() const { return Mis() != 0; }

  /// RIS/IMSC bits.
  static constexpr std::uint32_t kRxBit = 1U << 4;
  static constexpr std::uint32_t kTxBit = 1U << 5;
  static constexpr std::uint32_t kRtBit = 1U << 6;

 private:
  [[nodiscard]] std::size_t Depth() const;
  [[nodiscard]] std::size_t RxTrigger() const;
  [[nodiscard]] std::uint32_t Ris() const;
  [[nodiscard]] std::uint32_t Mis() const { return Ris() & imsc_; }

  std::function<void(char)> out_;
  std::deque<std::uint8_t> rx_;
  std::uint32_t cr_ = 0x300;  // TXE | RXE
  std::uint32_t lcr_h_ = 0;
  std::uint32_t ifls_ = 0x12;  // both triggers at half full
  std::uint32_t imsc_ = 0;
  bool rt_ = false;
  bool tx_ = false;
};

}  // namespace vtime::vmm
