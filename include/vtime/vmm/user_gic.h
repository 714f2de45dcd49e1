// A GICv2 interrupt controller (distributor and CPU interfaces) emulated in
// the VMM, for `vtvmm --irqchip user`, where KVM has no in-kernel vGIC and the
// VMM drives each vCPU's IRQ line itself (KVM_IRQ_LINE). The model follows
// the GIC architecture v2 (IHI 0048B) without the Security Extensions: one
// security state, every interrupt in group 0, signalled as IRQ.
//
// It is pure and deterministic: no OS, no clock. The VMM forwards MMIO
// accesses and device line levels, then asks IrqLine() what each vCPU's IRQ
// line must be. The class is not thread-safe: the VMM serialises all calls
// (one mutex around the GIC).
//
// Implementation choices where the architecture leaves one:
//  - 5 priority bits (32 levels, as a GIC-400): the low 3 bits of
//    GICD_IPRIORITYR and GICC_PMR are RAZ/WI, and GICC_BPR is at least 2.
//  - GICD_IGROUPR is RAZ/WI (all group 0); GICC_CTLR.FIQEn is RAZ/WI, so
//    group 0 is signalled as IRQ; the group-1 aliases (GICC_AIAR, GICC_AHPPIR)
//    read 1023 and GICC_AEOIR ignores writes.
//  - GICD_IIDR 0x5600043B and GICC_IIDR 0x0562043B: implementer 0x43B (the
//    JEP106 code of Arm, as KVM's and QEMU's emulated GICs report), product
//    ID 0x56 ('V'), so that no guest mistakes it for a GIC-400 (0x020) and
//    applies that part's quirks; GICC_IIDR's architecture field says GICv2.
//  - PPIs are level-sensitive and their GICD_ICFGR1 is read-only; SGIs are
//    edge-triggered (read-only); SPIs are configurable.
//  - Among pending interrupts of equal priority the lowest INTID is taken;
//    among the sources of a pending SGI the lowest CPU number.
//  - With one CPU interface, GICD_ITARGETSR reads the only CPU's bit for
//    every interrupt and ignores writes; every SPI goes to CPU 0.
//  - GICC_CTLR.EOImodeS is implemented: with it set, GICC_EOIR only drops the
//    running priority and GICC_DIR deactivates.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "vtime/result.h"

namespace vtime::vmm {

/// The size of the emulated GIC.
struct UserGicConfig {
  /// CPU interfaces: 1..8 (GICv2's limit).
  unsigned num_cpus = 1;
  /// Interrupt IDs 0..num_irqs-1: a multiple of 32 from 32 to 992, or 1020
  /// (the architectural maximum, ITLinesNumber 31).
  unsigned num_irqs = 64;
};

/// Distributor register offsets (GICD_*), relative to the distributor base.
namespace gicd {
inline constexpr std::uint64_t kCtlr = 0x000;        ///< GICD_CTLR
inline constexpr std::uint64_t kTyper = 0x004;       ///< GICD_TYPER
inline constexpr std::uint64_t kIidr = 0x008;        ///< GICD_IIDR
inline constexpr std::uint64_t kIgroupr = 0x080;     ///< GICD_IGROUPRn
inline constexpr std::uint64_t kIsenabler = 0x100;   ///< GICD_ISENABLERn
inline constexpr std::uint64_t kIcenabler = 0x180;   ///< GICD_ICENABLERn
inline constexpr std::uint64_t kIspendr = 0x200;     ///< GICD_ISPENDRn
inline constexpr std::uint64_t kIcpendr = 0x280;     ///< GICD_ICPENDRn
inline constexpr std::uint64_t kIsactiver = 0x300;   ///< GICD_ISACTIVERn
inline constexpr std::uint64_t kIcactiver = 0x380;   ///< GICD_ICACTIVERn
inline constexpr std::uint64_t kIpriorityr = 0x400;  ///< GICD_IPRIORITYRn
inline constexpr std::uint64_t kItargetsr = 0x800;   ///< GICD_ITARGETSRn
inline constexpr std::uint64_t kIcfgr = 0xC00;       ///< GICD_ICFGRn
inline constexpr std::uint64_t kNsacr = 0xE00;       ///< GICD_NSACRn
inline constexpr std::uint64_t kSgir = 0xF00;        ///< GICD_SGIR
inline constexpr std::uint64_t kCpendsgir = 0xF10;   ///< GICD_CPENDSGIRn
inline constexpr std::uint64_t kSpendsgir = 0xF20;   ///< GICD_SPENDSGIRn
inline constexpr std::uint64_t kPidr4 = 0xFD0;       ///< First ID register (ICPIDR4)
inline constexpr std::uint64_t kPidr2 = 0xFE8;       ///< ICPIDR2 (ArchRev in [7:4])
}  // namespace gicd

/// CPU interface register offsets (GICC_*), relative to the CPU interface base.
namespace gicc {
inline constexpr std::uint64_t kCtlr = 0x0000;    ///< GICC_CTLR
inline constexpr std::uint64_t kPmr = 0x0004;     ///< GICC_PMR
inline constexpr std::uint64_t kBpr = 0x0008;     ///< GICC_BPR
inline constexpr std::uint64_t kIar = 0x000C;     ///< GICC_IAR
inline constexpr std::uint64_t kEoir = 0x0010;    ///< GICC_EOIR
inline constexpr std::uint64_t kRpr = 0x0014;     ///< GICC_RPR
inline constexpr std::uint64_t kHppir = 0x0018;   ///< GICC_HPPIR
inline constexpr std::uint64_t kAbpr = 0x001C;    ///< GICC_ABPR
inline constexpr std::uint64_t kAiar = 0x0020;    ///< GICC_AIAR
inline constexpr std::uint64_t kAeoir = 0x0024;   ///< GICC_AEOIR
inline constexpr std::uint64_t kAhppir = 0x0028;  ///< GICC_AHPPIR
inline constexpr std::uint64_t kApr = 0x00D0;     ///< GICC_APRn
inline constexpr std::uint64_t kNsapr = 0x00E0;   ///< GICC_NSAPRn
inline constexpr std::uint64_t kIidr = 0x00FC;    ///< GICC_IIDR
inline constexpr std::uint64_t kDir = 0x1000;     ///< GICC_DIR
}  // namespace gicc

/// A GICv2 distributor and `num_cpus` CPU interfaces, driven by MMIO and by
/// device input lines; see the file comment for the choices it makes.
class UserGic {
 public:
  /// Size of the distributor's MMIO region (GICD, 4 KiB).
  static constexpr std::uint64_t kDistSize = 0x1000;
  /// Size of the CPU interface's MMIO region (GICC, 8 KiB; GICC_DIR at 0x1000).
  static constexpr std::uint64_t kCpuSize = 0x2000;
  /// Priority bits implemented; the low 8 - kPriorityBits bits read as zero.
  static constexpr unsigned kPriorityBits = 5;
  /// The implemented bits of a priority byte (0xF8).
  static constexpr std::uint8_t kPriorityMask =
      static_cast<std::uint8_t>(0xFFU << (8 - kPriorityBits));
  /// The INTID GICC_IAR and GICC_HPPIR return when nothing can be signalled.
  static constexpr std::uint32_t kSpurious = 1023;
  /// GICD_IIDR: product 0x56, variant 0, revision 0, implementer 0x43B.
  static constexpr std::uint32_t kDistIidr = 0x5600043B;
  /// GICC_IIDR: product 0x056, architecture 2 (GICv2), revision 0, implementer 0x43B.
  static constexpr std::uint32_t kCpuIidr = 0x0562043B;

