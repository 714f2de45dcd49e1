// A GICv3 interrupt controller emulated in the VMM, with the GIC
// virtualization interface, for a guest hypervisor (vtvmm --el2) on a
// backend that hands the VMM the guest's GIC system-register accesses (the
// emulated one: backend::IrqChipKind::kUserV3). The distributor and the
// redistributors are MMIO; the CPU interface (ICC_*), the virtual CPU
// interface's control registers (ICH_*_EL2) and the virtual interface as a
// nested guest sees it (ICC_* names at EL1 under HCR_EL2.IMO/FMO, the
// architecture's ICV_* view) are system registers. The model follows the
// GIC architecture v3 (IHI 0069) with one security state (GICD_CTLR.DS = 1),
// affinity routing always on, and no LPIs, ITS or GICv2 compatibility.
//
// It is pure and deterministic: no OS, no clock. The VMM forwards accesses
// and device line levels, then asks IrqLine() and VirqLine() what each
// vCPU's IRQ and virtual IRQ inputs must be. Not thread-safe: the VMM
// serialises all calls (one mutex around the GIC).
//
// Implementation choices where the architecture leaves one:
//  - 5 priority bits (32 levels): the low 3 bits of every priority and of
//    ICC_PMR_EL1 are RAZ/WI; ICC_BPR0_EL1 is at least 2 and ICC_BPR1_EL1 at
//    least 3; one active-priority register per group (AP0R0, AP1R0: one bit
//    per level), AP{0,1}R{1,2,3} are RAZ/WI. The virtual interface is the
//    same (ICH_VTR_EL2: 4 list registers, PREbits and PRIbits 5, 16-bit
//    INTIDs, no Aff3, nV4 = 1).
//  - Group 0 is signalled on FIQ (FiqLine, VfiqLine); a VMM without a FIQ
//    input leaves group 0 undelivered. The project's guests use group 1.
//  - GICD_IROUTER: an SPI goes to the CPU whose Aff0 the register names
//    (Aff1..3 must be 0), and with Interrupt_Routing_Mode (bit 31) to CPU 0;
//    a route to no CPU delivers nowhere.
//  - PPIs are level-sensitive and SGIs edge-triggered (GICR_ICFGR0/1 read-
//    only); SPIs are configurable. Among pending interrupts of equal
//    priority the lowest INTID is taken.
//  - ICC_SGI1R_EL1 and ICC_ASGI1R_EL1 make group 1 SGIs, ICC_SGI0R_EL1
//    group 0 ones (one security state); targets outside Aff1..3 = 0 are
//    ignored. With HCR_EL2.IMO an EL1 SGI write still reaches the physical
//    distributor (the architecture traps it to EL2; no guest here does it).
//  - ICH_HCR_EL2's trap bits (TC, TALL0, TALL1, TSEI, TDIR) are stored and
//    read back but trap nothing.
//  - No snapshot format yet: a VM with this GIC cannot be saved.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "vtime/arch/sysreg.h"
#include "vtime/result.h"
#include "vtime/vmm/user_gic.h"

