#include "vtime/vmm/user_gicv3.h"

#include <bit>
#include <string>

namespace vtime::vmm {
namespace {

using namespace gicv3;  // NOLINT(google-build-using-namespace): the register encodings

constexpr unsigned kSgiCount = 16;
constexpr unsigned kBanked = 32;
constexpr unsigned kMaxCpus = 8;
constexpr unsigned kMaxIrqs = 1020;
constexpr std::uint8_t kMinBpr0 = 7 - UserGicV3::kPriorityBits;  // 2
constexpr std::uint8_t kMinBpr1 = kMinBpr0 + 1;

// GICD_CTLR: EnableGrp0 [0], EnableGrp1 [1] stored; ARE [4] and DS [6] read
// as one; RWP [31] as zero (every write takes effect at once).
constexpr std::uint32_t kDistGrp0 = 1U << 0;
constexpr std::uint32_t kDistGrp1 = 1U << 1;
constexpr std::uint32_t kDistAre = 1U << 4;
constexpr std::uint32_t kDistDs = 1U << 6;

// Register offsets shared by the distributor and the SGI_base frame.
constexpr std::uint64_t kIgroupr = 0x080;
constexpr std::uint64_t kIsenabler = 0x100;
constexpr std::uint64_t kIcenabler = 0x180;
constexpr std::uint64_t kIspendr = 0x200;
constexpr std::uint64_t kIcpendr = 0x280;
constexpr std::uint64_t kIsactiver = 0x300;
constexpr std::uint64_t kIcactiver = 0x380;
constexpr std::uint64_t kIpriorityr = 0x400;
constexpr std::uint64_t kIcfgr = 0xC00;
constexpr std::uint64_t kPidr2 = 0xFFE8;
constexpr std::uint32_t kPidr2V3 = 0x3B;  // ArchRev 3 in [7:4]
// Distributor only.
constexpr std::uint64_t kDistTyper = 0x004;
constexpr std::uint64_t kDistIidr = 0x008;
constexpr std::uint64_t kIrouter = 0x6000;
constexpr std::uint64_t kIrouterIrm = 1ULL << 31;
// Aff0 [7:0]; Aff1 [15:8], Aff2 [23:16] and Aff3 [39:32].
constexpr std::uint64_t kIrouterAff0 = 0xFF;
constexpr std::uint64_t kIrouterAff123 = 0xFF00FFFF00ULL;
// Redistributor, RD_base frame, then the SGI_base frame.
constexpr std::uint64_t kRdIidr = 0x004;
constexpr std::uint64_t kRdTyper = 0x008;
constexpr std::uint64_t kRdWaker = 0x014;
constexpr std::uint64_t kSgiBase = 0x10000;
constexpr std::uint32_t kWakerProcessorSleep = 1U << 1;
constexpr std::uint32_t kWakerChildrenAsleep = 1U << 2;
constexpr std::uint32_t kSgiCfg = 0xAAAAAAAA;  // edge, read-only

// ICC_CTLR_EL1 / ICV_CTLR_EL1: CBPR [0] and EOImode [1] are state;
// PRIbits [10:8] says 5 bits, IDbits [13:11] 16 bits.
constexpr std::uint64_t kCtlrCbpr = 1U << 0;
constexpr std::uint64_t kCtlrEoiMode = 1U << 1;
constexpr std::uint64_t kCtlrPriBits = 4U << 8;
constexpr std::uint64_t kSreEl1 = 0x7;  // SRE, DFB, DIB: system registers only
constexpr std::uint64_t kSreEl2 = 0xF;  // and Enable: EL1 may use them

// ICH_HCR_EL2.
constexpr std::uint64_t kHcrEn = 1U << 0;
constexpr std::uint64_t kHcrUie = 1U << 1;
constexpr std::uint64_t kHcrLrenpie = 1U << 2;
constexpr std::uint64_t kHcrNpie = 1U << 3;
constexpr std::uint64_t kHcrVgrp0eie = 1U << 4;
constexpr std::uint64_t kHcrVgrp0die = 1U << 5;
constexpr std::uint64_t kHcrVgrp1eie = 1U << 6;
constexpr std::uint64_t kHcrVgrp1die = 1U << 7;
// Stored: the above, TC [10], TALL0 [11], TALL1 [12], TSEI [13], TDIR [14] and
// EOIcount [31:27]; vSGIEOICount [8] and DVIM [15] (GICv4.1) are RES0.
constexpr std::uint64_t kHcrWritable = 0xF8007CFFULL;
constexpr unsigned kEoiCountShift = 27;
// ICH_VTR_EL2: ListRegs - 1 [4:0], nV4 [20], PREbits - 1 [28:26], PRIbits - 1 [31:29].
constexpr std::uint64_t kVtr = (UserGicV3::kListRegs - 1) | (1U << 20) | (4U << 26) | (4ULL << 29);
// ICH_VMCR_EL2.
constexpr std::uint64_t kVmcrEng0 = 1U << 0;
constexpr std::uint64_t kVmcrEng1 = 1U << 1;
constexpr std::uint64_t kVmcrCbpr = 1U << 4;
constexpr std::uint64_t kVmcrEoim = 1U << 9;
constexpr unsigned kVmcrBpr1Shift = 18;
constexpr unsigned kVmcrBpr0Shift = 21;
constexpr unsigned kVmcrPmrShift = 24;
constexpr std::uint64_t kVmcrWritable = 0x21FULL;  // ENG0, ENG1, AckCtl, FIQEn, CBPR, EOIM
// ICH_LR<n>_EL2.
constexpr unsigned kLrStateShift = 62;
constexpr std::uint64_t kLrHw = 1ULL << 61;
constexpr std::uint64_t kLrGroup = 1ULL << 60;
constexpr unsigned kLrPriorityShift = 48;
constexpr unsigned kLrPintidShift = 32;
constexpr std::uint64_t kLrEoi = 1ULL << 41;  // with HW 0: maintenance at deactivation
constexpr std::uint64_t kLrStatePending = 1;
constexpr std::uint64_t kLrStateActive = 2;

std::uint64_t LrState(std::uint64_t lr) { return lr >> kLrStateShift; }
std::uint64_t WithState(std::uint64_t lr, std::uint64_t state) {
  return (lr & ~(3ULL << kLrStateShift)) | (state << kLrStateShift);
}
std::uint8_t LrPriority(std::uint64_t lr) {
  return static_cast<std::uint8_t>((lr >> kLrPriorityShift) & UserGicV3::kPriorityMask);
}
std::uint32_t LrVintid(std::uint64_t lr) { return static_cast<std::uint32_t>(lr & 0xFFFF); }
std::uint32_t LrPintid(std::uint64_t lr) {
  return static_cast<std::uint32_t>((lr >> kLrPintidShift) & 0x1FFF);
}

// ICC_AP0R<n> (CRm 8, op2 4..7) and ICC_AP1R<n> (CRm 9, op2 0..3): n, or -1.
int ApIndex(arch::SysRegEncoding e, bool* group1) {
  if (e.op0 != 3 || e.op1 != 0 || e.crn != 12) return -1;
  if (e.crm == 8 && e.op2 >= 4) {
    *group1 = false;
    return e.op2 - 4;
  }
  if (e.crm == 9 && e.op2 <= 3) {
    *group1 = true;
    return e.op2;
  }
  return -1;
}

bool In(std::uint64_t offset, std::uint64_t base, std::uint64_t bytes) {
  return offset >= base && offset - base < bytes;
}

std::uint8_t ClampBpr(std::uint64_t value, std::uint8_t min) {
  const auto b = static_cast<std::uint8_t>(value & 7);
  return b < min ? min : b;
}

// The group priority of `priority` (IHI 0069, "Priority grouping"): BPR0 = n
// leaves [7:n+1], and so does BPR1 under CBPR; group 1's own binary point
// leaves [7:n] for BPR1 = n (its minimum is BPR0's plus one, so at the
// minimum both keep every implemented bit).
std::uint8_t GroupPriorityOf(std::uint8_t priority, std::uint8_t bpr0, std::uint8_t bpr1, bool cbpr,
                             bool group1) {
  const unsigned subpriority_bits = group1 && !cbpr ? bpr1 : bpr0 + 1U;
  return static_cast<std::uint8_t>(priority & (0xFFU << subpriority_bits));
}

// INTIDs 1020..1023: an EOIR or DIR write of one is ignored.
bool IsSpecial(std::uint32_t intid) { return intid >= 1020 && intid <= 1023; }

// The active-priority bit of a group priority (one bit per level).
std::uint32_t ApBit(std::uint8_t group_priority) { return 1U << (group_priority >> 3); }
std::uint8_t PriorityOfAp(std::uint32_t ap) {
  if (ap == 0) return 0xFF;
  return static_cast<std::uint8_t>(std::countr_zero(ap) << 3);
}
// Clears the highest active priority (the lowest set bit).
std::uint32_t DropPriority(std::uint32_t ap) { return ap & (ap - 1); }

}  // namespace

Result<UserGicV3> UserGicV3::Create(const UserGicConfig& config) {
  if (config.num_cpus < 1 || config.num_cpus > kMaxCpus) {
    return Fail(ErrorCode::kInvalidArgument,
                "GICv3: " + std::to_string(config.num_cpus) + " CPUs (1..8)");
  }
  const unsigned n = config.num_irqs;
  if (!(n == kMaxIrqs || (n % 32 == 0 && n >= 32 && n <= 992))) {
    return Fail(ErrorCode::kInvalidArgument,
                "GICv3: " + std::to_string(n) + " interrupts (a multiple of 32 to 992, or 1020)");
  }
  return UserGicV3(config.num_cpus, n);
}

UserGicV3::UserGicV3(unsigned num_cpus, unsigned num_irqs)
    : num_cpus_(num_cpus), num_irqs_(num_irqs) {
  Reset();
}

void UserGicV3::Reset() {
  dist_ctlr_ = 0;
  // Input lines belong to the devices driving them, so they survive a reset
  // of the controller (as in UserGic); everything the guest can program goes
  // back to reset. The maintenance interrupt's line is the virtual
  // interface's output, reset with it.
  cpus_.resize(num_cpus_);
  for (Cpu& c : cpus_) {
    Cpu fresh;
    fresh.waker = kWakerProcessorSleep | kWakerChildrenAsleep;
    fresh.bpr0 = kMinBpr0;
    fresh.bpr1 = kMinBpr1;
    for (unsigned i = 0; i < kBanked; ++i) {
      fresh.banked[i].line = c.banked[i].line;
      fresh.banked[i].edge = i < kSgiCount;
    }
    fresh.banked[kMaintenancePpi].line = false;
    c = fresh;
  }
  spis_.resize(num_irqs_ - kBanked);
  for (Irq& irq : spis_) irq = Irq{.line = irq.line};
}

UserGicV3::Irq* UserGicV3::IrqOf(unsigned cpu, unsigned intid) {
  return const_cast<Irq*>(static_cast<const UserGicV3*>(this)->IrqOf(cpu, intid));
}

const UserGicV3::Irq* UserGicV3::IrqOf(unsigned cpu, unsigned intid) const {
  if (cpu >= num_cpus_) return nullptr;
  if (intid < kBanked) return &cpus_[cpu].banked[intid];
  if (intid < num_irqs_) return &spis_[intid - kBanked];
  return nullptr;
}

bool UserGicV3::Targets(const Irq& irq, unsigned intid, unsigned cpu) const {
  if (intid < kBanked) return true;
  if ((irq.route & kIrouterIrm) != 0) return cpu == 0;
  // Aff0 names the CPU; every CPU has Aff1..3 = 0.
  if ((irq.route & kIrouterAff123) != 0) return false;
  return (irq.route & kIrouterAff0) == cpu;
}

UserGicV3::Candidate UserGicV3::Highest(unsigned cpu, bool group1) const {
  Candidate best;
  for (unsigned intid = 0; intid < num_irqs_; ++intid) {
    const Irq* irq = IrqOf(cpu, intid);
    if (!irq->enabled || irq->active || irq->group1 != group1 || !Pending(*irq)) continue;
    if (!Targets(*irq, intid, cpu)) continue;
    if (irq->priority < best.priority) best = Candidate{intid, irq->priority};
  }
  return best;
}

std::uint8_t UserGicV3::GroupPriority(const Cpu& c, std::uint8_t priority, bool group1) const {
  return GroupPriorityOf(priority, c.bpr0, c.bpr1, (c.ctlr & kCtlrCbpr) != 0, group1);
}

bool UserGicV3::CanSignal(unsigned cpu, bool group1) const {
  if (cpu >= num_cpus_) return false;
  const Cpu& c = cpus_[cpu];
  if ((dist_ctlr_ & (group1 ? kDistGrp1 : kDistGrp0)) == 0) return false;
  if (!(group1 ? c.igrpen1 : c.igrpen0)) return false;
  const Candidate best = Highest(cpu, group1);
  if (best.intid == kSpurious || best.priority >= c.pmr) return false;
  return GroupPriority(c, best.priority, group1) < PriorityOfAp(c.ap0 | c.ap1);
}

bool UserGicV3::IrqLine(unsigned cpu) const { return CanSignal(cpu, true); }
bool UserGicV3::FiqLine(unsigned cpu) const { return CanSignal(cpu, false); }

bool UserGicV3::IsPending(unsigned cpu, unsigned intid) const {
  const Irq* irq = IrqOf(cpu, intid);
  return irq != nullptr && Pending(*irq);
}

bool UserGicV3::IsActive(unsigned cpu, unsigned intid) const {
  const Irq* irq = IrqOf(cpu, intid);
  return irq != nullptr && irq->active;
}

std::uint8_t UserGicV3::RunningPriority(unsigned cpu) const {
  if (cpu >= num_cpus_) return 0xFF;
  return PriorityOfAp(cpus_[cpu].ap0 | cpus_[cpu].ap1);
}

void UserGicV3::SetPpiLevel(unsigned cpu, unsigned intid, bool level) {
  if (intid < kSgiCount || intid >= kBanked || cpu >= num_cpus_) return;
  cpus_[cpu].banked[intid].line = level;
}

void UserGicV3::SetSpiLevel(unsigned intid, bool level) {
  if (intid < kBanked || intid >= num_irqs_) return;
  Irq& irq = spis_[intid - kBanked];
  if (irq.edge && level && !irq.line) irq.latch = true;
  irq.line = level;
}

// --- MMIO ---

std::uint64_t UserGicV3::BitsRead(unsigned cpu, std::uint64_t reg, unsigned first_intid) const {
  std::uint64_t v = 0;
  for (unsigned i = 0; i < 32; ++i) {
    const Irq* irq = IrqOf(cpu, first_intid + i);
    if (irq == nullptr) break;
    bool bit = false;
    switch (reg) {
      case kIgroupr:
        bit = irq->group1;
        break;
      case kIsenabler:
      case kIcenabler:
        bit = irq->enabled;
        break;
      case kIspendr:
      case kIcpendr:
        bit = Pending(*irq);
        break;
      default:
        bit = irq->active;
        break;
    }
    if (bit) v |= 1ULL << i;
  }
  return v;
}

void UserGicV3::BitsWrite(unsigned cpu, std::uint64_t reg, unsigned first_intid,
                          std::uint32_t value) {
  for (unsigned i = 0; i < 32; ++i) {
    Irq* irq = IrqOf(cpu, first_intid + i);
    if (irq == nullptr) break;
    const bool bit = (value >> i & 1U) != 0;
    if (reg == kIgroupr) {
      irq->group1 = bit;
      continue;
    }
    if (!bit) continue;
    switch (reg) {
      case kIsenabler:
        irq->enabled = true;
        break;
      case kIcenabler:
        irq->enabled = false;
        break;
      case kIspendr:
        irq->latch = true;
        break;
      case kIcpendr:
        irq->latch = false;
        break;
      case kIsactiver:
        irq->active = true;
        break;
      case kIcactiver:
        irq->active = false;
        break;
      default:
        break;
    }
  }
}

std::uint64_t UserGicV3::DistRead(unsigned cpu, std::uint64_t offset, unsigned size, bool* known) {
  bool hit = true;
  std::uint64_t v = 0;
  const bool word = size == 4 && offset % 4 == 0;
  if (cpu >= num_cpus_) {
    hit = false;
  } else if (word && offset == 0) {
    v = dist_ctlr_ | kDistAre | kDistDs;
  } else if (word && offset == kDistTyper) {
    // ITLinesNumber [4:0]: INTIDs up to 32(N+1)-1 (1020 rounds up to 1024).
    v = ((num_irqs_ + 31) / 32 - 1) | ((num_cpus_ - 1) << 5) | (9U << 19);
  } else if (word && offset == kDistIidr) {
    v = kIidr;
  } else if (word && offset >= kIgroupr && offset < kIpriorityr) {
    const std::uint64_t reg = kIgroupr + ((offset - kIgroupr) / 0x80) * 0x80;
    const auto n = static_cast<unsigned>((offset - reg) / 4);
    if (n != 0) v = BitsRead(cpu, reg, 32 * n);  // n 0: the redistributors' (ARE)
  } else if (In(offset, kIpriorityr, kMaxIrqs) && (size == 1 || word)) {
    for (unsigned i = 0; i < size; ++i) {
      const auto intid = static_cast<unsigned>(offset - kIpriorityr) + i;
      const Irq* irq = intid >= kBanked ? IrqOf(cpu, intid) : nullptr;
      if (irq != nullptr) v |= static_cast<std::uint64_t>(irq->priority) << (8 * i);
    }
  } else if (word && In(offset, kIcfgr, 0x100)) {
    const auto first = static_cast<unsigned>((offset - kIcfgr) / 4) * 16;
    for (unsigned i = 0; i < 16 && first >= kBanked; ++i) {
      const Irq* irq = IrqOf(cpu, first + i);
      if (irq != nullptr && irq->edge) v |= 2ULL << (2 * i);
    }
  } else if (In(offset, kIrouter + 8 * kBanked, 8 * (kMaxIrqs - kBanked)) &&
             (size == 8 ? offset % 8 == 0 : word)) {
    const auto intid = static_cast<unsigned>((offset - kIrouter) / 8);
    const Irq* irq = IrqOf(cpu, intid);
    const std::uint64_t route = irq != nullptr ? irq->route : 0;
    v = size == 8 ? route : (offset % 8 == 0 ? route & 0xFFFFFFFF : route >> 32);
  } else if (word && offset == kPidr2) {
    v = kPidr2V3;
  } else {
    hit = false;
  }
  if (known != nullptr) *known = hit;
  return v;
}

void UserGicV3::DistWrite(unsigned cpu, std::uint64_t offset, std::uint64_t value, unsigned size,
                          bool* known) {
  bool hit = true;
  const bool word = size == 4 && offset % 4 == 0;
  const auto w = static_cast<std::uint32_t>(value);
  if (cpu >= num_cpus_) {
    hit = false;
  } else if (word && offset == 0) {
    dist_ctlr_ = w & (kDistGrp0 | kDistGrp1);
  } else if (word && (offset == kDistTyper || offset == kDistIidr || offset == kPidr2)) {
    // Read-only.
  } else if (word && offset >= kIgroupr && offset < kIpriorityr) {
    const std::uint64_t reg = kIgroupr + ((offset - kIgroupr) / 0x80) * 0x80;
    const auto n = static_cast<unsigned>((offset - reg) / 4);
    if (n != 0) BitsWrite(cpu, reg, 32 * n, w);
  } else if (In(offset, kIpriorityr, kMaxIrqs) && (size == 1 || word)) {
    for (unsigned i = 0; i < size; ++i) {
      const auto intid = static_cast<unsigned>(offset - kIpriorityr) + i;
      Irq* irq = intid >= kBanked ? IrqOf(cpu, intid) : nullptr;
      if (irq != nullptr) irq->priority = static_cast<std::uint8_t>((w >> (8 * i)) & kPriorityMask);
    }
  } else if (word && In(offset, kIcfgr, 0x100)) {
    const auto first = static_cast<unsigned>((offset - kIcfgr) / 4) * 16;
    for (unsigned i = 0; i < 16 && first >= kBanked; ++i) {
      Irq* irq = IrqOf(cpu, first + i);
      if (irq != nullptr) irq->edge = (w >> (2 * i + 1) & 1U) != 0;
    }
  } else if (In(offset, kIrouter + 8 * kBanked, 8 * (kMaxIrqs - kBanked)) &&
             (size == 8 ? offset % 8 == 0 : word)) {
    const auto intid = static_cast<unsigned>((offset - kIrouter) / 8);
    if (Irq* irq = IrqOf(cpu, intid)) {
      std::uint64_t route = irq->route;
      if (size == 8) {
        route = value;
      } else if (offset % 8 == 0) {
        route = (route & ~0xFFFFFFFFULL) | w;
      } else {
        route = (route & 0xFFFFFFFFULL) | (static_cast<std::uint64_t>(w) << 32);
      }
      irq->route = route & (kIrouterAff0 | kIrouterAff123 | kIrouterIrm);
    }
  } else {
    hit = false;
  }
  if (known != nullptr) *known = hit;
}

std::uint64_t UserGicV3::RedistRead(std::uint64_t offset, unsigned size, bool* known) {
  const auto cpu = static_cast<unsigned>(offset / kRedistStride);
  const std::uint64_t o = offset % kRedistStride;
  bool hit = cpu < num_cpus_;
  std::uint64_t v = 0;
  const bool word = size == 4 && o % 4 == 0;
  if (!hit) {
  } else if (word && o == 0) {
    v = 0;  // GICR_CTLR: no LPIs
  } else if (word && o == kRdIidr) {
    v = kIidr;
  } else if ((size == 8 && o == kRdTyper) || (word && (o == kRdTyper || o == kRdTyper + 4))) {
    // Processor_Number [23:8], Last [4]; Aff0 in the affinity value [39:32].
    const std::uint64_t typer = (static_cast<std::uint64_t>(cpu) << 8) |
                                (cpu + 1 == num_cpus_ ? 1U << 4 : 0) |
                                (static_cast<std::uint64_t>(cpu) << 32);
    v = size == 8 ? typer : (o == kRdTyper ? typer & 0xFFFFFFFF : typer >> 32);
  } else if (word && o == kRdWaker) {
    v = cpus_[cpu].waker;
  } else if (word && o == kPidr2) {
    v = kPidr2V3;
  } else if (o >= kSgiBase) {
    const std::uint64_t s = o - kSgiBase;
    if (word && s >= kIgroupr && s < kIpriorityr && (s - kIgroupr) % 0x80 == 0) {
      v = BitsRead(cpu, s, 0);
    } else if (In(s, kIpriorityr, kBanked) && (size == 1 || word)) {
      for (unsigned i = 0; i < size; ++i) {
        v |= static_cast<std::uint64_t>(cpus_[cpu].banked[s - kIpriorityr + i].priority) << (8 * i);
      }
    } else if (word && s == kIcfgr) {
      v = kSgiCfg;
    } else if (word && s == kIcfgr + 4) {
      v = 0;  // PPIs level-sensitive
    } else {
      hit = false;
    }
  } else {
    hit = false;
  }
  if (known != nullptr) *known = hit;
  return v;
}

void UserGicV3::RedistWrite(std::uint64_t offset, std::uint64_t value, unsigned size, bool* known) {
  const auto cpu = static_cast<unsigned>(offset / kRedistStride);
  const std::uint64_t o = offset % kRedistStride;
  bool hit = cpu < num_cpus_;
  const bool word = size == 4 && o % 4 == 0;
  const auto w = static_cast<std::uint32_t>(value);
  if (!hit) {
  } else if (word &&
             (o == 0 || o == kRdIidr || o == kRdTyper || o == kRdTyper + 4 || o == kPidr2)) {
    // GICR_CTLR is RAZ/WI (no LPIs); the others are read-only.
  } else if (word && o == kRdWaker) {
    // Waking the CPU's interface wakes its children at once.
    cpus_[cpu].waker =
        (w & kWakerProcessorSleep) != 0 ? kWakerProcessorSleep | kWakerChildrenAsleep : 0;
  } else if (o >= kSgiBase) {
    const std::uint64_t s = o - kSgiBase;
    if (word && s >= kIgroupr && s < kIpriorityr && (s - kIgroupr) % 0x80 == 0) {
      BitsWrite(cpu, s, 0, w);
    } else if (In(s, kIpriorityr, kBanked) && (size == 1 || word)) {
      for (unsigned i = 0; i < size; ++i) {
        cpus_[cpu].banked[s - kIpriorityr + i].priority =
            static_cast<std::uint8_t>((w >> (8 * i)) & kPriorityMask);
      }
    } else if (word && (s == kIcfgr || s == kIcfgr + 4)) {
      // Read-only: SGIs edge, PPIs level.
    } else {
      hit = false;
    }
  } else {
    hit = false;
  }
  if (known != nullptr) *known = hit;
}

// --- the physical CPU interface ---

std::uint32_t UserGicV3::Acknowledge(unsigned cpu, bool group1) {
  if (!CanSignal(cpu, group1)) return kSpurious;
  Cpu& c = cpus_[cpu];
  const Candidate best = Highest(cpu, group1);
  Irq* irq = IrqOf(cpu, best.intid);
  irq->active = true;
  // Edge: the latched edge is consumed. Level: a GICx_ISPENDR latch is
  // consumed and the pending state follows the line from now on, so a line
  // still high leaves the interrupt active and pending.
  irq->latch = false;
  const std::uint32_t bit = ApBit(GroupPriority(c, best.priority, group1));
  (group1 ? c.ap1 : c.ap0) |= bit;
  return best.intid;
}

void UserGicV3::Deactivate(unsigned cpu, std::uint32_t intid) {
  if (Irq* irq = IrqOf(cpu, intid)) irq->active = false;
}

void UserGicV3::EndOfInterrupt(unsigned cpu, bool group1, std::uint32_t intid) {
  Cpu& c = cpus_[cpu];
  std::uint32_t& ap = group1 ? c.ap1 : c.ap0;
  ap = DropPriority(ap);
  if ((c.ctlr & kCtlrEoiMode) == 0) Deactivate(cpu, intid);
}

void UserGicV3::SendSgi(unsigned cpu, std::uint64_t value, bool group1) {
  const auto intid = static_cast<unsigned>((value >> 24) & 0xF);
  const bool all_but_self = (value >> 40 & 1U) != 0;
  const std::uint64_t aff123 = value & ((0xFFULL << 16) | (0xFFULL << 32) | (0xFFULL << 48));
  for (unsigned t = 0; t < num_cpus_; ++t) {
    const bool hit = all_but_self ? t != cpu : aff123 == 0 && (value >> t & 1U) != 0;
    if (!hit) continue;
    Irq& irq = cpus_[t].banked[intid];
    // An SGI of the other group is not made (one security state).
    if (irq.group1 == group1) irq.latch = true;
  }
}

SysRegResult UserGicV3::PhysicalAccess(unsigned cpu, arch::SysRegEncoding e, bool write,
                                       std::uint64_t value, const CpuIfContext& ctx) {
  Cpu& c = cpus_[cpu];
  const SysRegResult done{true, 0};
  auto read = [](std::uint64_t v) { return SysRegResult{true, v}; };
  bool group1 = false;
  if (const int n = ApIndex(e, &group1); n >= 0) {
    std::uint32_t& ap = group1 ? c.ap1 : c.ap0;
    if (write) {
      if (n == 0) ap = static_cast<std::uint32_t>(value);
      return done;
    }
    return read(n == 0 ? ap : 0);
  }
  if (e == kIccPmr) {
    if (!write) return read(c.pmr);
    c.pmr = static_cast<std::uint8_t>(value & kPriorityMask);
    return done;
  }
  if (e == kIccBpr0 || e == kIccBpr1) {
    const bool g1 = e == kIccBpr1;
    if (g1 && (c.ctlr & kCtlrCbpr) != 0) {
      // With CBPR, BPR1 reads BPR0 (plus one, as its minimum) and ignores writes.
      return write ? done : read(std::min<std::uint8_t>(c.bpr0 + 1, 7));
    }
    std::uint8_t& bpr = g1 ? c.bpr1 : c.bpr0;
    if (!write) return read(bpr);
    bpr = ClampBpr(value, g1 ? kMinBpr1 : kMinBpr0);
    return done;
  }
  if (e == kIccCtlr) {
    if (!write) return read(c.ctlr | kCtlrPriBits);
    c.ctlr = value & (kCtlrCbpr | kCtlrEoiMode);
    return done;
  }
  if (e == kIccSre) return write ? done : read(kSreEl1);
  if (e == kIccSreEl2) {
    if (ctx.el < 2) return {};
    return write ? done : read(kSreEl2);
  }
  if (e == kIccIgrpen0 || e == kIccIgrpen1) {
    bool& en = e == kIccIgrpen1 ? c.igrpen1 : c.igrpen0;
    if (!write) return read(en ? 1 : 0);
    en = (value & 1) != 0;
    return done;
  }
  if (e == kIccIar0 || e == kIccIar1) {
    if (write) return {};
    return read(Acknowledge(cpu, e == kIccIar1));
  }
  if (e == kIccHppir0 || e == kIccHppir1) {
    if (write) return {};
    return read(Highest(cpu, e == kIccHppir1).intid);
  }
  if (e == kIccEoir0 || e == kIccEoir1) {
    if (!write) return {};
    const auto intid = static_cast<std::uint32_t>(value & 0xFFFFFF);
    if (!IsSpecial(intid)) EndOfInterrupt(cpu, e == kIccEoir1, intid);
    return done;
  }
  if (e == kIccDir) {
    if (!write) return {};
    const auto intid = static_cast<std::uint32_t>(value & 0xFFFFFF);
    if (!IsSpecial(intid)) Deactivate(cpu, intid);
    return done;
  }
  if (e == kIccRpr) return write ? SysRegResult{} : read(RunningPriority(cpu));
  if (e == kIccSgi1r || e == kIccAsgi1r || e == kIccSgi0r) {
    if (!write) return {};
    SendSgi(cpu, value, e != kIccSgi0r);
    return done;
  }
  return {};
}

// --- the virtual CPU interface ---

int UserGicV3::HighestLr(const Virtual& v, bool group1) const {
  int best = -1;
  for (unsigned i = 0; i < kListRegs; ++i) {
    const std::uint64_t lr = v.lr[i];
    if (LrState(lr) != kLrStatePending || ((lr & kLrGroup) != 0) != group1) continue;
    if (best < 0 || LrPriority(lr) < LrPriority(v.lr[static_cast<unsigned>(best)])) {
      best = static_cast<int>(i);
    }
  }
  return best;
}

std::uint8_t UserGicV3::VirtualRunningPriority(const Virtual& v) const {
  return PriorityOfAp(v.ap0 | v.ap1);
}

namespace {
std::uint8_t VirtualBpr(std::uint64_t vmcr, bool group1) {
  if (!group1 || (vmcr & kVmcrCbpr) != 0)
    return static_cast<std::uint8_t>((vmcr >> kVmcrBpr0Shift) & 7);
  return static_cast<std::uint8_t>((vmcr >> kVmcrBpr1Shift) & 7);
}
std::uint8_t VirtualGroupPriority(std::uint64_t vmcr, std::uint8_t priority, bool group1) {
  return GroupPriorityOf(priority, static_cast<std::uint8_t>((vmcr >> kVmcrBpr0Shift) & 7),
                         static_cast<std::uint8_t>((vmcr >> kVmcrBpr1Shift) & 7),
                         (vmcr & kVmcrCbpr) != 0, group1);
}
std::uint8_t VirtualPmr(std::uint64_t vmcr) {
  return static_cast<std::uint8_t>((vmcr >> kVmcrPmrShift) & UserGicV3::kPriorityMask);
}
}  // namespace

bool UserGicV3::CanSignalVirtual(const Virtual& v, bool group1) const {
  if ((v.hcr & kHcrEn) == 0) return false;
  if ((v.vmcr & (group1 ? kVmcrEng1 : kVmcrEng0)) == 0) return false;
  const int i = HighestLr(v, group1);
  if (i < 0) return false;
  const std::uint8_t priority = LrPriority(v.lr[static_cast<unsigned>(i)]);
  if (priority >= VirtualPmr(v.vmcr)) return false;
  return VirtualGroupPriority(v.vmcr, priority, group1) < VirtualRunningPriority(v);
}

bool UserGicV3::VirqLine(unsigned cpu) const {
  return cpu < num_cpus_ && CanSignalVirtual(cpus_[cpu].v, true);
}
bool UserGicV3::VfiqLine(unsigned cpu) const {
  return cpu < num_cpus_ && CanSignalVirtual(cpus_[cpu].v, false);
}

std::uint32_t UserGicV3::VirtualAcknowledge(unsigned cpu, bool group1) {
  Virtual& v = cpus_[cpu].v;
  if (!CanSignalVirtual(v, group1)) return kSpurious;
  const auto i = static_cast<unsigned>(HighestLr(v, group1));
  const std::uint8_t priority = LrPriority(v.lr[i]);
  v.lr[i] = WithState(v.lr[i], kLrStateActive);
  (group1 ? v.ap1 : v.ap0) |= ApBit(VirtualGroupPriority(v.vmcr, priority, group1));
  return LrVintid(v.lr[i]);
}

void UserGicV3::VirtualDeactivate(unsigned cpu, std::uint32_t intid) {
  Virtual& v = cpus_[cpu].v;
  for (std::uint64_t& lr : v.lr) {
    if ((LrState(lr) & kLrStateActive) == 0 || LrVintid(lr) != intid) continue;
    lr = WithState(lr, LrState(lr) & kLrStatePending);  // active -> invalid, both -> pending
    // A hardware interrupt's physical side is deactivated with it.
    if ((lr & kLrHw) != 0) Deactivate(cpu, LrPintid(lr));
    return;
  }
  // No list register holds it: the guest hypervisor learns from EOIcount.
  const std::uint64_t count = ((v.hcr >> kEoiCountShift) + 1) & 0x1F;
  v.hcr = (v.hcr & ~(0x1FULL << kEoiCountShift)) | (count << kEoiCountShift);
}

SysRegResult UserGicV3::VirtualAccess(unsigned cpu, arch::SysRegEncoding e, bool write,
                                      std::uint64_t value) {
  Virtual& v = cpus_[cpu].v;
  const SysRegResult done{true, 0};
  auto read = [](std::uint64_t x) { return SysRegResult{true, x}; };
  auto set_field = [&](unsigned shift, std::uint64_t mask, std::uint64_t x) {
    v.vmcr = (v.vmcr & ~(mask << shift)) | ((x & mask) << shift);
  };
  bool group1 = false;
  if (const int n = ApIndex(e, &group1); n >= 0) {
    std::uint32_t& ap = group1 ? v.ap1 : v.ap0;
    if (write) {
      if (n == 0) ap = static_cast<std::uint32_t>(value);
      return done;
    }
    return read(n == 0 ? ap : 0);
  }
  if (e == kIccPmr) {
    if (!write) return read(VirtualPmr(v.vmcr));
    set_field(kVmcrPmrShift, 0xFF, value & kPriorityMask);
    return done;
  }
  if (e == kIccBpr0 || e == kIccBpr1) {
    const bool g1 = e == kIccBpr1;
    if (g1 && (v.vmcr & kVmcrCbpr) != 0) {
      return write ? done : read(std::min<std::uint8_t>(VirtualBpr(v.vmcr, false) + 1, 7));
    }
    if (!write) return read(VirtualBpr(v.vmcr, g1));
    set_field(g1 ? kVmcrBpr1Shift : kVmcrBpr0Shift, 7, ClampBpr(value, g1 ? kMinBpr1 : kMinBpr0));
    return done;
  }
  if (e == kIccCtlr) {
    if (!write) {
      return read(((v.vmcr & kVmcrCbpr) != 0 ? kCtlrCbpr : 0) |
                  ((v.vmcr & kVmcrEoim) != 0 ? kCtlrEoiMode : 0) | kCtlrPriBits);
    }
    v.vmcr = (v.vmcr & ~(kVmcrCbpr | kVmcrEoim)) | ((value & kCtlrCbpr) != 0 ? kVmcrCbpr : 0) |
             ((value & kCtlrEoiMode) != 0 ? kVmcrEoim : 0);
    return done;
  }
  if (e == kIccIgrpen0 || e == kIccIgrpen1) {
    const std::uint64_t bit = e == kIccIgrpen1 ? kVmcrEng1 : kVmcrEng0;
    if (!write) return read((v.vmcr & bit) != 0 ? 1 : 0);
    v.vmcr = (value & 1) != 0 ? v.vmcr | bit : v.vmcr & ~bit;
    return done;
  }
  if (e == kIccIar0 || e == kIccIar1) {
    if (write) return {};
    return read(VirtualAcknowledge(cpu, e == kIccIar1));
  }
  if (e == kIccHppir0 || e == kIccHppir1) {
    if (write) return {};
    const int i = HighestLr(v, e == kIccHppir1);
    return read(i < 0 ? kSpurious : LrVintid(v.lr[static_cast<unsigned>(i)]));
  }
  if (e == kIccEoir0 || e == kIccEoir1) {
    if (!write) return {};
    const auto intid = static_cast<std::uint32_t>(value & 0xFFFF);
    if (IsSpecial(intid)) return done;  // no drop, no EOIcount
    std::uint32_t& ap = e == kIccEoir1 ? v.ap1 : v.ap0;
    ap = DropPriority(ap);
    if ((v.vmcr & kVmcrEoim) == 0) VirtualDeactivate(cpu, intid);
    return done;
  }
  if (e == kIccDir) {
    if (!write) return {};
    const auto intid = static_cast<std::uint32_t>(value & 0xFFFF);
    if (!IsSpecial(intid)) VirtualDeactivate(cpu, intid);
    return done;
  }
  if (e == kIccRpr) return write ? SysRegResult{} : read(VirtualRunningPriority(v));
  return {};
}

std::uint32_t UserGicV3::Elrsr(const Virtual& v) const {
  std::uint32_t bits = 0;
  for (unsigned i = 0; i < kListRegs; ++i) {
    const std::uint64_t lr = v.lr[i];
    const bool eoi_wait = (lr & kLrHw) == 0 && (lr & kLrEoi) != 0;
    if (LrState(lr) == 0 && !eoi_wait) bits |= 1U << i;
  }
  return bits;
}

std::uint32_t UserGicV3::Eisr(const Virtual& v) const {
  std::uint32_t bits = 0;
  for (unsigned i = 0; i < kListRegs; ++i) {
    const std::uint64_t lr = v.lr[i];
    if (LrState(lr) == 0 && (lr & kLrHw) == 0 && (lr & kLrEoi) != 0) bits |= 1U << i;
  }
  return bits;
}

std::uint32_t UserGicV3::Misr(const Virtual& v) const {
  unsigned valid = 0;
  bool any_pending = false;
  for (const std::uint64_t lr : v.lr) {
    if (LrState(lr) != 0) ++valid;
    if ((LrState(lr) & kLrStatePending) != 0) any_pending = true;
  }
  const bool eng0 = (v.vmcr & kVmcrEng0) != 0;
  const bool eng1 = (v.vmcr & kVmcrEng1) != 0;
  std::uint32_t m = 0;
  if (Eisr(v) != 0) m |= 1U << 0;                                                  // EOI
  if ((v.hcr & kHcrUie) != 0 && valid <= 1) m |= 1U << 1;                          // U
  if ((v.hcr & kHcrLrenpie) != 0 && (v.hcr >> kEoiCountShift) != 0) m |= 1U << 2;  // LRENP
  if ((v.hcr & kHcrNpie) != 0 && !any_pending) m |= 1U << 3;                       // NP
  if ((v.hcr & kHcrVgrp0eie) != 0 && eng0) m |= 1U << 4;
  if ((v.hcr & kHcrVgrp0die) != 0 && !eng0) m |= 1U << 5;
  if ((v.hcr & kHcrVgrp1eie) != 0 && eng1) m |= 1U << 6;
  if ((v.hcr & kHcrVgrp1die) != 0 && !eng1) m |= 1U << 7;
  return m;
}

void UserGicV3::UpdateMaintenance(unsigned cpu) {
  const Virtual& v = cpus_[cpu].v;
  cpus_[cpu].banked[kMaintenancePpi].line = (v.hcr & kHcrEn) != 0 && Misr(v) != 0;
}

SysRegResult UserGicV3::HypAccess(unsigned cpu, arch::SysRegEncoding e, bool write,
                                  std::uint64_t value) {
  Virtual& v = cpus_[cpu].v;
  const SysRegResult done{true, 0};
  auto read = [](std::uint64_t x) { return SysRegResult{true, x}; };
  if (e.op0 != 3 || e.op1 != 4 || e.crn != 12) return {};
  if ((e.crm == 8 || e.crm == 9) && e.op2 <= 3) {  // ICH_AP0R<n>, ICH_AP1R<n>
    std::uint32_t& ap = e.crm == 9 ? v.ap1 : v.ap0;
    if (write) {
      if (e.op2 == 0) ap = static_cast<std::uint32_t>(value);
      return done;
    }
    return read(e.op2 == 0 ? ap : 0);
  }
  if (e.crm == 12 && e.op2 < kListRegs) {  // ICH_LR<n>_EL2
    std::uint64_t& lr = v.lr[e.op2];
    if (!write) return read(lr);
    // The unimplemented priority bits read as zero.
    lr = value & ~(static_cast<std::uint64_t>(static_cast<std::uint8_t>(~kPriorityMask))
                   << kLrPriorityShift);
    return done;
  }
  if (e == kIchHcr) {
    if (!write) return read(v.hcr);
    v.hcr = value & kHcrWritable;
    return done;
  }
  if (e == kIchVmcr) {
    if (!write) return read(v.vmcr);
    v.vmcr = (value & kVmcrWritable) |
             (value & (static_cast<std::uint64_t>(kPriorityMask) << kVmcrPmrShift));
    // The binary points keep their minimum.
    v.vmcr |= static_cast<std::uint64_t>(ClampBpr(value >> kVmcrBpr0Shift, kMinBpr0))
              << kVmcrBpr0Shift;
    v.vmcr |= static_cast<std::uint64_t>(ClampBpr(value >> kVmcrBpr1Shift, kMinBpr1))
              << kVmcrBpr1Shift;
    return done;
  }
  if (write) return {};  // the rest are read-only
  if (e == kIchVtr) return read(kVtr);
  if (e == kIchMisr) return read(Misr(v));
  if (e == kIchEisr) return read(Eisr(v));
  if (e == kIchElrsr) return read(Elrsr(v));
  return {};
}

namespace {
// Whether an EL1 access of this ICC_* name goes to the virtual interface.
bool Virtualised(arch::SysRegEncoding e, const CpuIfContext& ctx) {
  if (ctx.el != 1 || (!ctx.imo && !ctx.fmo)) return false;
  bool group1 = false;
  if (ApIndex(e, &group1) >= 0) return group1 ? ctx.imo : ctx.fmo;
  if (e == kIccIar1 || e == kIccEoir1 || e == kIccHppir1 || e == kIccBpr1 || e == kIccIgrpen1) {
    return ctx.imo;
  }
  if (e == kIccIar0 || e == kIccEoir0 || e == kIccHppir0 || e == kIccBpr0 || e == kIccIgrpen0) {
    return ctx.fmo;
  }
  return e == kIccPmr || e == kIccRpr || e == kIccCtlr || e == kIccDir;
}
}  // namespace

SysRegResult UserGicV3::SysRegRead(unsigned cpu, arch::SysRegEncoding encoding,
                                   const CpuIfContext& ctx) {
  return Access(cpu, encoding, 0, ctx, /*write=*/false);
}

SysRegResult UserGicV3::SysRegWrite(unsigned cpu, arch::SysRegEncoding encoding,
                                    std::uint64_t value, const CpuIfContext& ctx) {
  return Access(cpu, encoding, value, ctx, /*write=*/true);
}

SysRegResult UserGicV3::Access(unsigned cpu, arch::SysRegEncoding e, std::uint64_t value,
                               const CpuIfContext& ctx, bool write) {
  if (cpu >= num_cpus_ || ctx.el < 1 || ctx.el > 2) return {};
  SysRegResult r;
  if (e.op1 == 4) {
    // The ICH_*_EL2 registers and ICC_SRE_EL2: EL2 only.
    if (ctx.el < 2) return {};
    r = e == kIccSreEl2 ? PhysicalAccess(cpu, e, write, value, ctx)
                        : HypAccess(cpu, e, write, value);
  } else if (Virtualised(e, ctx)) {
    r = VirtualAccess(cpu, e, write, value);
  } else {
    r = PhysicalAccess(cpu, e, write, value, ctx);
  }
  UpdateMaintenance(cpu);
  return r;
}

}  // namespace vtime::vmm
