// A virtio console on the virtio-mmio transport (version 2, "modern"): one
// port, a receive queue (0) and a transmit queue (1), split virtqueues. A
// guest's console costs one exit per batch of bytes (Linux's hvc driver
// sends up to 16 bytes per kernel message chunk, a page per tty write)
// instead of the PL011's two exits per byte.
//
// Offered features: VIRTIO_F_VERSION_1 only (no multiport, no size, no
// indirect descriptors, no event index). The driver's
// VIRTQ_AVAIL_F_NO_INTERRUPT is honoured.
//
// Everything in the rings is the guest's to write, at any time, from any
// vCPU: every index, address and length is checked before use, a chain is
// followed at most queue-size descriptors, nothing is allocated from a
// guest value, and a ring the device cannot follow puts the device in
// DEVICE_NEEDS_RESET (with a configuration-change interrupt) rather than
// crashing or spinning.
//
// Pure: no clock, no I/O, no threads; the VMM serialises calls and gives
// the device a view of guest RAM.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "vtime/result.h"

namespace vtime::vmm {

/// Guest RAM as the device sees it: guest-physical `base` maps to bytes[0].
/// `wrote` (if set) hears of every range the device writes, as an offset
/// into `bytes` and a length: KVM's dirty log sees only the guest's own
/// writes, so a VMM migrating with pre-copy must resend these itself.
struct GuestRam {
  std::uint64_t base = 0;
  std::span<std::uint8_t> bytes;
  std::function<void(std::uint64_t offset, std::uint64_t len)> wrote;
};

class VirtioConsole {
 public:
  /// The transport's register window (virtio-mmio: 0x100 of registers and
  /// the device configuration after them).
  static constexpr std::uint64_t kSize = 0x200;
  /// Descriptors per queue the device offers (QueueNumMax).
  static constexpr std::uint32_t kQueueNumMax = 256;
  static constexpr unsigned kReceiveQueue = 0;
  static constexpr unsigned kTransmitQueue = 1;

  /// `out` receives every run of bytes the guest transmits (a view into
  /// guest RAM, valid during the call).
  VirtioConsole(GuestRam ram, std::function<void(std::span<const std::uint8_t>)> out)
      : ram_(ram), out_(std::move(out)) {}

  /// A guest access at `offset` in the window, of `size` bytes (1, 2, 4 or
  /// 8). `known` (if given) is cleared for registers the transport does
  /// not have (read as zero, writes ignored).
  std::uint32_t Read(std::uint64_t offset, unsigned size, bool* known = nullptr);
  void Write(std::uint64_t offset, std::uint32_t value, unsigned size, bool* known = nullptr);

  /// Offers received bytes; returns how many the guest took (into the
  /// buffers it posted on the receive queue). The rest stays with the
  /// caller: nothing is dropped.
  std::size_t Receive(std::span<const std::uint8_t> bytes);
  /// Whether Receive would take at least one byte now.
  [[nodiscard]] bool CanReceive() const;
  /// How many bytes Receive would take now (the posted buffers' room, at
  /// most kMaxRoom): 0 when it would take none.
  [[nodiscard]] std::size_t Room() const;
  static constexpr std::size_t kMaxRoom = 4096;
  /// Whether the driver has set DRIVER_OK (the console is in use).
  [[nodiscard]] bool DriverReady() const;
  /// The interrupt output: InterruptStatus != 0 (level).
  [[nodiscard]] bool Interrupt() const { return interrupt_status_ != 0; }
  /// Set when the guest's rings could not be followed (DEVICE_NEEDS_RESET);
  /// says why. Empty otherwise.
  [[nodiscard]] const std::string& Fault() const { return fault_; }

  /// The device's state for snapshots: u8 version 1, u32 status, u64
  /// driver features, u32 device-features select, u32 driver-features
  /// select, u32 queue select, u32 interrupt status, u32 config generation,
  /// then per queue (2): u32 num, u8 ready, u64 desc, u64 driver, u64
  /// device, u16 next avail, u16 next used. The rings themselves are in
  /// guest RAM.
  [[nodiscard]] std::vector<std::uint8_t> Save() const;
  /// Takes a Save()d state back; refuses a malformed one (the device is
  /// then unchanged).
  Result<void> Restore(std::span<const std::uint8_t> saved);

  /// Status bits (virtio 1.x, 2.1).
  static constexpr std::uint32_t kAcknowledge = 1;
  static constexpr std::uint32_t kDriver = 2;
  static constexpr std::uint32_t kDriverOk = 4;
  static constexpr std::uint32_t kFeaturesOk = 8;
  static constexpr std::uint32_t kNeedsReset = 64;
  static constexpr std::uint32_t kFailed = 128;

 private:
  struct Queue {
    std::uint32_t num = 0;
    bool ready = false;
    std::uint64_t desc = 0;
    std::uint64_t driver = 0;  ///< the available ring
    std::uint64_t device = 0;  ///< the used ring
    std::uint16_t next_avail = 0;
    std::uint16_t next_used = 0;
  };
  struct Descriptor {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t flags;
    std::uint16_t next;
  };

  void Reset();
  [[nodiscard]] bool Usable(const Queue& q) const;
  void Transmit();
  void NeedsReset(std::string why);
  /// A pointer to `len` bytes of guest RAM at `gpa`, or null if any is
  /// outside it.
  [[nodiscard]] std::uint8_t* At(std::uint64_t gpa, std::uint64_t len) const;
  // Tells ram_.wrote of a write at p (a pointer At gave).
  void Wrote(const std::uint8_t* p, std::uint64_t len) const;
  [[nodiscard]] bool ReadDescriptor(const Queue& q, std::uint32_t index, Descriptor* d) const;
  /// The available ring's idx (acquire), or false if the ring is unusable.
  [[nodiscard]] bool AvailIdx(const Queue& q, std::uint16_t* idx) const;
  [[nodiscard]] bool AvailEntry(const Queue& q, std::uint16_t slot, std::uint16_t* head) const;
  [[nodiscard]] bool InterruptsSuppressed(const Queue& q) const;
  void PushUsed(Queue& q, std::uint16_t head, std::uint32_t len);
  void Notify(const Queue& q);

  GuestRam ram_;
  std::function<void(std::span<const std::uint8_t>)> out_;
  std::uint32_t status_ = 0;
  std::uint64_t driver_features_ = 0;
  std::uint32_t device_features_sel_ = 0;
  std::uint32_t driver_features_sel_ = 0;
  std::uint32_t queue_sel_ = 0;
  std::uint32_t interrupt_status_ = 0;
  std::uint32_t config_generation_ = 0;
  std::array<Queue, 2> queues_{};
  std::string fault_;
};

}  // namespace vtime::vmm