namespace vtime::vmm {

/// The GICv3 system registers this model answers (op0 3): the CPU
/// interface (ICC_*_EL1, and ICC_SRE_EL2) and the virtual interface's
/// controls (ICH_*_EL2); ICC_AP{0,1}R<n> and ICH_AP{0,1}R<n>, ICH_LR<n> by
/// their index.
namespace gicv3 {
constexpr arch::SysRegEncoding Icc(std::uint8_t crm, std::uint8_t op2) {
  return {3, 0, 12, crm, op2};
}
inline constexpr arch::SysRegEncoding kIccPmr{3, 0, 4, 6, 0};
inline constexpr arch::SysRegEncoding kIccIar0 = Icc(8, 0);
inline constexpr arch::SysRegEncoding kIccEoir0 = Icc(8, 1);
inline constexpr arch::SysRegEncoding kIccHppir0 = Icc(8, 2);
inline constexpr arch::SysRegEncoding kIccBpr0 = Icc(8, 3);
constexpr arch::SysRegEncoding IccAp0r(std::uint8_t n) {
  return Icc(8, static_cast<std::uint8_t>(4 + n));
}
constexpr arch::SysRegEncoding IccAp1r(std::uint8_t n) { return Icc(9, n); }
inline constexpr arch::SysRegEncoding kIccDir = Icc(11, 1);
inline constexpr arch::SysRegEncoding kIccRpr = Icc(11, 3);
inline constexpr arch::SysRegEncoding kIccSgi1r = Icc(11, 5);
inline constexpr arch::SysRegEncoding kIccAsgi1r = Icc(11, 6);
inline constexpr arch::SysRegEncoding kIccSgi0r = Icc(11, 7);
inline constexpr arch::SysRegEncoding kIccIar1 = Icc(12, 0);
inline constexpr arch::SysRegEncoding kIccEoir1 = Icc(12, 1);
inline constexpr arch::SysRegEncoding kIccHppir1 = Icc(12, 2);
inline constexpr arch::SysRegEncoding kIccBpr1 = Icc(12, 3);
inline constexpr arch::SysRegEncoding kIccCtlr = Icc(12, 4);
inline constexpr arch::SysRegEncoding kIccSre = Icc(12, 5);
inline constexpr arch::SysRegEncoding kIccIgrpen0 = Icc(12, 6);
inline constexpr arch::SysRegEncoding kIccIgrpen1 = Icc(12, 7);
inline constexpr arch::SysRegEncoding kIccSreEl2{3, 4, 12, 9, 5};
inline constexpr arch::SysRegEncoding kIchHcr{3, 4, 12, 11, 0};
inline constexpr arch::SysRegEncoding kIchVtr{3, 4, 12, 11, 1};
inline constexpr arch::SysRegEncoding kIchMisr{3, 4, 12, 11, 2};
inline constexpr arch::SysRegEncoding kIchEisr{3, 4, 12, 11, 3};
inline constexpr arch::SysRegEncoding kIchElrsr{3, 4, 12, 11, 5};
inline constexpr arch::SysRegEncoding kIchVmcr{3, 4, 12, 11, 7};
constexpr arch::SysRegEncoding IchLr(std::uint8_t n) { return {3, 4, 12, 12, n}; }
}  // namespace gicv3

/// Who makes a system-register access: its exception level (1 or 2), and
/// HCR_EL2.IMO/FMO for an access from EL1 on a vCPU with EL2 (false
/// otherwise), which send the ICC_* names to the virtual interface.
struct CpuIfContext {
  unsigned el = 1;
  bool imo = false;
  bool fmo = false;
};

/// A system-register access's outcome: `handled` false means no such
/// register at that level (the caller raises UNDEF); `value` is a read's.
struct SysRegResult {
  bool handled = false;
  std::uint64_t value = 0;
};

/// A GICv3 distributor, `num_cpus` redistributors and CPU interfaces, each
/// with a virtual CPU interface; see the file comment for its choices.
class UserGicV3 {
 public:
  /// The distributor's MMIO region (GICD, 64 KiB).
  static constexpr std::uint64_t kDistSize = 0x10000;
  /// One redistributor's MMIO (RD_base and SGI_base frames, 128 KiB).
  static constexpr std::uint64_t kRedistStride = 0x20000;
  static constexpr unsigned kPriorityBits = 5;
  static constexpr std::uint8_t kPriorityMask = 0xF8;
  static constexpr unsigned kListRegs = 4;
  static constexpr std::uint32_t kSpurious = 1023;
  /// The virtual interface's maintenance interrupt (a PPI, level).
  static constexpr unsigned kMaintenancePpi = 25;
  /// GICD_IIDR and GICR_IIDR: product 0x56, implementer 0x43B.
  static constexpr std::uint32_t kIidr = 0x5600043B;

  /// A GIC in its reset state; the sizes follow UserGicConfig's rules
  /// (1..8 CPUs, num_irqs a multiple of 32 from 32 to 992, or 1020).
  static Result<UserGicV3> Create(const UserGicConfig& config);

  /// Distributor accesses by vCPU `cpu` at `offset` from GICD's base: 4
  /// bytes anywhere, 1 byte to GICD_IPRIORITYR, 8 bytes to GICD_IROUTER,
  /// naturally aligned. Anything else reads as zero and writes nothing;
  /// `known` (if given) says whether the access hit a register.
  std::uint64_t DistRead(unsigned cpu, std::uint64_t offset, unsigned size, bool* known = nullptr);
  void DistWrite(unsigned cpu, std::uint64_t offset, std::uint64_t value, unsigned size,
                 bool* known = nullptr);
  /// Redistributor accesses at `offset` from the first redistributor's
  /// base (CPU = offset / kRedistStride): 4 bytes, 8 for GICR_TYPER, 1 for
  /// GICR_IPRIORITYR.
  std::uint64_t RedistRead(std::uint64_t offset, unsigned size, bool* known = nullptr);
  void RedistWrite(std::uint64_t offset, std::uint64_t value, unsigned size, bool* known = nullptr);

  /// A system-register access by vCPU `cpu` (ICC_*, ICH_*_EL2).
  SysRegResult SysRegRead(unsigned cpu, arch::SysRegEncoding encoding, const CpuIfContext& ctx);
  SysRegResult SysRegWrite(unsigned cpu, arch::SysRegEncoding encoding, std::uint64_t value,
                           const CpuIfContext& ctx);

  /// Device input lines: PPI `intid` (16..31) of vCPU `cpu`, SPI `intid`
  /// (32..num_irqs-1). Other values are ignored.
  void SetPpiLevel(unsigned cpu, unsigned intid, bool level);
  void SetSpiLevel(unsigned intid, bool level);

