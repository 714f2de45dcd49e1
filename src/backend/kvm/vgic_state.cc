// vGICv3 save/restore through KVM's device attributes. The register set and
// its restore order follow Documentation/virt/kvm/devices/arm-vgic-v3.rst and
// the GICv3 architecture; which registers KVM lets userspace reach is noted
// where it matters.
#include "vtime/backend/vgic_state.h"

#include <linux/kvm.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <set>
#include <string>

#include "vtime/hex.h"

static_assert(KVM_DEV_ARM_VGIC_GRP_DIST_REGS == vtime::kvm::vgic::kGrpDistRegs);
static_assert(KVM_DEV_ARM_VGIC_GRP_NR_IRQS == vtime::kvm::vgic::kGrpNrIrqs);
static_assert(KVM_DEV_ARM_VGIC_GRP_CTRL == vtime::kvm::vgic::kGrpCtrl);
static_assert(KVM_DEV_ARM_VGIC_GRP_REDIST_REGS == vtime::kvm::vgic::kGrpRedistRegs);
static_assert(KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS == vtime::kvm::vgic::kGrpCpuSysregs);
static_assert(KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO == vtime::kvm::vgic::kGrpLevelInfo);
static_assert(KVM_DEV_ARM_VGIC_CTRL_INIT == vtime::kvm::vgic::kCtrlInit);
static_assert(KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO_SHIFT == 10);
static_assert(VGIC_LEVEL_INFO_LINE_LEVEL == 0);

namespace vtime::kvm {
namespace {

using vgic::kSgiFrame;

// Distributor register offsets (GICv3 architecture, GICD_*).
constexpr std::uint32_t kGicdCtlr = 0x0000;
constexpr std::uint32_t kGicdIidr = 0x0008;
constexpr std::uint32_t kGicdIgroupr = 0x0080;
constexpr std::uint32_t kGicdIsenabler = 0x0100;
constexpr std::uint32_t kGicdIcenabler = 0x0180;
constexpr std::uint32_t kGicdIspendr = 0x0200;
constexpr std::uint32_t kGicdIsactiver = 0x0300;
constexpr std::uint32_t kGicdIcactiver = 0x0380;
constexpr std::uint32_t kGicdIpriorityr = 0x0400;
constexpr std::uint32_t kGicdIcfgr = 0x0C00;
constexpr std::uint32_t kGicdIrouter = 0x6000;
// Redistributor: RD frame, and SGI frame (offsets within it, add kSgiFrame).
// GICR_PROPBASER/PENDBASER are left out: they only matter for LPIs (an ITS),
// which this does not cover, and KVM sanitises a written 0 into 0x180, so
// writing back their reset value would not even reproduce it.
constexpr std::uint32_t kGicrCtlr = 0x0000;
// The SGI frame has the GICD layout for INTIDs 0..31 (one word, or 8
// priority words, or 2 config words).

// Restore phases, in order. Configuration before the state it qualifies:
// group, priority, trigger and routing decide where and how a pending
// interrupt is queued; line levels and pending latches next; then active,
// then the enables; the global enables last.
enum Phase : int {
  kIdentify = 0,  // GICD_IIDR: first, per the KVM documentation
  kCpuInterface,  // ICC_* (their compatibility checks fail before anything else changes)
  kConfig,        // IGROUPR, IPRIORITYR, ICFGR, IROUTER
  kLevel,         // LEVEL_INFO line levels
  kPending,       // ISPENDR (the latch)
  kActive,        // ISACTIVER
  kEnable,        // ISENABLER
  kGlobalEnable,  // GICR_CTLR, GICD_CTLR
  kNotSaved = -1,
};

bool ValidNrIrqs(std::uint32_t n) { return n >= 64 && n <= 1024 && n % 32 == 0; }

// The phase of a distributor offset that SaveVgicV3 reads for nr_irqs, or
// kNotSaved. Per-IRQ ranges start at the SPIs: with affinity routing (always
// on in KVM's GICv3) the distributor's SGI/PPI words are RAZ/WI.
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
    case kSgiFrame + kGicdIgroupr:
    case kSgiFrame + kGicdIcfgr:
    case kSgiFrame + kGicdIcfgr + 4:
      return kConfig;
    case kSgiFrame + kGicdIspendr:
      return kPending;
    case kSgiFrame + kGicdIsactiver:
      return kActive;
    case kSgiFrame + kGicdIsenabler:
      return kEnable;
    default:
      break;
  }
  if (offset >= kSgiFrame + kGicdIpriorityr && offset < kSgiFrame + kGicdIpriorityr + 32 &&
      offset % 4 == 0) {
    return kConfig;
  }
  return kNotSaved;
}

