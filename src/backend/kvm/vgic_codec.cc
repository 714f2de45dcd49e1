// The vGICv3 state's snapshot encoding and the checks a decoded state must
// pass. Pure (no KVM, no OS header): the bytes come from a file or a
// migration peer, so this is built, unit-tested and fuzzed on every host.
#include "vtime/backend/vgic_codec.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>

#include "backend/kvm/vgic_registers.h"
#include "vtime/hex.h"

namespace vtime::kvm {
namespace {

template <class V>
Result<void> CheckSortedUnique(const std::vector<std::pair<std::uint64_t, V>>& list,
                               const char* what) {
  for (std::size_t i = 1; i < list.size(); ++i) {
    if (list[i - 1].first >= list[i].first) {
      return Fail(ErrorCode::kMalformed, std::string("vGIC state: ") + what + " entry " +
                                             std::to_string(i) + " (attr " + Hex(list[i].first) +
                                             ") is out of order or repeated");
    }
  }
  return Ok();
}

// ---- Encoding ---------------------------------------------------------

constexpr std::array<std::uint8_t, 8> kMagic = {'V', 'T', 'V', 'G', 'I', 'C', '3', 0};
constexpr std::uint32_t kVersion = 1;

// zlib's CRC-32 (IEEE 802.3), as every vtime format uses.
std::uint32_t Crc32(std::span<const std::uint8_t> bytes) {
  return static_cast<std::uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), bytes.data(), static_cast<uInt>(bytes.size())));
}

void Put(std::vector<std::uint8_t>& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

class Cursor {
 public:
  Cursor(std::span<const std::uint8_t> b, std::size_t at) : b_(b), at_(at) {}
  Result<std::uint64_t> Take(std::size_t n, const char* what) {
    if (n > b_.size() - at_) {
      return Fail(ErrorCode::kMalformed, std::string("vGIC state: truncated reading ") + what +
                                             " at byte " + std::to_string(at_) + " of " +
                                             std::to_string(b_.size()));
    }
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{b_[at_ + i]} << (8 * i);
    at_ += n;
    return v;
  }
  [[nodiscard]] std::size_t at() const { return at_; }
  [[nodiscard]] std::size_t remaining() const { return b_.size() - at_; }

 private:
  std::span<const std::uint8_t> b_;
  std::size_t at_ = 0;
};

template <class V>
void PutList(std::vector<std::uint8_t>& out, const std::vector<std::pair<std::uint64_t, V>>& list) {
  Put(out, list.size(), 4);
  for (const auto& [attr, value] : list) {
    Put(out, attr, 8);
    Put(out, value, sizeof(V));
  }
}

template <class V>
Result<void> TakeList(Cursor& c, std::vector<std::pair<std::uint64_t, V>>& list, const char* what) {
  auto n = c.Take(4, what);
  if (!n) return tl::unexpected(n.error());
  constexpr std::size_t kEntry = 8 + sizeof(V);
  // Bound the count by the bytes left before allocating anything.
  if (*n > c.remaining() / kEntry) {
    return Fail(ErrorCode::kMalformed, std::string("vGIC state: ") + what + " count " +
                                           std::to_string(*n) + " at byte " +
                                           std::to_string(c.at() - 4) + " exceeds the bytes left");
  }
  list.reserve(static_cast<std::size_t>(*n));
  for (std::uint64_t i = 0; i < *n; ++i) {
    auto attr = c.Take(8, what);
    if (!attr) return tl::unexpected(attr.error());
    auto value = c.Take(sizeof(V), what);
    if (!value) return tl::unexpected(value.error());
    list.emplace_back(*attr, static_cast<V>(*value));
  }
  return Ok();
}

}  // namespace

bool ValidNrIrqs(std::uint32_t n) { return n >= 64 && n <= 1024 && n % 32 == 0; }