  /// A GIC in its reset state; kInvalidArgument if num_cpus is not 1..8 or
  /// num_irqs is not a multiple of 32 in 32..992 (or 1020).
  static Result<UserGic> Create(const UserGicConfig& config);

  /// A guest read of the distributor by vCPU `cpu` (banked registers depend
  /// on it) at `offset` from the region base, `size` 1, 2 or 4 bytes. Byte
  /// and halfword accesses are allowed to the byte-accessible registers
  /// (GICD_IPRIORITYR, GICD_ITARGETSR, GICD_CPENDSGIR, GICD_SPENDSGIR), word
  /// accesses everywhere; accesses must be naturally aligned. Anything else,
  /// including a reserved offset or an unknown `cpu`, reads as zero. `known`
  /// (if given) says whether the access hit an architected register with a
  /// valid size; bits for INTIDs beyond num_irqs read as zero but count as known.
  std::uint32_t DistRead(unsigned cpu, std::uint64_t offset, unsigned size, bool* known = nullptr);
  /// A guest write of the distributor; the rules of DistRead apply, and a
  /// write that is not to a known register changes nothing.
  void DistWrite(unsigned cpu, std::uint64_t offset, std::uint32_t value, unsigned size,
                 bool* known = nullptr);
  /// A guest read of vCPU `cpu`'s CPU interface (word accesses only). A read
  /// of GICC_IAR acknowledges an interrupt, which is why reads are not const.
  std::uint32_t CpuRead(unsigned cpu, std::uint64_t offset, unsigned size, bool* known = nullptr);
  /// A guest write of vCPU `cpu`'s CPU interface (word accesses only).
  void CpuWrite(unsigned cpu, std::uint64_t offset, std::uint32_t value, unsigned size,
                bool* known = nullptr);

  /// Drives the input line of PPI `intid` (16..31) of vCPU `cpu`. PPIs are
  /// level-sensitive: pending while the line is high. Other values are ignored.
  void SetPpiLevel(unsigned cpu, unsigned intid, bool level);
  /// Drives the input line of SPI `intid` (32..num_irqs-1): pending while high
  /// if level-sensitive, pending on a rising edge if edge-triggered. Other
  /// values are ignored.
  void SetSpiLevel(unsigned intid, bool level);