// The CPU interface registers saved on every vCPU (plus 1, 2 or 4 of each of
// AP0R/AP1R), in restore order: SRE, then CTLR (KVM checks its PRIbits and
// IDbits against the host's), BPR1 after CTLR (whose CBPR governs it), the
// group enables last.
constexpr std::array<std::uint64_t, 7> kIccFixed = {
    vgic::kIccSre,  vgic::kIccCtlr,    vgic::kIccPmr,    vgic::kIccBpr0,
    vgic::kIccBpr1, vgic::kIccIgrpen0, vgic::kIccIgrpen1};

// Sort key of a sysreg within one vCPU's restore, or -1 if not one we save:
// SRE, CTLR, PMR, BPR0, BPR1 (0..4), AP0R0..3 (5..8), AP1R0..3 (9..12),
// IGRPEN0, IGRPEN1 (13, 14).
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
  return -1;
}

std::string SysregName(std::uint64_t id) {
  if (id == vgic::kIccPmr) return "ICC_PMR_EL1";
  if (id == vgic::kIccBpr0) return "ICC_BPR0_EL1";
  if (id == vgic::kIccBpr1) return "ICC_BPR1_EL1";
  if (id == vgic::kIccCtlr) return "ICC_CTLR_EL1";
  if (id == vgic::kIccSre) return "ICC_SRE_EL1";
  if (id == vgic::kIccIgrpen0) return "ICC_IGRPEN0_EL1";
  if (id == vgic::kIccIgrpen1) return "ICC_IGRPEN1_EL1";
  if (id >= vgic::kIccAp0r0 && id < vgic::kIccAp0r0 + 4) {
    return "ICC_AP0R" + std::to_string(id - vgic::kIccAp0r0) + "_EL1";
  }
  if (id >= vgic::kIccAp1r0 && id < vgic::kIccAp1r0 + 4) {
    return "ICC_AP1R" + std::to_string(id - vgic::kIccAp1r0) + "_EL1";
  }
  return "sysreg " + Hex(id);
}

// "GICD_ISENABLER1" etc. for messages.
std::string GicRegName(const char* prefix, std::uint64_t offset) {
  struct Range {
    std::uint32_t base;
    std::uint32_t size;
    std::uint32_t stride;
    const char* name;
  };
  static constexpr Range kRanges[] = {
      {kGicdIgroupr, 0x80, 4, "IGROUPR"},        {kGicdIsenabler, 0x80, 4, "ISENABLER"},
      {kGicdIcenabler, 0x80, 4, "ICENABLER"},    {kGicdIspendr, 0x80, 4, "ISPENDR"},
      {kGicdIsactiver, 0x80, 4, "ISACTIVER"},    {kGicdIcactiver, 0x80, 4, "ICACTIVER"},
      {kGicdIpriorityr, 0x400, 4, "IPRIORITYR"}, {kGicdIcfgr, 0x100, 4, "ICFGR"},
      {kGicdIrouter, 0x2000, 8, "IROUTER"},
  };
  const std::string p(prefix);
  if (offset == kGicdCtlr) return p + "CTLR";
  if (offset == kGicdIidr) return p + "IIDR";
  for (const Range& r : kRanges) {
    if (offset >= r.base && offset < r.base + r.size) {
      const std::uint64_t rel = offset - r.base;
      std::string name = p + r.name + std::to_string(rel / r.stride);
      if (rel % r.stride != 0) name += " (upper word)";
      return name;
    }
  }
  return p + "register at " + Hex(offset);
}