// Per-IRQ ranges start at the SPIs: with affinity routing (always on in
// KVM's GICv3) the distributor's SGI/PPI words are RAZ/WI.
Phase DistPhase(std::uint64_t offset, std::uint32_t nr_irqs) {
  auto in_bits = [&](std::uint32_t base, std::uint32_t bits_per_irq) {
    const std::uint64_t first = base + 32ULL * bits_per_irq / 8;
    const std::uint64_t end = base + std::uint64_t{nr_irqs} * bits_per_irq / 8;
    return offset >= first && offset < end && offset % 4 == 0;
  };
  if (offset == kGicdIidr) return kIdentify;
  if (offset == kGicdCtlr) return kGlobalEnable;
  if (in_bits(kGicdIgroupr, 1) || in_bits(kGicdIpriorityr, 8) || in_bits(kGicdIcfgr, 2) ||
      in_bits(kGicdIrouter, 64)) {
    return kConfig;
  }
  if (in_bits(kGicdIspendr, 1)) return kPending;
  if (in_bits(kGicdIsactiver, 1)) return kActive;
  if (in_bits(kGicdIsenabler, 1)) return kEnable;
  return kNotSaved;
}

Phase RedistPhase(std::uint64_t offset) {
  switch (offset) {
    case kGicrCtlr:
      return kGlobalEnable;
    case vgic::kSgiFrame + kGicdIgroupr:
    case vgic::kSgiFrame + kGicdIcfgr:
    case vgic::kSgiFrame + kGicdIcfgr + 4:
      return kConfig;
    case vgic::kSgiFrame + kGicdIspendr:
      return kPending;
    case vgic::kSgiFrame + kGicdIsactiver:
      return kActive;
    case vgic::kSgiFrame + kGicdIsenabler:
      return kEnable;
    default:
      break;
  }
  if (offset >= vgic::kSgiFrame + kGicdIpriorityr &&
      offset < vgic::kSgiFrame + kGicdIpriorityr + 32 && offset % 4 == 0) {
    return kConfig;
  }
  return kNotSaved;
}

int SysregRank(std::uint64_t id) {
  for (int i = 0; i < 5; ++i) {
    if (kIccFixed[static_cast<std::size_t>(i)] == id) return i;
  }
  if (id >= vgic::kIccAp0r0 && id < vgic::kIccAp0r0 + 4) {
    return 5 + static_cast<int>(id - vgic::kIccAp0r0);
  }
  if (id >= vgic::kIccAp1r0 && id < vgic::kIccAp1r0 + 4) {
    return 9 + static_cast<int>(id - vgic::kIccAp1r0);
  }
  if (id == vgic::kIccIgrpen0) return 13;
  if (id == vgic::kIccIgrpen1) return 14;
  // A guest hypervisor's virtualization interface: its guest's view (VMCR)
  // and active priorities, the list registers, and ICH_HCR_EL2 (whose En
  // turns the interface on) last.
  if (id == vgic::kIchVmcr) return 15;
  if (id >= vgic::kIchAp0r0 && id < vgic::kIchAp0r0 + 4) {
    return 16 + static_cast<int>(id - vgic::kIchAp0r0);
  }
  if (id >= vgic::kIchAp1r0 && id < vgic::kIchAp1r0 + 4) {
    return 20 + static_cast<int>(id - vgic::kIchAp1r0);
  }
  if (id >= vgic::kIchLr0 && id < vgic::kIchLr0 + 8)
    return 24 + static_cast<int>(id - vgic::kIchLr0);
  if (id >= vgic::kIchLr8 && id < vgic::kIchLr8 + 8)
    return 32 + static_cast<int>(id - vgic::kIchLr8);
  if (id == vgic::kIchHcr) return 40;
  return -1;
}

