#include "vmm/pl011.h"

namespace vtime::vmm {
namespace {
constexpr std::uint64_t kDr = 0x000;
constexpr std::uint64_t kFr = 0x018;
constexpr std::uint64_t kLcrH = 0x02c;
constexpr std::uint64_t kCr = 0x030;
constexpr std::uint64_t kIfls = 0x034;
constexpr std::uint64_t kImsc = 0x038;
constexpr std::uint64_t kRis = 0x03c;
constexpr std::uint64_t kMis = 0x040;
constexpr std::uint64_t kIcr = 0x044;
// FR bits. Transmit is never busy or full: bytes leave as they are written.
constexpr std::uint32_t kFrTxfe = 1U << 7;
constexpr std::uint32_t kFrRxff = 1U << 6;
constexpr std::uint32_t kFrRxfe = 1U << 4;
constexpr std::uint32_t kCrUarten = 1U << 0;
constexpr std::uint32_t kCrRxe = 1U << 9;
constexpr std::uint32_t kLcrHFen = 1U << 4;
constexpr std::size_t kFifoDepth = 32;  // PL011 r1p5
constexpr std::uint32_t kInterruptBits = 0x7ff;
// PrimeCell peripheral and component IDs of a PL011 (r1p5), at 0xFE0..0xFFC.
constexpr std::uint32_t kIds[8] = {0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1};
}  // namespace

std::size_t Pl011::Depth() const { return (lcr_h_ & kLcrHFen) != 0 ? kFifoDepth : 1; }

std::size_t Pl011::RxTrigger() const {
  if ((lcr_h_ & kLcrHFen) == 0) return 1;
  // IFLS.RXIFLSEL: 1/8, 1/4, 1/2, 3/4, 7/8 full; other values reserved
  // (taken as 1/2).
  static constexpr std::size_t kEighths[5] = {1, 2, 4, 6, 7};
  const std::uint32_t sel = (ifls_ >> 3) & 7;
  return kFifoDepth * (sel < 5 ? kEighths[sel] : 4) / 8;
}

std::uint32_t Pl011::Ris() const {
  std::uint32_t ris = 0;
  if (rx_.size() >= RxTrigger()) ris |= kRxBit;
  if (rt_) ris |= kRtBit;
  if (tx_) ris |= kTxBit;
  return ris;
}

bool Pl011::CanReceive() const {
  return (cr_ & (kCrUarten | kCrRxe)) == (kCrUarten | kCrRxe) && rx_.size() < Depth();
}

bool Pl011::Receive(std::uint8_t byte) {
  if (!CanReceive()) return false;
  rx_.push_back(byte);
  rt_ = true;
  return true;
}

std::uint32_t Pl011::Read(std::uint64_t offset) {
  switch (offset) {
    case kDr: {
      if (rx_.empty()) return 0;
      const std::uint8_t b = rx_.front();
      rx_.pop_front();
      if (rx_.empty()) rt_ = false;
      return b;
    }
    case kFr: {
      std::uint32_t fr = kFrTxfe;
      if (rx_.empty()) fr |= kFrRxfe;
      if (rx_.size() >= Depth()) fr |= kFrRxff;
      return fr;
    }
    case kLcrH:
      return lcr_h_;
    case kCr:
      return cr_;
    case kIfls:
      return ifls_;
    case kImsc:
      return imsc_;
    case kRis:
      return Ris();
    case kMis:
      return Mis();
    default:
      break;
  }
  if (offset >= 0xfe0 && offset <= 0xffc && offset % 4 == 0) return kIds[(offset - 0xfe0) / 4];
  return 0;
}

void Pl011::Write(std::uint64_t offset, std::uint32_t value) {
  switch (offset) {
    case kDr:
      out_(static_cast<char>(value & 0xff));
      tx_ = true;
      break;
    case kLcrH:
      // Bytes already received stay when the FIFO is turned off; only new
      // ones wait until they fit the one-byte holding register.
      lcr_h_ = value & 0xff;
      break;
    case kCr:
      cr_ = value & 0xffff;
      break;
    case kIfls:
      ifls_ = value & 0x3f;
      break;
    case kImsc:
      imsc_ = value & kInterruptBits;
      break;
    case kIcr:
      if ((value & kRtBit) != 0) rt_ = false;
      if ((value & kTxBit) != 0) tx_ = false;
      break;
    default:
      break;
  }
}

}  // namespace vtime::vmm