std::string DistName(std::uint64_t offset) { return GicRegName("GICD_", offset); }

std::string RedistName(std::uint64_t offset) {
  if (offset == kGicrCtlr) return "GICR_CTLR";
  if (offset >= kSgiFrame) return GicRegName("GICR_", offset - kSgiFrame);
  return "GICR register at " + Hex(offset);
}

std::string MpidrText(std::uint64_t field) { return "MPIDR affinity " + Hex(field); }

// What an attr names, for messages: "GICR_ISENABLER0 of MPIDR affinity 0x1".
std::string AttrName(std::uint32_t group, std::uint64_t attr) {
  const std::uint64_t field = attr >> 32;
  const std::uint64_t low = attr & 0xffffffffU;
  switch (group) {
    case vgic::kGrpDistRegs:
      return DistName(low);
    case vgic::kGrpRedistRegs:
      return RedistName(low) + " of " + MpidrText(field);
    case vgic::kGrpCpuSysregs:
      return SysregName(low) + " of " + MpidrText(field);
    case vgic::kGrpLevelInfo:
      return "line levels of INTIDs " + std::to_string(low & 0x3ff) + ".." +
             std::to_string((low & 0x3ff) + 31);
    default:
      return "group " + std::to_string(group) + " attr " + Hex(attr);
  }
}

// Wraps a device-attribute failure with the register's name and, for
// EBUSY, what KVM wants.
tl::unexpected<Error> AttrFail(const char* doing, std::uint32_t group, std::uint64_t attr,
                               const Error& e) {
  std::string hint;
  if (e.sys_errno == EBUSY) hint = " (is the vGIC initialised and every vCPU stopped?)";
  if (e.sys_errno == ENXIO) hint = " (this kernel does not offer that register)";
  return Fail(e.code,
              std::string(doing) + " vGIC " + AttrName(group, attr) + hint + ": " + e.context,
              e.sys_errno);
}

Result<std::uint32_t> Get32(const Device& dev, std::uint32_t group, std::uint64_t attr) {
  std::uint32_t v = 0;
  if (auto r = dev.GetAttr(group, attr, &v); !r) return AttrFail("saving", group, attr, r.error());
  return v;
}

Result<std::uint64_t> Get64(const Device& dev, std::uint32_t group, std::uint64_t attr) {
  std::uint64_t v = 0;
  if (auto r = dev.GetAttr(group, attr, &v); !r) return AttrFail("saving", group, attr, r.error());
  return v;
}

Result<void> Set32(Device& dev, std::uint32_t group, std::uint64_t attr, std::uint32_t v) {
  if (auto r = dev.SetAttr(group, attr, &v); !r)
    return AttrFail("restoring", group, attr, r.error());
  return Ok();
}

Result<void> Set64(Device& dev, std::uint32_t group, std::uint64_t attr, std::uint64_t v) {
  if (auto r = dev.SetAttr(group, attr, &v); !r)
    return AttrFail("restoring", group, attr, r.error());
  return Ok();
}

// The affinity fields of the vCPUs: non-empty, unique.
Result<std::vector<std::uint64_t>> VcpuFields(std::span<const std::uint64_t> mpidrs) {
  if (mpidrs.empty()) return Fail(ErrorCode::kInvalidArgument, "vGIC state: no vCPUs given");
  std::vector<std::uint64_t> fields;
  std::set<std::uint64_t> seen;
  for (std::uint64_t m : mpidrs) {
    const std::uint64_t f = vgic::AffinityField(m);
    if (!seen.insert(f).second) {
      return Fail(ErrorCode::kInvalidArgument,
                  "vGIC state: two vCPUs have the same " + MpidrText(f));
    }
    fields.push_back(f);
  }
  return fields;
}