Result<void> CheckShape(const VgicState& s) {
  if (!ValidNrIrqs(s.nr_irqs)) {
    return Fail(ErrorCode::kMalformed, "vGIC state: " + std::to_string(s.nr_irqs) +
                                           " interrupts is not 64..1024 in steps of 32");
  }
  for (auto r :
       {CheckSortedUnique(s.dist, "distributor"), CheckSortedUnique(s.redist, "redistributor"),
        CheckSortedUnique(s.cpu_sysregs, "CPU interface"),
        CheckSortedUnique(s.line_levels, "line level")}) {
    if (!r) return r;
  }
  for (const auto& [attr, value] : s.dist) {
    if (attr > 0xffffffffU || DistPhase(attr, s.nr_irqs) == kNotSaved) {
      return Fail(ErrorCode::kMalformed, "vGIC state: distributor attr " + Hex(attr) +
                                             " is not a saved register for " +
                                             std::to_string(s.nr_irqs) + " interrupts");
    }
  }
  for (const auto& [attr, value] : s.redist) {
    if (RedistPhase(attr & 0xffffffffU) == kNotSaved) {
      return Fail(ErrorCode::kMalformed,
                  "vGIC state: redistributor attr " + Hex(attr) + " is not a saved register");
    }
  }
  for (const auto& [attr, value] : s.cpu_sysregs) {
    if (SysregRank(attr & 0xffffffffU) < 0) {
      return Fail(ErrorCode::kMalformed,
                  "vGIC state: CPU interface attr " + Hex(attr) + " is not a saved register");
    }
  }
  for (const auto& [attr, value] : s.line_levels) {
    const std::uint64_t low = attr & 0xffffffffU;
    const std::uint64_t intid = low & 0x3ff;
    if ((low >> vgic::kLevelInfoShift) != vgic::kLevelInfoLineLevel || intid % 32 != 0 ||
        intid < 32 || intid >= s.nr_irqs) {
      return Fail(ErrorCode::kMalformed, "vGIC state: line-level attr " + Hex(attr) +
                                             " is not a block of 32 SPIs below " +
                                             std::to_string(s.nr_irqs));
    }
  }
  return Ok();
}

std::vector<std::uint8_t> EncodeVgicState(const VgicState& state) {
  std::vector<std::uint8_t> out(kMagic.begin(), kMagic.end());
  Put(out, kVersion, 4);
  Put(out, state.nr_irqs, 4);
  PutList(out, state.dist);
  PutList(out, state.redist);
  PutList(out, state.cpu_sysregs);
  PutList(out, state.line_levels);
  Put(out, Crc32(out), 4);
  return out;
}

Result<VgicState> DecodeVgicState(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < kMagic.size() || !std::equal(kMagic.begin(), kMagic.end(), bytes.begin())) {
    return Fail(ErrorCode::kMalformed, "vGIC state: bad magic (not a vtime vGICv3 state)");
  }
  Cursor c(bytes, kMagic.size());
  auto version = c.Take(4, "version");
  if (!version) return tl::unexpected(version.error());
  if (*version != kVersion) {
    return Fail(*version > kVersion ? ErrorCode::kUnsupported : ErrorCode::kMalformed,
                "vGIC state: version " + std::to_string(*version) + ", this build reads " +
                    std::to_string(kVersion));
  }
  VgicState s;
  auto nr = c.Take(4, "nr_irqs");
  if (!nr) return tl::unexpected(nr.error());
  s.nr_irqs = static_cast<std::uint32_t>(*nr);
  if (auto r = TakeList(c, s.dist, "distributor registers"); !r) return tl::unexpected(r.error());
  if (auto r = TakeList(c, s.redist, "redistributor registers"); !r)
    return tl::unexpected(r.error());
  if (auto r = TakeList(c, s.cpu_sysregs, "CPU interface registers"); !r) {
    return tl::unexpected(r.error());
  }
  if (auto r = TakeList(c, s.line_levels, "line levels"); !r) return tl::unexpected(r.error());
  const std::size_t body = c.at();
  auto crc = c.Take(4, "checksum");
  if (!crc) return tl::unexpected(crc.error());
  if (c.remaining() != 0) {
    return Fail(ErrorCode::kMalformed,
                "vGIC state: " + std::to_string(c.remaining()) + " bytes after the checksum");
  }
  if (*crc != Crc32(bytes.first(body))) {
    return Fail(ErrorCode::kMalformed, "vGIC state: bad checksum (corrupted)");
  }
  if (auto r = CheckShape(s); !r) return tl::unexpected(r.error());
  return s;
}

}  // namespace vtime::kvm