  /// The level of vCPU `cpu`'s IRQ output: the distributor and the CPU
  /// interface are enabled and an enabled interrupt targeting the CPU is
  /// pending and not active, with a priority higher (numerically lower) than
  /// GICC_PMR and a group priority higher than the running priority. False
  /// for an unknown `cpu`.
  [[nodiscard]] bool IrqLine(unsigned cpu) const;
  /// IrqLine of every CPU, CPU c in bit c.
  [[nodiscard]] std::uint32_t IrqLines() const;

  /// Whether interrupt `intid` is pending as seen by `cpu` (banked for 0..31;
  /// an SGI is pending when any source has it pending). False when out of range.
  [[nodiscard]] bool IsPending(unsigned cpu, unsigned intid) const;
  /// Whether interrupt `intid` is active as seen by `cpu`. False when out of range.
  [[nodiscard]] bool IsActive(unsigned cpu, unsigned intid) const;
  /// The running priority of `cpu` (GICC_RPR): 0xFF when idle or unknown.
  [[nodiscard]] std::uint8_t RunningPriority(unsigned cpu) const;

  /// Back to the reset state (every register, pending, active and line state).
  void Reset();

  /// The whole controller state (including the input line levels), for a
  /// snapshot: a checksummed, versioned frame ("VTUGIC", version 1).
  [[nodiscard]] std::vector<std::uint8_t> Save() const;
  /// A controller from Save()'s bytes. Refuses anything malformed or
  /// impossible (CPU or IRQ counts, an acknowledged INTID out of range, more
  /// acknowledged interrupts than priority levels, ...) with the reason.
  static Result<UserGic> Restore(std::span<const std::uint8_t> bytes);

  [[nodiscard]] unsigned num_cpus() const { return num_cpus_; }
  [[nodiscard]] unsigned num_irqs() const { return num_irqs_; }

 private:
  // State of one interrupt as one CPU sees it (banked copies for 0..31).
  struct Irq {
    bool enabled = false;
    bool active = false;
    bool latch = false;  // edge: pending; level: pending set by GICD_ISPENDR
    bool line = false;   // input line level (PPIs and SPIs)
    bool edge = false;   // edge-triggered (SGIs; SPIs per GICD_ICFGR)
    std::uint8_t priority = 0;
    std::uint8_t targets = 0;  // SPIs only: GICD_ITARGETSR
  };
  // One acknowledged interrupt that has not had its priority dropped.
  struct Acked {
    std::uint32_t intid = 0;
    std::uint32_t source = 0;  // SGIs: the requesting CPU
    std::uint8_t group_priority = 0;
  };
  struct CpuIf {
    std::uint32_t ctlr = 0;
    std::uint8_t pmr = 0;
    std::uint8_t bpr = 0;
    std::uint8_t abpr = 0;
    std::vector<Acked> acked;  // in acknowledge order; strictly rising priority
  };
  // The interrupt GICC_IAR would acknowledge, before the priority checks.
  struct Candidate {
    std::uint32_t intid = kSpurious;
    std::uint32_t source = 0;
    std::uint8_t priority = 0xFF;
  };

  UserGic(unsigned num_cpus, unsigned num_irqs);

  Irq* IrqOf(unsigned cpu, unsigned intid);
  const Irq* IrqOf(unsigned cpu, unsigned intid) const;
  bool Pending(unsigned cpu, unsigned intid) const;
  bool Targets(const Irq& irq, unsigned intid, unsigned cpu) const;
  Candidate Highest(unsigned cpu) const;
  bool CanSignal(unsigned cpu, const Candidate& c) const;
  std::uint8_t GroupPriority(unsigned cpu, std::uint8_t priority) const;
  std::uint32_t CpuMask() const { return (1U << num_cpus_) - 1U; }

  std::uint32_t ReadBits(unsigned cpu, std::uint64_t offset) const;
  void WriteBits(unsigned cpu, std::uint64_t offset, std::uint32_t value);
  std::uint8_t ReadByte(unsigned cpu, std::uint64_t offset) const;
  void WriteByte(unsigned cpu, std::uint64_t offset, std::uint8_t value);
  std::uint32_t ReadCfg(std::uint64_t offset) const;
  void WriteCfg(std::uint64_t offset, std::uint32_t value);
  void WriteSgir(unsigned cpu, std::uint32_t value);
  std::uint32_t Acknowledge(unsigned cpu);
  void EndOfInterrupt(unsigned cpu, std::uint32_t value);
  void Deactivate(unsigned cpu, std::uint32_t intid);
  std::uint32_t ActivePriorities(unsigned cpu) const;

  unsigned num_cpus_ = 1;
  unsigned num_irqs_ = 32;
  std::uint32_t dist_ctlr_ = 0;
  std::vector<std::array<Irq, 32>> banked_;                // [cpu][0..31]
  std::vector<std::array<std::uint8_t, 16>> sgi_sources_;  // [target cpu][sgi]: source CPUs
  std::vector<Irq> spis_;                                  // [intid - 32]
  std::vector<CpuIf> cpus_;
};

}  // namespace vtime::vmm
