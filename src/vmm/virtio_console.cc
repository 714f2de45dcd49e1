#include "vmm/virtio_console.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "vtime/wire.h"

namespace vtime::vmm {
namespace {

// virtio-mmio registers (virtio 1.x, 4.2.2).
constexpr std::uint64_t kMagicValue = 0x000;
constexpr std::uint64_t kVersion = 0x004;
constexpr std::uint64_t kDeviceId = 0x008;
constexpr std::uint64_t kVendorId = 0x00c;
constexpr std::uint64_t kDeviceFeatures = 0x010;
constexpr std::uint64_t kDeviceFeaturesSel = 0x014;
constexpr std::uint64_t kDriverFeatures = 0x020;
constexpr std::uint64_t kDriverFeaturesSel = 0x024;
constexpr std::uint64_t kQueueSel = 0x030;
constexpr std::uint64_t kQueueNumMaxRegister = 0x034;
constexpr std::uint64_t kQueueNum = 0x038;
constexpr std::uint64_t kQueueReady = 0x044;
constexpr std::uint64_t kQueueNotify = 0x050;
constexpr std::uint64_t kInterruptStatus = 0x060;
constexpr std::uint64_t kInterruptAck = 0x064;
constexpr std::uint64_t kStatus = 0x070;
constexpr std::uint64_t kQueueDescLow = 0x080;
constexpr std::uint64_t kQueueDescHigh = 0x084;
constexpr std::uint64_t kQueueDriverLow = 0x090;
constexpr std::uint64_t kQueueDriverHigh = 0x094;
constexpr std::uint64_t kQueueDeviceLow = 0x0a0;
constexpr std::uint64_t kQueueDeviceHigh = 0x0a4;
constexpr std::uint64_t kConfigGeneration = 0x0fc;
constexpr std::uint64_t kConfig = 0x100;
// struct virtio_console_config: u16 cols, u16 rows, u32 max_nr_ports, u32
// emerg_wr; meaningful only with features this device does not offer.
constexpr std::uint64_t kConfigSize = 12;

constexpr std::uint32_t kMagic = 0x74726976;  // "virt", little endian
constexpr std::uint32_t kConsoleDeviceId = 3;
constexpr std::uint32_t kVendor = 0x656d6976;  // "vime": vtime's own
constexpr std::uint64_t kFeatureVersion1 = 1ULL << 32;
constexpr std::uint64_t kOffered = kFeatureVersion1;

constexpr std::uint16_t kDescNext = 1;
constexpr std::uint16_t kDescWrite = 2;
constexpr std::uint16_t kDescIndirect = 4;
constexpr std::uint16_t kAvailNoInterrupt = 1;
constexpr std::uint32_t kUsedBufferInterrupt = 1;
constexpr std::uint32_t kConfigChangeInterrupt = 2;

constexpr std::uint8_t kSaveVersion = 1;
constexpr std::size_t kSavedQueueBytes = 4 + 1 + 8 + 8 + 8 + 2 + 2;
constexpr std::size_t kSavedBytes = 1 + 4 + 8 + 4 + 4 + 4 + 4 + 4 + 2 * kSavedQueueBytes;

std::uint16_t Load16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

bool ValidNum(std::uint32_t num) {
  return num != 0 && num <= VirtioConsole::kQueueNumMax && (num & (num - 1)) == 0;
}

}  // namespace

std::uint8_t* VirtioConsole::At(std::uint64_t gpa, std::uint64_t len) const {
  if (gpa < ram_.base) return nullptr;
  const std::uint64_t off = gpa - ram_.base;
  if (off > ram_.bytes.size() || len > ram_.bytes.size() - off) return nullptr;
  return ram_.bytes.data() + off;
}

bool VirtioConsole::Usable(const Queue& q) const {
  // Alignments: descriptors 16, available ring 2, used ring 4 (2.7).
  return (status_ & kDriverOk) != 0 && (status_ & kNeedsReset) == 0 && q.ready &&
         ValidNum(q.num) && q.desc % 16 == 0 && q.driver % 2 == 0 && q.device % 4 == 0 &&
         At(q.desc, 16ULL * q.num) != nullptr && At(q.driver, 6 + 2ULL * q.num) != nullptr &&
         At(q.device, 6 + 8ULL * q.num) != nullptr;
}

void VirtioConsole::NeedsReset(std::string why) {
  if ((status_ & kNeedsReset) != 0) return;
  status_ |= kNeedsReset;
  interrupt_status_ |= kConfigChangeInterrupt;
  fault_ = std::move(why);
}

bool VirtioConsole::AvailIdx(const Queue& q, std::uint16_t* idx) const {
  const std::uint8_t* p = At(q.driver + 2, 2);
  if (p == nullptr) return false;
  *idx = Load16(p);
  // The entries and descriptors the index covers are read after it.
  std::atomic_thread_fence(std::memory_order_acquire);
  return true;
}

bool VirtioConsole::AvailEntry(const Queue& q, std::uint16_t slot, std::uint16_t* head) const {
  const std::uint8_t* p = At(q.driver + 4 + 2ULL * (slot % q.num), 2);
  if (p == nullptr) return false;
  *head = Load16(p);
  return true;
}

bool VirtioConsole::InterruptsSuppressed(const Queue& q) const {
  const std::uint8_t* p = At(q.driver, 2);
  return p != nullptr && (Load16(p) & kAvailNoInterrupt) != 0;
}

bool VirtioConsole::ReadDescriptor(const Queue& q, std::uint32_t index, Descriptor* d) const {
  const std::uint8_t* p = index < q.num ? At(q.desc + 16ULL * index, 16) : nullptr;
  if (p == nullptr) return false;
  std::memcpy(&d->addr, p, 8);
  std::memcpy(&d->len, p + 8, 4);
  std::memcpy(&d->flags, p + 12, 2);
  std::memcpy(&d->next, p + 14, 2);
  return true;
}

void VirtioConsole::Wrote(const std::uint8_t* p, std::uint64_t len) const {
  if (ram_.wrote) ram_.wrote(static_cast<std::uint64_t>(p - ram_.bytes.data()), len);
}

void VirtioConsole::PushUsed(Queue& q, std::uint16_t head, std::uint32_t len) {
  std::uint8_t* e = At(q.device + 4 + 8ULL * (q.next_used % q.num), 8);
  std::uint8_t* idx = At(q.device + 2, 2);
  if (e == nullptr || idx == nullptr) return;  // Usable() checked the ring
  const std::uint32_t id = head;
  std::memcpy(e, &id, 4);
  std::memcpy(e + 4, &len, 4);
  ++q.next_used;
  // The entry is visible before the index that publishes it.
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(idx, &q.next_used, 2);
  Wrote(e, 8);
  Wrote(idx, 2);
}

void VirtioConsole::Notify(const Queue& q) {
  if (!InterruptsSuppressed(q)) interrupt_status_ |= kUsedBufferInterrupt;
}

void VirtioConsole::Transmit() {
  Queue& q = queues_[kTransmitQueue];
  if (!Usable(q)) return;
  std::uint16_t avail = 0;
  if (!AvailIdx(q, &avail)) return;
  const auto pending = static_cast<std::uint16_t>(avail - q.next_avail);
  if (pending > q.num) {
    NeedsReset("transmit queue: the available index ran " + std::to_string(pending) +
               " entries ahead of a queue of " + std::to_string(q.num));
    return;
  }
  bool used = false;
  for (std::uint16_t n = 0; n < pending; ++n) {
    std::uint16_t head = 0;
    if (!AvailEntry(q, q.next_avail, &head)) return;
    std::uint32_t index = head;
    for (std::uint32_t hops = 0;; ++hops) {
      Descriptor d{};
      if (hops == q.num || !ReadDescriptor(q, index, &d) || (d.flags & kDescIndirect) != 0) {
        NeedsReset("transmit queue: descriptor chain from " + std::to_string(head) +
                   " is out of the table, loops, or is indirect");
        return;
      }
      if ((d.flags & kDescWrite) == 0) {  // device-writable ones carry nothing out
        const std::uint8_t* p = At(d.addr, d.len);
        if (p == nullptr) {
          NeedsReset("transmit queue: a buffer lies outside guest RAM");
          return;
        }
        if (d.len != 0) out_({p, d.len});
      }
      if ((d.flags & kDescNext) == 0) break;
      index = d.next;
    }
    ++q.next_avail;
    PushUsed(q, head, 0);
    used = true;
  }
  if (used) Notify(q);
}

bool VirtioConsole::CanReceive() const {
  const Queue& q = queues_[kReceiveQueue];
  if (!Usable(q)) return false;
  std::uint16_t avail = 0;
  return AvailIdx(q, &avail) && avail != q.next_avail;
}

std::size_t VirtioConsole::Room() const {
  const Queue& q = queues_[kReceiveQueue];
  if (!Usable(q)) return 0;
  std::uint16_t avail = 0;
  if (!AvailIdx(q, &avail)) return 0;
  const auto pending = static_cast<std::uint16_t>(avail - q.next_avail);
  if (pending > q.num) return 0;  // Receive() says why
  std::size_t room = 0;
  for (std::uint16_t n = 0; n < pending && room < kMaxRoom; ++n) {
    std::uint16_t head = 0;
    if (!AvailEntry(q, static_cast<std::uint16_t>(q.next_avail + n), &head)) return room;
    std::uint32_t index = head;
    std::uint64_t chain = 0;
    for (std::uint32_t hops = 0;; ++hops) {
      Descriptor d{};
      if (hops == q.num || !ReadDescriptor(q, index, &d) || (d.flags & kDescIndirect) != 0 ||
          (d.flags & kDescWrite) == 0 || At(d.addr, d.len) == nullptr) {
        return room;  // a bad chain takes nothing; Receive() reports it
      }
      chain += d.len;
      if ((d.flags & kDescNext) == 0) break;
      index = d.next;
    }
    room += static_cast<std::size_t>(std::min<std::uint64_t>(chain, kMaxRoom));
  }
  return std::min(room, kMaxRoom);
}

bool VirtioConsole::DriverReady() const {
  return (status_ & kDriverOk) != 0 && (status_ & kNeedsReset) == 0;
}

std::size_t VirtioConsole::Receive(std::span<const std::uint8_t> bytes) {
  Queue& q = queues_[kReceiveQueue];
  std::size_t taken = 0;
  if (!Usable(q)) return 0;
  std::uint16_t avail = 0;
  if (!AvailIdx(q, &avail)) return 0;
  const auto pending = static_cast<std::uint16_t>(avail - q.next_avail);
  if (pending > q.num) {
    NeedsReset("receive queue: the available index ran " + std::to_string(pending) +
               " entries ahead of a queue of " + std::to_string(q.num));
    return 0;
  }
  bool used = false;
  for (std::uint16_t n = 0; n < pending && taken < bytes.size(); ++n) {
    std::uint16_t head = 0;
    if (!AvailEntry(q, q.next_avail, &head)) break;
    // Check the whole chain before writing into it, so that a bad chain
    // takes no byte (and none is lost).
    std::uint32_t index = head;
    std::uint64_t room = 0;
    for (std::uint32_t hops = 0;; ++hops) {
      Descriptor d{};
      if (hops == q.num || !ReadDescriptor(q, index, &d) || (d.flags & kDescIndirect) != 0 ||
          (d.flags & kDescWrite) == 0 || At(d.addr, d.len) == nullptr) {
        NeedsReset("receive queue: descriptor chain from " + std::to_string(head) +
                   " is out of the table or RAM, loops, or is not device-writable");
        if (used) Notify(q);
        return taken;
      }
      room += d.len;
      if ((d.flags & kDescNext) == 0) break;
      index = d.next;
    }
    std::uint32_t written = 0;
    index = head;
    while (taken < bytes.size()) {
      Descriptor d{};
      if (!ReadDescriptor(q, index, &d)) break;
      std::uint8_t* p = At(d.addr, d.len);
      // The guest may have rewritten the chain since the check: re-check.
      if (p == nullptr || (d.flags & kDescWrite) == 0) break;
      const std::size_t part = std::min<std::size_t>(d.len, bytes.size() - taken);
      std::memcpy(p, bytes.data() + taken, part);
      Wrote(p, part);
      taken += part;
      written += static_cast<std::uint32_t>(part);
      if ((d.flags & kDescNext) == 0 || written >= room) break;
      index = d.next;
    }
    ++q.next_avail;
    PushUsed(q, head, written);
    used = true;
  }
  if (used) Notify(q);
  return taken;
}

void VirtioConsole::Reset() {
  status_ = 0;
  driver_features_ = 0;
  device_features_sel_ = 0;
  driver_features_sel_ = 0;
  queue_sel_ = 0;
  interrupt_status_ = 0;
  queues_ = {};
  fault_.clear();
}

std::uint32_t VirtioConsole::Read(std::uint64_t offset, unsigned size, bool* known) {
  if (offset >= kConfig) {
    // The configuration space takes any width; it reads as zero here.
    if (offset + size > kConfig + kConfigSize && known != nullptr) *known = false;
    return 0;
  }
  if (size != 4 || offset % 4 != 0) {
    if (known != nullptr) *known = false;
    return 0;
  }
  const Queue* q = queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
  switch (offset) {
    case kMagicValue:
      return kMagic;
    case kVersion:
      return 2;
    case kDeviceId:
      return kConsoleDeviceId;
    case kVendorId:
      return kVendor;
    case kDeviceFeatures:
      return device_features_sel_ < 2
                 ? static_cast<std::uint32_t>(kOffered >> (32 * device_features_sel_))
                 : 0;
    case kQueueNumMaxRegister:
      return q != nullptr ? kQueueNumMax : 0;
    case kQueueReady:
      return q != nullptr && q->ready ? 1 : 0;
    case kInterruptStatus:
      return interrupt_status_;
    case kStatus:
      return status_;
    case kConfigGeneration:
      return config_generation_;
    case kQueueDescLow:
    case kQueueDescHigh:
    case kQueueDriverLow:
    case kQueueDriverHigh:
    case kQueueDeviceLow:
    case kQueueDeviceHigh:
    case kQueueNum:
      return 0;  // write-only in the transport's table
    default:
      break;
  }
  if (known != nullptr) *known = false;
  return 0;
}

void VirtioConsole::Write(std::uint64_t offset, std::uint32_t value, unsigned size, bool* known) {
  if (offset >= kConfig) return;  // nothing writable in the configuration
  if (size != 4 || offset % 4 != 0) {
    if (known != nullptr) *known = false;
    return;
  }
  Queue* q = queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
  auto set_low = [](std::uint64_t* a, std::uint32_t v) { *a = (*a & ~0xffffffffULL) | v; };
  auto set_high = [](std::uint64_t* a, std::uint32_t v) {
    *a = (*a & 0xffffffffULL) | (std::uint64_t{v} << 32);
  };
  switch (offset) {
    case kDeviceFeaturesSel:
      device_features_sel_ = value;
      return;
    case kDriverFeatures:
      if (driver_features_sel_ == 0) set_low(&driver_features_, value);
      if (driver_features_sel_ == 1) set_high(&driver_features_, value);
      return;
    case kDriverFeaturesSel:
      driver_features_sel_ = value;
      return;
    case kQueueSel:
      queue_sel_ = value;
      return;
    case kQueueNum:
      if (q != nullptr) q->num = value;
      return;
    case kQueueReady:
      if (q != nullptr) q->ready = (value & 1) != 0;
      return;
    case kQueueNotify:
      if (value == kTransmitQueue) Transmit();
      return;  // the receive queue's new buffers are taken by Receive()
    case kInterruptAck:
      interrupt_status_ &= ~value;
      return;
    case kStatus:
      if (value == 0) {
        Reset();
        return;
      }
      // FEATURES_OK only sticks for a feature set this device offers and
      // that includes VERSION_1 (3.1.1).
      if ((value & kFeaturesOk) != 0 && ((driver_features_ & ~kOffered) != 0 ||
                                         (driver_features_ & kFeatureVersion1) == 0)) {
        value &= ~kFeaturesOk;
      }
      status_ = (status_ & kNeedsReset) | (value & 0xff & ~kNeedsReset);
      return;
    case kQueueDescLow:
      if (q != nullptr) set_low(&q->desc, value);
      return;
    case kQueueDescHigh:
      if (q != nullptr) set_high(&q->desc, value);
      return;
    case kQueueDriverLow:
      if (q != nullptr) set_low(&q->driver, value);
      return;
    case kQueueDriverHigh:
      if (q != nullptr) set_high(&q->driver, value);
      return;
    case kQueueDeviceLow:
      if (q != nullptr) set_low(&q->device, value);
      return;
    case kQueueDeviceHigh:
      if (q != nullptr) set_high(&q->device, value);
      return;
    default:
      break;
  }
  if (known != nullptr) *known = false;
}

std::vector<std::uint8_t> VirtioConsole::Save() const {
  wire::Writer w;
  w.U8(kSaveVersion);
  w.U32(status_);
  w.U64(driver_features_);
  w.U32(device_features_sel_);
  w.U32(driver_features_sel_);
  w.U32(queue_sel_);
  w.U32(interrupt_status_);
  w.U32(config_generation_);
  for (const Queue& q : queues_) {
    w.U32(q.num);
    w.U8(q.ready ? 1 : 0);
    w.U64(q.desc);
    w.U64(q.driver);
    w.U64(q.device);
    w.U16(q.next_avail);
    w.U16(q.next_used);
  }
  return w.Take();
}

Result<void> VirtioConsole::Restore(std::span<const std::uint8_t> saved) {
  if (saved.size() != kSavedBytes) {
    return Fail(ErrorCode::kMalformed, "virtio console state: " + std::to_string(saved.size()) +
                                         " bytes, expected " + std::to_string(kSavedBytes));
  }
  wire::Reader r(saved, "virtio console state");
  const auto version = r.U8();
  if (!version || *version != kSaveVersion) {
    return Fail(ErrorCode::kUnsupported, "virtio console state: version " +
                                             std::to_string(version ? *version : 0) +
                                             " (this vtvmm reads " +
                                             std::to_string(kSaveVersion) + ")");
  }
  VirtioConsole next(ram_, out_);
  auto u32 = [&](std::uint32_t* v) {
    auto x = r.U32();
    if (x) *v = *x;
  };
  u32(&next.status_);
  if (auto x = r.U64()) next.driver_features_ = *x;
  u32(&next.device_features_sel_);
  u32(&next.driver_features_sel_);
  u32(&next.queue_sel_);
  u32(&next.interrupt_status_);
  u32(&next.config_generation_);
  for (Queue& q : next.queues_) {
    u32(&q.num);
    if (auto x = r.U8()) q.ready = *x != 0;
    if (auto x = r.U64()) q.desc = *x;
    if (auto x = r.U64()) q.driver = *x;
    if (auto x = r.U64()) q.device = *x;
    if (auto x = r.U16()) q.next_avail = *x;
    if (auto x = r.U16()) q.next_used = *x;
    // Any size restores, as the guest could write it: Usable() refuses a
    // queue of an impossible size when it is used.
  }
  // The driver's features are whatever it wrote (FEATURES_OK says whether
  // they were accepted): any value restores.
  if (next.status_ > 0xff || next.interrupt_status_ > 3) {
    return Fail(ErrorCode::kMalformed, "virtio console state: status or interrupt status "
                                     "out of range");
  }
  if ((next.status_ & kNeedsReset) != 0) next.fault_ = "restored in DEVICE_NEEDS_RESET";
  *this = std::move(next);
  return Ok();
}

}  // namespace vtime::vmm