Result<void> CheckDeviceNrIrqs(const Device& dev, std::uint32_t nr_irqs) {
  std::uint32_t configured = 0;
  if (auto r = dev.GetAttr(vgic::kGrpNrIrqs, 0, &configured); !r) {
    return Fail(r.error().code, "reading the vGIC's number of interrupts: " + r.error().context,
                r.error().sys_errno);
  }
  if (configured != nr_irqs) {
    return Fail(ErrorCode::kInvalidArgument, "vGIC state is for " + std::to_string(nr_irqs) +
                                                 " interrupts, the device has " +
                                                 std::to_string(configured));
  }
  return Ok();
}

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

// The shape of a state, without any device or vCPU list: nr_irqs valid,
// lists sorted and unique, every attr one that SaveVgicV3 produces.
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
    if ((low >> 10) != VGIC_LEVEL_INFO_LINE_LEVEL || intid % 32 != 0 || intid < 32 ||
        intid >= s.nr_irqs) {
      return Fail(ErrorCode::kMalformed, "vGIC state: line-level attr " + Hex(attr) +
                                             " is not a block of 32 SPIs below " +
                                             std::to_string(s.nr_irqs));
    }
  }
  return Ok();
}

// Restore order of one attr list: by phase, then by attr (stable).
template <class V, class RankFn>
std::vector<std::pair<std::uint64_t, V>> InPhase(
    const std::vector<std::pair<std::uint64_t, V>>& list, int phase, RankFn rank) {
  std::vector<std::pair<std::uint64_t, V>> out;
  for (const auto& e : list) {
    if (rank(e.first) == phase) out.push_back(e);
  }
  return out;
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

Result<std::uint64_t> ReadMpidr(const Vcpu& vcpu) { return vcpu.GetOneReg(reg::kMpidrEl1); }

Result<VgicState> SaveVgicV3(Device& vgic, std::span<const std::uint64_t> vcpu_mpidrs,
                             std::uint32_t nr_irqs) {
  auto fields = VcpuFields(vcpu_mpidrs);
  if (!fields) return tl::unexpected(fields.error());
  if (!ValidNrIrqs(nr_irqs)) {
    return Fail(ErrorCode::kInvalidArgument, "saving vGIC: " + std::to_string(nr_irqs) +
                                                 " interrupts is not 64..1024 in steps of 32");
  }
  if (auto r = CheckDeviceNrIrqs(vgic, nr_irqs); !r) return tl::unexpected(r.error());

  VgicState s;
  s.nr_irqs = nr_irqs;

  // Distributor: the two control words, then the per-IRQ ranges from the
  // first SPI (DistPhase accepts exactly these).
  auto dist = [&](std::uint32_t offset) -> Result<void> {
    auto v = Get32(vgic, vgic::kGrpDistRegs, offset);
    if (!v) return tl::unexpected(v.error());
    s.dist.emplace_back(offset, *v);
    return Ok();
  };
  for (std::uint32_t offset : {kGicdCtlr, kGicdIidr}) {
    if (auto r = dist(offset); !r) return tl::unexpected(r.error());
  }
  for (const auto& [base, bits] :
       {std::pair{kGicdIgroupr, 1U}, std::pair{kGicdIsenabler, 1U}, std::pair{kGicdIspendr, 1U},
        std::pair{kGicdIsactiver, 1U}, std::pair{kGicdIpriorityr, 8U}, std::pair{kGicdIcfgr, 2U},
        std::pair{kGicdIrouter, 64U}}) {
    for (std::uint32_t offset = base + 32 * bits / 8; offset < base + nr_irqs * bits / 8;
         offset += 4) {
      if (auto r = dist(offset); !r) return tl::unexpected(r.error());
    }
  }

  for (std::uint64_t field : *fields) {
    // Redistributor: RD frame then SGI frame, in address order.
    for (std::uint32_t offset : {kGicrCtlr, kSgiFrame + kGicdIgroupr, kSgiFrame + kGicdIsenabler,
                                 kSgiFrame + kGicdIspendr, kSgiFrame + kGicdIsactiver}) {
      const std::uint64_t attr = field << 32 | offset;
      auto v = Get32(vgic, vgic::kGrpRedistRegs, attr);
      if (!v) return tl::unexpected(v.error());
      s.redist.emplace_back(attr, *v);
    }
    for (std::uint32_t offset = kSgiFrame + kGicdIpriorityr; offset < kSgiFrame + kGicdIcfgr + 8;
         offset += 4) {
      if (offset == kSgiFrame + kGicdIpriorityr + 32) offset = kSgiFrame + kGicdIcfgr;
      const std::uint64_t attr = field << 32 | offset;
      auto v = Get32(vgic, vgic::kGrpRedistRegs, attr);
      if (!v) return tl::unexpected(v.error());
      s.redist.emplace_back(attr, *v);
    }

    // CPU interface: ICC_CTLR_EL1.PRIbits (bits 10:8, bits - 1) says how many
    // active-priority registers there are: 1 for 5 bits, 2 for 6, 4 for 7+.
    auto ctlr = Get64(vgic, vgic::kGrpCpuSysregs, field << 32 | vgic::kIccCtlr);
    if (!ctlr) return tl::unexpected(ctlr.error());
    const std::uint64_t pri_bits = ((*ctlr >> 8) & 7) + 1;
    const std::uint64_t aprs = pri_bits >= 7 ? 4 : pri_bits == 6 ? 2 : 1;
    std::vector<std::uint64_t> ids(kIccFixed.begin(), kIccFixed.end());
    for (std::uint64_t n = 0; n < aprs; ++n) {
      ids.push_back(vgic::kIccAp0r0 + n);
      ids.push_back(vgic::kIccAp1r0 + n);
    }
    std::sort(ids.begin(), ids.end());
    for (std::uint64_t id : ids) {
      const std::uint64_t attr = field << 32 | id;
      auto v = Get64(vgic, vgic::kGrpCpuSysregs, attr);
      if (!v) return tl::unexpected(v.error());
      s.cpu_sysregs.emplace_back(attr, *v);
    }
  }

  // SPI line levels, if the kernel has the group (Linux 4.12+). SPIs read
  // the same through any vCPU; KVM wants a valid one, so the first.
  const std::uint64_t level_base = (*fields)[0] << 32 | (std::uint64_t{VGIC_LEVEL_INFO_LINE_LEVEL}
                                                         << KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO_SHIFT);
  auto has_levels = vgic.HasAttr(vgic::kGrpLevelInfo, level_base | 32);
  if (!has_levels) return tl::unexpected(has_levels.error());
  if (*has_levels) {
    for (std::uint32_t intid = 32; intid < nr_irqs; intid += 32) {
      auto v = Get32(vgic, vgic::kGrpLevelInfo, level_base | intid);
      if (!v) return tl::unexpected(v.error());
      s.line_levels.emplace_back(level_base | intid, *v);
    }
  }

  std::sort(s.dist.begin(), s.dist.end());
  std::sort(s.redist.begin(), s.redist.end());
  std::sort(s.cpu_sysregs.begin(), s.cpu_sysregs.end());
  return s;
}

Result<void> RestoreVgicV3(Device& vgic, std::span<const std::uint64_t> vcpu_mpidrs,
                           const VgicState& state) {
  // Everything that needs no device first, so a wrong state changes nothing.
  auto fields = VcpuFields(vcpu_mpidrs);
  if (!fields) return tl::unexpected(fields.error());
  if (auto r = CheckShape(state); !r) {
    return Fail(ErrorCode::kInvalidArgument, "restore refused: " + r.error().context);
  }
  std::set<std::uint64_t> in_state;
  for (const auto& e : state.redist) in_state.insert(e.first >> 32);
  for (const auto& e : state.cpu_sysregs) in_state.insert(e.first >> 32);
  const std::set<std::uint64_t> in_vm(fields->begin(), fields->end());
  if (in_state.size() != in_vm.size()) {
    return Fail(ErrorCode::kInvalidArgument,
                "vGIC restore refused: the state is for " + std::to_string(in_state.size()) +
                    " vCPUs, the VM has " + std::to_string(in_vm.size()));
  }
  for (std::uint64_t f : in_state) {
    if (in_vm.count(f) == 0) {
      return Fail(ErrorCode::kInvalidArgument, "vGIC restore refused: the state has a vCPU with " +
                                                   MpidrText(f) + ", the VM has none");
    }
  }
  for (const auto& e : state.line_levels) {
    if (in_vm.count(e.first >> 32) == 0) {
      return Fail(ErrorCode::kInvalidArgument, "vGIC restore refused: line levels name " +
                                                   MpidrText(e.first >> 32) +
                                                   ", not a vCPU of the VM");
    }
  }
  if (auto r = CheckDeviceNrIrqs(vgic, state.nr_irqs); !r) {
    return Fail(r.error().code, "vGIC restore refused: " + r.error().context, r.error().sys_errno);
  }
  if (!state.line_levels.empty()) {
    auto has = vgic.HasAttr(vgic::kGrpLevelInfo, state.line_levels.front().first);
    if (!has) return tl::unexpected(has.error());
    if (!*has) {
      return Fail(ErrorCode::kUnsupported,
                  "vGIC restore refused: the state has line levels and this kernel cannot set "
                  "them (no KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO)");
    }
  }

  const std::uint32_t nr = state.nr_irqs;
  auto dist_rank = [nr](std::uint64_t attr) { return static_cast<int>(DistPhase(attr, nr)); };
  auto redist_rank = [](std::uint64_t attr) {
    return static_cast<int>(RedistPhase(attr & 0xffffffffU));
  };

  // Writes a set-register after clearing what the set-register leaves alone
  // (its clear twin sits 0x80 above), so the result is exact on a used GIC.
  auto set_exact = [&vgic](std::uint32_t group, std::uint64_t attr, std::uint32_t value,
                           bool has_clear) -> Result<void> {
    if (has_clear) {
      if (auto r = Set32(vgic, group, attr + 0x80, ~value); !r) return r;
    }
    return Set32(vgic, group, attr, value);
  };

  for (int phase = kIdentify; phase <= kGlobalEnable; ++phase) {
    const bool clear_first = phase == kActive || phase == kEnable;
    if (phase == kCpuInterface) {
      for (std::uint64_t field : *fields) {
        std::vector<std::pair<std::uint64_t, std::uint64_t>> regs;
        for (const auto& e : state.cpu_sysregs) {
          if ((e.first >> 32) == field) regs.push_back(e);
        }
        std::stable_sort(regs.begin(), regs.end(), [](const auto& a, const auto& b) {
          return SysregRank(a.first & 0xffffffffU) < SysregRank(b.first & 0xffffffffU);
        });
        for (const auto& [attr, value] : regs) {
          if (auto r = Set64(vgic, vgic::kGrpCpuSysregs, attr, value); !r) return r;
        }
      }
      continue;
    }
    if (phase == kLevel) {
      for (const auto& [attr, value] : state.line_levels) {
        if (auto r = Set32(vgic, vgic::kGrpLevelInfo, attr, value); !r) return r;
      }
      continue;
    }
    // Redistributors before the distributor within a phase, except that the
    // distributor's global enable comes last of all.
    for (const auto& [attr, value] : InPhase(state.redist, phase, redist_rank)) {
      if (auto r = set_exact(vgic::kGrpRedistRegs, attr, value, clear_first); !r) return r;
    }
    for (const auto& [attr, value] : InPhase(state.dist, phase, dist_rank)) {
      if (auto r = set_exact(vgic::kGrpDistRegs, attr, value, clear_first); !r) return r;
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