  /// vCPU `cpu`'s physical IRQ (group 1) and FIQ (group 0) outputs.
  [[nodiscard]] bool IrqLine(unsigned cpu) const;
  [[nodiscard]] bool FiqLine(unsigned cpu) const;
  /// Its virtual IRQ (group 1) and FIQ (group 0) outputs, from the list
  /// registers, for a nested guest at EL1.
  [[nodiscard]] bool VirqLine(unsigned cpu) const;
  [[nodiscard]] bool VfiqLine(unsigned cpu) const;

  [[nodiscard]] bool IsPending(unsigned cpu, unsigned intid) const;
  [[nodiscard]] bool IsActive(unsigned cpu, unsigned intid) const;
  /// ICC_RPR_EL1 of `cpu`: 0xFF when idle.
  [[nodiscard]] std::uint8_t RunningPriority(unsigned cpu) const;

  /// Back to the reset state, except the device input lines (SetPpiLevel,
  /// SetSpiLevel), which stay as their devices drive them.
  void Reset();
  [[nodiscard]] unsigned num_cpus() const { return num_cpus_; }
  [[nodiscard]] unsigned num_irqs() const { return num_irqs_; }

 private:
  struct Irq {
    bool enabled = false;
    bool active = false;
    bool latch = false;  // edge: pending; level: set by GICx_ISPENDR
    bool line = false;
    bool edge = false;
    bool group1 = false;
    std::uint8_t priority = 0;
    std::uint64_t route = 0;  // SPIs: GICD_IROUTER
  };
  struct Virtual {
    std::uint64_t hcr = 0;
    std::uint64_t vmcr = 0;
    std::array<std::uint64_t, kListRegs> lr{};
    std::uint32_t ap0 = 0;
    std::uint32_t ap1 = 0;
  };
  struct Cpu {
    std::array<Irq, 32> banked{};
    std::uint32_t waker = 0;
    std::uint8_t pmr = 0;
    std::uint8_t bpr0 = 0;
    std::uint8_t bpr1 = 0;
    bool igrpen0 = false;
    bool igrpen1 = false;
    std::uint64_t ctlr = 0;  // EOImode [1], CBPR [0]
    std::uint32_t ap0 = 0;   // one bit per active group priority level
    std::uint32_t ap1 = 0;
    Virtual v;
  };
  struct Candidate {
    std::uint32_t intid = kSpurious;
    std::uint8_t priority = 0xFF;
  };

  UserGicV3(unsigned num_cpus, unsigned num_irqs);
  Irq* IrqOf(unsigned cpu, unsigned intid);
  const Irq* IrqOf(unsigned cpu, unsigned intid) const;
  bool Pending(const Irq& irq) const { return irq.latch || (!irq.edge && irq.line); }
  bool Targets(const Irq& irq, unsigned intid, unsigned cpu) const;
  Candidate Highest(unsigned cpu, bool group1) const;
  std::uint8_t GroupPriority(const Cpu& c, std::uint8_t priority, bool group1) const;
  bool CanSignal(unsigned cpu, bool group1) const;

  std::uint64_t BitsRead(unsigned cpu, std::uint64_t reg, unsigned first_intid) const;
  void BitsWrite(unsigned cpu, std::uint64_t reg, unsigned first_intid, std::uint32_t value);
  std::uint32_t Acknowledge(unsigned cpu, bool group1);
  void EndOfInterrupt(unsigned cpu, bool group1, std::uint32_t intid);
  void Deactivate(unsigned cpu, std::uint32_t intid);
  void SendSgi(unsigned cpu, std::uint64_t value, bool group1);

  SysRegResult Access(unsigned cpu, arch::SysRegEncoding e, std::uint64_t value,
                      const CpuIfContext& ctx, bool write);
  SysRegResult PhysicalAccess(unsigned cpu, arch::SysRegEncoding e, bool write, std::uint64_t value,
                              const CpuIfContext& ctx);
  SysRegResult VirtualAccess(unsigned cpu, arch::SysRegEncoding e, bool write, std::uint64_t value);
  SysRegResult HypAccess(unsigned cpu, arch::SysRegEncoding e, bool write, std::uint64_t value);
  // The virtual interface.
  int HighestLr(const Virtual& v, bool group1) const;
  std::uint8_t VirtualRunningPriority(const Virtual& v) const;
  bool CanSignalVirtual(const Virtual& v, bool group1) const;
  std::uint32_t VirtualAcknowledge(unsigned cpu, bool group1);
  void VirtualDeactivate(unsigned cpu, std::uint32_t intid);
  std::uint32_t Elrsr(const Virtual& v) const;
  std::uint32_t Eisr(const Virtual& v) const;
  std::uint32_t Misr(const Virtual& v) const;
  void UpdateMaintenance(unsigned cpu);

  unsigned num_cpus_ = 1;
  unsigned num_irqs_ = 32;
  std::uint32_t dist_ctlr_ = 0;
  std::vector<Cpu> cpus_;
  std::vector<Irq> spis_;  // [intid - 32]
};

}  // namespace vtime::vmm
