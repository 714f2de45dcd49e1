#include "vtime/vmm/user_gic.h"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <iterator>
#include <string>

#include "vtime/wire.h"

namespace vtime::vmm {
namespace {

constexpr unsigned kSgiCount = 16;
constexpr unsigned kBankedCount = 32;  // SGIs and PPIs
constexpr unsigned kMaxCpus = 8;
constexpr unsigned kMaxIrqs = 1020;  // INTIDs 1020..1023 are special

// GICD_CTLR: EnableGrp0 and EnableGrp1. Every interrupt is in group 0, so only
// bit 0 gates forwarding; bit 1 is stored so that a guest reads back what it wrote.
constexpr std::uint32_t kDistEnable = 1U << 0;
constexpr std::uint32_t kDistCtlrWritable = 0x3;

// GICC_CTLR without the Security Extensions: EnableGrp0 [0], EnableGrp1 [1],
// AckCtl [2], FIQEn [3], CBPR [4], the bypass disables [8:5], EOImodeS [9],
// EOImodeNS [10]. FIQEn is RAZ/WI because the VMM has only an IRQ line to
// drive; the other bits are stored, and only EnableGrp0 and EOImodeS act.
constexpr std::uint32_t kCpuEnable = 1U << 0;
constexpr std::uint32_t kEoiModeS = 1U << 9;
constexpr std::uint32_t kCpuCtlrWritable = 0x7F7;

// With 5 priority bits the group priority field is at most [7:3], which
// makes BPR 2 the smallest value with an effect; a smaller write sets it.
constexpr std::uint8_t kMinBpr = 7 - UserGic::kPriorityBits;
constexpr std::uint8_t kMinAbpr = kMinBpr + 1;

// The byte-accessible ranges: one byte per INTID for 0..1019 (the last word
// of each range is reserved), and one byte per SGI for the SGI pending sets.
constexpr std::uint64_t kIdBytes = kMaxIrqs;
constexpr std::uint64_t kSgiPendBytes = std::uint64_t{2} * kSgiCount;  // CPENDSGIR then SPENDSGIR

// GICD_ICFGR for SGIs: edge-triggered (Int_config[1] set), read-only.
constexpr std::uint32_t kSgiCfg = 0xAAAAAAAA;

// The ID registers at 0xFD0..0xFFC (PIDR4..7, PIDR0..3, CIDR0..3). PIDR2
// carries ArchRev 2 (GICv2) and, with PIDR1 and PIDR4, the JEP106 code of
// the implementer in GICD_IIDR; the part number is 0. CIDR0..3 are the
// standard component preamble.
constexpr std::array<std::uint32_t, 12> kIdRegs = {0x04, 0x00, 0x00, 0x00, 0x00, 0xB0,
                                                   0x2B, 0x00, 0x0D, 0xF0, 0x05, 0xB1};

bool In(std::uint64_t offset, std::uint64_t base, std::uint64_t bytes) {
  return offset >= base && offset - base < bytes;
}

bool ByteAccessible(std::uint64_t offset) {
  return In(offset, gicd::kIpriorityr, kIdBytes) || In(offset, gicd::kItargetsr, kIdBytes) ||
         In(offset, gicd::kCpendsgir, kSgiPendBytes);
}

// The six set/clear bit-register blocks of 0x80 bytes from GICD_ISENABLER0.
enum class BitOp : std::uint8_t {
  kSetEnable,
  kClearEnable,
  kSetPending,
  kClearPending,
  kSetActive,
  kClearActive,
};
constexpr std::uint64_t kBitBlock = 0x80;
constexpr std::uint64_t kBitBlocksEnd = gicd::kIcactiver + kBitBlock;

}  // namespace

Result<UserGic> UserGic::Create(const UserGicConfig& config) {
  if (config.num_cpus < 1 || config.num_cpus > kMaxCpus) {
    return Fail(ErrorCode::kInvalidArgument,
                "user GIC: num_cpus " + std::to_string(config.num_cpus) +
                    " is not 1..8 (a GICv2 has at most 8 CPU interfaces)");
  }
  const unsigned n = config.num_irqs;
  if (n < kBankedCount || (n % 32 != 0 && n != kMaxIrqs) || n > kMaxIrqs) {
    return Fail(ErrorCode::kInvalidArgument, "user GIC: num_irqs " + std::to_string(n) +
                                                 " is not a multiple of 32 in 32..992, nor 1020");
  }
  return UserGic(config.num_cpus, n);
}

UserGic::UserGic(unsigned num_cpus, unsigned num_irqs)
    : num_cpus_(num_cpus),
      num_irqs_(num_irqs),
      banked_(num_cpus),
      sgi_sources_(num_cpus),
      spis_(num_irqs - kBankedCount),
      cpus_(num_cpus) {
  Reset();
}

void UserGic::Reset() {
  dist_ctlr_ = 0;
  // Input lines belong to the devices driving them, so they survive a reset
  // of the controller; everything the guest can program goes back to reset.
  const auto reset = [](Irq& irq, bool edge) { irq = Irq{.line = irq.line, .edge = edge}; };
  for (auto& bank : banked_) {
    for (unsigned i = 0; i < kBankedCount; ++i) reset(bank[i], i < kSgiCount);
  }
  for (auto& sources : sgi_sources_) sources.fill(0);
  for (Irq& irq : spis_) reset(irq, false);
  for (CpuIf& c : cpus_) {
    c.ctlr = 0;
    c.pmr = 0;
    c.bpr = kMinBpr;
    c.abpr = kMinAbpr;
    c.acked.clear();
  }
}

namespace {
constexpr wire::Magic kStateMagic = {'V', 'T', 'U', 'G', 'I', 'C', '\0', '\0'};
constexpr std::uint32_t kStateVersion = 1;

tl::unexpected<Error> BadState(const std::string& why) {
  return Fail(ErrorCode::kMalformed, "user GIC state: " + why);
}
}  // namespace

std::vector<std::uint8_t> UserGic::Save() const {
  wire::Writer w;
  w.U32(num_cpus_);
  w.U32(num_irqs_);
  w.U32(dist_ctlr_);
  auto irq = [&w](const Irq& i) {
    w.U8(static_cast<std::uint8_t>((i.enabled ? 1 : 0) | (i.active ? 2 : 0) | (i.latch ? 4 : 0) |
                                   (i.line ? 8 : 0) | (i.edge ? 16 : 0)));
    w.U8(i.priority);
    w.U8(i.targets);
  };
  for (unsigned c = 0; c < num_cpus_; ++c) {
    for (const Irq& i : banked_[c]) irq(i);
    w.Bytes(sgi_sources_[c]);
    const CpuIf& cpu = cpus_[c];
    w.U32(cpu.ctlr);
    w.U8(cpu.pmr);
    w.U8(cpu.bpr);
    w.U8(cpu.abpr);
    w.U32(static_cast<std::uint32_t>(cpu.acked.size()));
    for (const Acked& a : cpu.acked) {
      w.U32(a.intid);
      w.U32(a.source);
      w.U8(a.group_priority);
    }
  }
  for (const Irq& i : spis_) irq(i);
  return wire::Frame(kStateMagic, kStateVersion, w.Take());
}

Result<UserGic> UserGic::Restore(std::span<const std::uint8_t> bytes) {
  auto frame = wire::Unframe(bytes, kStateMagic, kStateVersion, "user GIC state");
  if (!frame) return tl::unexpected(frame.error());
  wire::Reader r(frame->payload, "user GIC state");
  auto cpus = r.U32();
  auto irqs = r.U32();
  auto ctlr = r.U32();
  if (!cpus || !irqs || !ctlr) return BadState("truncated header");
  auto made = Create(UserGicConfig{.num_cpus = *cpus, .num_irqs = *irqs});
  if (!made) return BadState(made.error().context);
  UserGic g = std::move(*made);
  g.dist_ctlr_ = *ctlr & kDistCtlrWritable;
  auto irq = [&r](Irq& i, bool banked) -> Result<void> {
    auto flags = r.U8();
    auto priority = r.U8();
    auto targets = r.U8();
    if (!flags || !priority || !targets) return BadState("truncated interrupt state");
    if (*flags > 31) return BadState("unknown interrupt flags " + std::to_string(*flags));
    i.enabled = (*flags & 1) != 0;
    i.active = (*flags & 2) != 0;
    i.latch = (*flags & 4) != 0;
    i.line = (*flags & 8) != 0;
    i.edge = (*flags & 16) != 0;
    i.priority = *priority & kPriorityMask;
    i.targets = banked ? 0 : *targets;
    return Ok();
  };
  for (unsigned c = 0; c < g.num_cpus_; ++c) {
    for (unsigned n = 0; n < kBankedCount; ++n) {
      if (auto ok = irq(g.banked_[c][n], true); !ok) return tl::unexpected(ok.error());
      // SGIs are edge-triggered and PPIs level-sensitive, whatever was saved.
      g.banked_[c][n].edge = n < kSgiCount;
    }
    auto sources = r.Bytes(kSgiCount);
    if (!sources) return BadState("truncated SGI sources");
    for (unsigned n = 0; n < kSgiCount; ++n) {
      g.sgi_sources_[c][n] = static_cast<std::uint8_t>((*sources)[n] & g.CpuMask());
    }
    CpuIf& cpu = g.cpus_[c];
    auto cctlr = r.U32();
    auto pmr = r.U8();
    auto bpr = r.U8();
    auto abpr = r.U8();
    auto count = r.U32();
    if (!cctlr || !pmr || !bpr || !abpr || !count) return BadState("truncated CPU interface");
    if (*bpr > 7 || *abpr > 7) return BadState("binary point out of range");
    cpu.ctlr = *cctlr & kCpuCtlrWritable;
    cpu.pmr = *pmr & kPriorityMask;
    cpu.bpr = std::max<std::uint8_t>(*bpr, kMinBpr);
    cpu.abpr = std::max<std::uint8_t>(*abpr, kMinAbpr);
    // At most one acknowledged interrupt per priority level.
    if (*count > (1U << kPriorityBits)) {
      return BadState(std::to_string(*count) + " acknowledged interrupts on CPU " +
                      std::to_string(c));
    }
    for (std::uint32_t k = 0; k < *count; ++k) {
      auto intid = r.U32();
      auto source = r.U32();
      auto gp = r.U8();
      if (!intid || !source || !gp) return BadState("truncated acknowledged interrupt");
      if (*intid >= g.num_irqs_ || *source >= g.num_cpus_) {
        return BadState("acknowledged INTID " + std::to_string(*intid) + " from CPU " +
                        std::to_string(*source) + " out of range");
      }
      if (!cpu.acked.empty() && *gp >= cpu.acked.back().group_priority) {
        return BadState("acknowledged interrupts not in rising priority order");
      }
      cpu.acked.push_back(Acked{*intid, *source, *gp});
    }
  }
  for (Irq& i : g.spis_) {
    if (auto ok = irq(i, false); !ok) return tl::unexpected(ok.error());
  }
  if (!r.done()) return BadState("trailing bytes");
  return g;
}

UserGic::Irq* UserGic::IrqOf(unsigned cpu, unsigned intid) {
  return const_cast<Irq*>(static_cast<const UserGic*>(this)->IrqOf(cpu, intid));
}

const UserGic::Irq* UserGic::IrqOf(unsigned cpu, unsigned intid) const {
  if (cpu >= num_cpus_ || intid >= num_irqs_) return nullptr;
  if (intid < kBankedCount) return &banked_[cpu][intid];
  return &spis_[intid - kBankedCount];
}

bool UserGic::Pending(unsigned cpu, unsigned intid) const {
  const Irq* irq = IrqOf(cpu, intid);
  if (irq == nullptr) return false;
  // An SGI is pending while any source has it pending; those bits are the
  // only pending state an SGI has.
  if (intid < kSgiCount) return sgi_sources_[cpu][intid] != 0;
  // Level-sensitive: pending while the line is high, or while a GICD_ISPENDR
  // write keeps it pending; edge-triggered: the latch alone.
  return irq->latch || (!irq->edge && irq->line);
}

bool UserGic::Targets(const Irq& irq, unsigned intid, unsigned cpu) const {
  if (intid < kBankedCount || num_cpus_ == 1) return true;
  return ((irq.targets >> cpu) & 1U) != 0;
}

UserGic::Candidate UserGic::Highest(unsigned cpu) const {
  Candidate best;
  if (cpu >= num_cpus_ || (dist_ctlr_ & kDistEnable) == 0) return best;
  for (unsigned intid = 0; intid < num_irqs_; ++intid) {
    const Irq& irq = *IrqOf(cpu, intid);
    // An active interrupt is not signalled again until it is deactivated,
    // even if it is also pending: that is what keeps a level-sensitive
    // timer PPI from storming while its handler runs.
    if (!irq.enabled || irq.active || !Pending(cpu, intid) || !Targets(irq, intid, cpu)) continue;
    // Strictly lower wins, so ties go to the lowest INTID.
    if (best.intid == kSpurious || irq.priority < best.priority) {
      best.intid = intid;
      best.priority = irq.priority;
      best.source = intid < kSgiCount
                        ? static_cast<std::uint32_t>(std::countr_zero(sgi_sources_[cpu][intid]))
                        : 0;
    }
  }
  return best;
}

std::uint8_t UserGic::GroupPriority(unsigned cpu, std::uint8_t priority) const {
  // BPR n splits the priority into a group priority [7:n+1] and a
  // subpriority; only the group priority decides preemption.
  const unsigned shift = cpus_[cpu].bpr + 1U;
  return static_cast<std::uint8_t>(priority & ((0xFFU << shift) & 0xFFU));
}

bool UserGic::CanSignal(unsigned cpu, const Candidate& c) const {
  if (c.intid == kSpurious || (cpus_[cpu].ctlr & kCpuEnable) == 0) return false;
  return c.priority < cpus_[cpu].pmr && GroupPriority(cpu, c.priority) < RunningPriority(cpu);
}

bool UserGic::IrqLine(unsigned cpu) const {
  if (cpu >= num_cpus_) return false;
  return CanSignal(cpu, Highest(cpu));
}

std::uint32_t UserGic::IrqLines() const {
  std::uint32_t lines = 0;
  for (unsigned c = 0; c < num_cpus_; ++c) {
    if (IrqLine(c)) lines |= 1U << c;
  }
  return lines;
}

bool UserGic::IsPending(unsigned cpu, unsigned intid) const { return Pending(cpu, intid); }

bool UserGic::IsActive(unsigned cpu, unsigned intid) const {
  const Irq* irq = IrqOf(cpu, intid);
  return irq != nullptr && irq->active;
}

std::uint8_t UserGic::RunningPriority(unsigned cpu) const {
  std::uint8_t running = 0xFF;  // idle
  if (cpu >= num_cpus_) return running;
  for (const Acked& a : cpus_[cpu].acked) running = std::min(running, a.group_priority);
  return running;
}

void UserGic::SetPpiLevel(unsigned cpu, unsigned intid, bool level) {
  if (intid < kSgiCount || intid >= kBankedCount) return;
  Irq* irq = IrqOf(cpu, intid);
  if (irq != nullptr) irq->line = level;
}

void UserGic::SetSpiLevel(unsigned intid, bool level) {
  if (intid < kBankedCount) return;
  Irq* irq = IrqOf(0, intid);
  if (irq == nullptr) return;
  if (irq->edge && level && !irq->line) irq->latch = true;
  irq->line = level;
}

// ---- Distributor -----------------------------------------------------------

std::uint32_t UserGic::ReadBits(unsigned cpu, std::uint64_t offset) const {
  const auto op = static_cast<BitOp>((offset - gicd::kIsenabler) / kBitBlock);
  const auto first = static_cast<unsigned>((offset - gicd::kIsenabler) % kBitBlock / 4 * 32);
  std::uint32_t value = 0;
  for (unsigned bit = 0; bit < 32; ++bit) {
    const Irq* irq = IrqOf(cpu, first + bit);
    if (irq == nullptr) break;
    bool set = false;
    switch (op) {
      case BitOp::kSetEnable:
      case BitOp::kClearEnable:
        set = irq->enabled;
        break;
      case BitOp::kSetPending:
      case BitOp::kClearPending:
        set = Pending(cpu, first + bit);
        break;
      case BitOp::kSetActive:
      case BitOp::kClearActive:
        set = irq->active;
        break;
    }
    if (set) value |= 1U << bit;
  }
  return value;
}

void UserGic::WriteBits(unsigned cpu, std::uint64_t offset, std::uint32_t value) {
  const auto op = static_cast<BitOp>((offset - gicd::kIsenabler) / kBitBlock);
  const auto first = static_cast<unsigned>((offset - gicd::kIsenabler) % kBitBlock / 4 * 32);
  for (unsigned bit = 0; bit < 32; ++bit) {
    if (((value >> bit) & 1U) == 0) continue;
    const unsigned intid = first + bit;
    Irq* irq = IrqOf(cpu, intid);
    if (irq == nullptr) break;
    switch (op) {
      case BitOp::kSetEnable:
        irq->enabled = true;
        break;
      case BitOp::kClearEnable:
        irq->enabled = false;
        break;
      // GICv2 sets and clears an SGI's pending state per source through
      // GICD_SPENDSGIR/CPENDSGIR; its GICD_ISPENDR/ICPENDR bits ignore writes.
      case BitOp::kSetPending:
        if (intid >= kSgiCount) irq->latch = true;
        break;
      case BitOp::kClearPending:
        // For a level-sensitive interrupt this removes only the software
        // pending state: it stays pending while its line is high.
        if (intid >= kSgiCount) irq->latch = false;
        break;
      case BitOp::kSetActive:
        irq->active = true;
        break;
      case BitOp::kClearActive:
        irq->active = false;
        break;
    }
  }
}

std::uint8_t UserGic::ReadByte(unsigned cpu, std::uint64_t offset) const {
  if (In(offset, gicd::kIpriorityr, kIdBytes)) {
    const Irq* irq = IrqOf(cpu, static_cast<unsigned>(offset - gicd::kIpriorityr));
    return irq != nullptr ? irq->priority : 0;
  }
  if (In(offset, gicd::kItargetsr, kIdBytes)) {
    const auto intid = static_cast<unsigned>(offset - gicd::kItargetsr);
    const Irq* irq = IrqOf(cpu, intid);
    if (irq == nullptr) return 0;
    // SGIs and PPIs always target the CPU reading them, and so do SPIs when
    // there is only one CPU interface (their targets are fixed).
    if (intid < kBankedCount || num_cpus_ == 1) return static_cast<std::uint8_t>(1U << cpu);
    return irq->targets;
  }
  if (In(offset, gicd::kCpendsgir, kSgiPendBytes)) {
    return sgi_sources_[cpu][(offset - gicd::kCpendsgir) % kSgiCount];
  }
  return 0;
}

void UserGic::WriteByte(unsigned cpu, std::uint64_t offset, std::uint8_t value) {
  if (In(offset, gicd::kIpriorityr, kIdBytes)) {
    Irq* irq = IrqOf(cpu, static_cast<unsigned>(offset - gicd::kIpriorityr));
    if (irq != nullptr) irq->priority = value & kPriorityMask;
  } else if (In(offset, gicd::kItargetsr, kIdBytes)) {
    const auto intid = static_cast<unsigned>(offset - gicd::kItargetsr);
    Irq* irq = IrqOf(cpu, intid);
    // Bits for CPU interfaces that do not exist are RAZ/WI.
    if (irq != nullptr && intid >= kBankedCount && num_cpus_ > 1) {
      irq->targets = static_cast<std::uint8_t>(value & CpuMask());
    }
  } else if (In(offset, gicd::kCpendsgir, kSgiPendBytes)) {
    const auto sgi = static_cast<std::size_t>((offset - gicd::kCpendsgir) % kSgiCount);
    std::uint8_t& sources = sgi_sources_[cpu][sgi];
    if (offset < gicd::kSpendsgir) {
      sources = static_cast<std::uint8_t>(sources & ~value);
    } else {
      sources = static_cast<std::uint8_t>(sources | (value & CpuMask()));
    }
  }
}

std::uint32_t UserGic::ReadCfg(std::uint64_t offset) const {
  const auto reg = static_cast<unsigned>((offset - gicd::kIcfgr) / 4);
  if (reg == 0) return kSgiCfg;
  if (reg == 1) return 0;  // PPIs: level-sensitive, read-only
  std::uint32_t value = 0;
  for (unsigned i = 0; i < 16; ++i) {
    const Irq* irq = IrqOf(0, reg * 16 + i);
    if (irq == nullptr) break;
    if (irq->edge) value |= 2U << (2 * i);
  }
  return value;
}

void UserGic::WriteCfg(std::uint64_t offset, std::uint32_t value) {
  const auto reg = static_cast<unsigned>((offset - gicd::kIcfgr) / 4);
  if (reg < 2) return;  // SGIs and PPIs are not configurable here
  for (unsigned i = 0; i < 16; ++i) {
    Irq* irq = IrqOf(0, reg * 16 + i);
    if (irq == nullptr) break;
    // Int_config[1] chooses edge (1) or level (0); Int_config[0] is reserved.
    // A latched pending state survives the change; the architecture leaves
    // reconfiguring an enabled interrupt UNPREDICTABLE, and this is the
    // simplest defined outcome.
    irq->edge = ((value >> (2 * i + 1)) & 1U) != 0;
  }
}

void UserGic::WriteSgir(unsigned cpu, std::uint32_t value) {
  const std::uint32_t sgi = value & 0xF;
  std::uint32_t targets = 0;
  switch ((value >> 24) & 0x3) {
    case 0:  // the CPUs in CPUTargetList
      targets = (value >> 16) & 0xFF;
      break;
    case 1:  // every CPU but the requester
      targets = ~(1U << cpu);
      break;
    case 2:  // the requester only
      targets = 1U << cpu;
      break;
    default:  // reserved: no SGI
      break;
  }
  targets &= CpuMask();
  for (unsigned t = 0; t < num_cpus_; ++t) {
    if (((targets >> t) & 1U) != 0) sgi_sources_[t][sgi] |= static_cast<std::uint8_t>(1U << cpu);
  }
}

std::uint32_t UserGic::DistRead(unsigned cpu, std::uint64_t offset, unsigned size, bool* known) {
  bool ok = false;
  std::uint32_t value = 0;
  const bool valid = cpu < num_cpus_ && offset < kDistSize &&
                     (size == 1 || size == 2 || size == 4) && offset % size == 0;
  if (valid && ByteAccessible(offset)) {
    // Each byte is its own register; a wider access is several of them,
    // little-endian, as on the architected bus.
    ok = true;
    for (unsigned i = 0; i < size; ++i) {
      value |= static_cast<std::uint32_t>(ReadByte(cpu, offset + i)) << (8 * i);
    }
  } else if (valid && size == 4) {
    ok = true;
    if (offset == gicd::kCtlr) {
      value = dist_ctlr_;
    } else if (offset == gicd::kTyper) {
      // ITLinesNumber [4:0]: 32 * (N + 1) lines; CPUNumber [7:5]: CPUs - 1;
      // SecurityExtn [10] and LSPI [15:11] are zero.
      value = ((num_irqs_ + 31) / 32 - 1) | ((num_cpus_ - 1) << 5);
    } else if (offset == gicd::kIidr) {
      value = kDistIidr;
    } else if (In(offset, gicd::kIsenabler, kBitBlocksEnd - gicd::kIsenabler)) {
      value = ReadBits(cpu, offset);
    } else if (In(offset, gicd::kIcfgr, 0x100)) {
      value = ReadCfg(offset);
    } else if (In(offset, gicd::kPidr4, kDistSize - gicd::kPidr4)) {
      value = kIdRegs[(offset - gicd::kPidr4) / 4];
    } else if (In(offset, gicd::kIgroupr, 0x80) || In(offset, gicd::kNsacr, 0x100) ||
               offset == gicd::kSgir) {
      value = 0;  // groups and NSACR are RAZ/WI here; GICD_SGIR is write-only
    } else {
      ok = false;
    }
  }
  if (known != nullptr) *known = ok;
  return ok ? value : 0;
}

void UserGic::DistWrite(unsigned cpu, std::uint64_t offset, std::uint32_t value, unsigned size,
                        bool* known) {
  bool ok = false;
  const bool valid = cpu < num_cpus_ && offset < kDistSize &&
                     (size == 1 || size == 2 || size == 4) && offset % size == 0;
  if (valid && ByteAccessible(offset)) {
    ok = true;
    for (unsigned i = 0; i < size; ++i) {
      WriteByte(cpu, offset + i, static_cast<std::uint8_t>((value >> (8 * i)) & 0xFF));
    }
  } else if (valid && size == 4) {
    ok = true;
    if (offset == gicd::kCtlr) {
      dist_ctlr_ = value & kDistCtlrWritable;
    } else if (In(offset, gicd::kIsenabler, kBitBlocksEnd - gicd::kIsenabler)) {
      WriteBits(cpu, offset, value);
    } else if (In(offset, gicd::kIcfgr, 0x100)) {
      WriteCfg(offset, value);
    } else if (offset == gicd::kSgir) {
      WriteSgir(cpu, value);
    } else if (offset == gicd::kTyper || offset == gicd::kIidr ||
               In(offset, gicd::kIgroupr, 0x80) || In(offset, gicd::kNsacr, 0x100) ||
               In(offset, gicd::kPidr4, kDistSize - gicd::kPidr4)) {
      // Read-only or RAZ/WI: the write is valid and changes nothing.
    } else {
      ok = false;
    }
  }
  if (known != nullptr) *known = ok;
}

// ---- CPU interface ---------------------------------------------------------

std::uint32_t UserGic::Acknowledge(unsigned cpu) {
  const Candidate c = Highest(cpu);
  if (!CanSignal(cpu, c)) return kSpurious;
  Irq& irq = *IrqOf(cpu, c.intid);
  if (c.intid < kSgiCount) {
    // One source's request is taken; the others stay pending and are
    // signalled after this one is deactivated.
    sgi_sources_[cpu][c.intid] =
        static_cast<std::uint8_t>(sgi_sources_[cpu][c.intid] & ~(1U << c.source));
  } else {
    // Edge: the latched edge is consumed. Level: a GICD_ISPENDR latch is
    // consumed and the pending state follows the line from now on, so a line
    // still high leaves the interrupt active and pending.
    irq.latch = false;
  }
  irq.active = true;
  cpus_[cpu].acked.push_back(Acked{c.intid, c.source, GroupPriority(cpu, c.priority)});
  return c.intid | (c.source << 10);
}

void UserGic::Deactivate(unsigned cpu, std::uint32_t intid) {
  Irq* irq = IrqOf(cpu, intid);
  if (irq != nullptr) irq->active = false;
}

void UserGic::EndOfInterrupt(unsigned cpu, std::uint32_t value) {
  const std::uint32_t intid = value & 0x3FF;
  const std::uint32_t source = (value >> 10) & 0x7;
  if (intid >= num_irqs_) return;  // spurious or unimplemented: ignored
  // Priority drop: the most recent acknowledgement of this interrupt. A
  // guest should end the most recent one first; ending an older one out of
  // order is UNPREDICTABLE, and dropping that entry is the harmless outcome.
  auto& acked = cpus_[cpu].acked;
  for (auto it = acked.rbegin(); it != acked.rend(); ++it) {
    if (it->intid == intid && (intid >= kSgiCount || it->source == source)) {
      acked.erase(std::next(it).base());
      break;
    }
  }
  if ((cpus_[cpu].ctlr & kEoiModeS) == 0) Deactivate(cpu, intid);
}

std::uint32_t UserGic::ActivePriorities(unsigned cpu) const {
  // GICC_APR0 bit n: group priority n << 3 is active (the layout is
  // IMPLEMENTATION DEFINED; this is the natural one for 5 priority bits).
  std::uint32_t bits = 0;
  for (const Acked& a : cpus_[cpu].acked) bits |= 1U << (a.group_priority >> 3);
  return bits;
}

std::uint32_t UserGic::CpuRead(unsigned cpu, std::uint64_t offset, unsigned size, bool* known) {
  bool ok = false;
  std::uint32_t value = 0;
  if (cpu < num_cpus_ && size == 4 && offset < kCpuSize && offset % 4 == 0) {
    ok = true;
    const CpuIf& c = cpus_[cpu];
    if (offset == gicc::kCtlr) {
      value = c.ctlr;
    } else if (offset == gicc::kPmr) {
      value = c.pmr;
    } else if (offset == gicc::kBpr) {
      value = c.bpr;
    } else if (offset == gicc::kIar) {
      value = Acknowledge(cpu);
    } else if (offset == gicc::kRpr) {
      value = RunningPriority(cpu);
    } else if (offset == gicc::kHppir) {
      const Candidate h = Highest(cpu);
      value = h.intid | (h.source << 10);
    } else if (offset == gicc::kAbpr) {
      value = c.abpr;
    } else if (offset == gicc::kAiar || offset == gicc::kAhppir) {
      value = kSpurious;  // there are no group 1 interrupts
    } else if (offset == gicc::kApr) {
      value = ActivePriorities(cpu);
    } else if (offset == gicc::kIidr) {
      value = kCpuIidr;
    } else if (offset == gicc::kEoir || offset == gicc::kAeoir || offset == gicc::kDir ||
               In(offset, gicc::kApr, 0x20)) {
      value = 0;  // write-only, or APR1..3 and NSAPR0..3 (RAZ/WI)
    } else {
      ok = false;
    }
  }
  if (known != nullptr) *known = ok;
  return ok ? value : 0;
}

void UserGic::CpuWrite(unsigned cpu, std::uint64_t offset, std::uint32_t value, unsigned size,
                       bool* known) {
  bool ok = false;
  if (cpu < num_cpus_ && size == 4 && offset < kCpuSize && offset % 4 == 0) {
    ok = true;
    CpuIf& c = cpus_[cpu];
    if (offset == gicc::kCtlr) {
      c.ctlr = value & kCpuCtlrWritable;
    } else if (offset == gicc::kPmr) {
      c.pmr = static_cast<std::uint8_t>(value & kPriorityMask);
    } else if (offset == gicc::kBpr) {
      c.bpr = std::max(static_cast<std::uint8_t>(value & 0x7), kMinBpr);
    } else if (offset == gicc::kAbpr) {
      c.abpr = std::max(static_cast<std::uint8_t>(value & 0x7), kMinAbpr);
    } else if (offset == gicc::kEoir) {
      EndOfInterrupt(cpu, value);
    } else if (offset == gicc::kDir) {
      // With EOImodeS clear, GICC_EOIR deactivates and a GICC_DIR write is
      // UNPREDICTABLE; ignoring it keeps the active state consistent.
      if ((c.ctlr & kEoiModeS) != 0) Deactivate(cpu, value & 0x3FF);
    } else if (offset == gicc::kIar || offset == gicc::kRpr || offset == gicc::kHppir ||
               offset == gicc::kAiar || offset == gicc::kAhppir || offset == gicc::kIidr ||
               offset == gicc::kAeoir || In(offset, gicc::kApr, 0x20)) {
      // Read-only, or without effect: no group 1 interrupts, and the active
      // priorities are derived from the acknowledgements rather than stored.
    } else {
      ok = false;
    }
  }
  if (known != nullptr) *known = ok;
}

}  // namespace vtime::vmm
