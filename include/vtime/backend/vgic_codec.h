// The vGICv3 state as plain data and its snapshot encoding: no KVM, no OS
// header, built on every host, because the bytes it decodes come from a file
// or a migration peer. Saving and restoring through KVM is in vgic_state.h.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "vtime/result.h"

namespace vtime::kvm {

/// The state of a vGICv3, as plain data. Each list holds (attr, value)
/// pairs exactly as the KVM device attributes take them, sorted by attr with
/// no duplicates (SaveVgicV3 and DecodeVgicState guarantee this).
struct VgicState {
  /// Interrupts configured (KVM_DEV_ARM_VGIC_GRP_NR_IRQS): 64..1024, step 32.
  std::uint32_t nr_irqs = 0;
  /// Distributor registers (GRP_DIST_REGS): attr = offset.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> dist;
  /// Redistributor registers (GRP_REDIST_REGS): attr = mpidr << 32 | offset,
  /// offset 0x10000 + x for the SGI frame's registers.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> redist;
  /// CPU interface registers (GRP_CPU_SYSREGS): attr = mpidr << 32 | sysreg
  /// (op0 << 14 | op1 << 11 | CRn << 7 | CRm << 3 | op2).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> cpu_sysregs;
  /// Input line levels of the SPIs, 32 per entry (GRP_LEVEL_INFO): attr =
  /// mpidr << 32 | VGIC_LEVEL_INFO_LINE_LEVEL << 10 | first INTID. Empty if
  /// the kernel lacks the group.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> line_levels;
  friend bool operator==(const VgicState&, const VgicState&) = default;
};

/// Attribute-building blocks, exposed for tests and tools.
namespace vgic {
/// Attribute groups (arch/arm64/include/uapi/asm/kvm.h).
inline constexpr std::uint32_t kGrpDistRegs = 1;
inline constexpr std::uint32_t kGrpNrIrqs = 3;
inline constexpr std::uint32_t kGrpCtrl = 4;
inline constexpr std::uint32_t kGrpRedistRegs = 5;
inline constexpr std::uint32_t kGrpCpuSysregs = 6;
inline constexpr std::uint32_t kGrpLevelInfo = 7;
inline constexpr std::uint64_t kCtrlInit = 0;
/// Offset of the SGI frame (second 64K page) within a redistributor.
inline constexpr std::uint32_t kSgiFrame = 0x10000;
/// GRP_LEVEL_INFO attrs: the info kind (VGIC_LEVEL_INFO_LINE_LEVEL) sits at
/// this shift (KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO_SHIFT) above the INTID.
inline constexpr unsigned kLevelInfoShift = 10;
inline constexpr std::uint64_t kLevelInfoLineLevel = 0;

/// The 32-bit affinity field KVM takes in attr bits 63:32
/// (Aff3 << 24 | Aff2 << 16 | Aff1 << 8 | Aff0) of an MPIDR_EL1 value.
constexpr std::uint64_t AffinityField(std::uint64_t mpidr_el1) {
  return ((mpidr_el1 >> 32) & 0xff) << 24 | (mpidr_el1 & 0xffffff);
}
/// The sysreg field of a GRP_CPU_SYSREGS attr.
constexpr std::uint64_t SysregId(unsigned op0, unsigned op1, unsigned crn, unsigned crm,
                                 unsigned op2) {
  return std::uint64_t{op0} << 14 | std::uint64_t{op1} << 11 | std::uint64_t{crn} << 7 |
         std::uint64_t{crm} << 3 | op2;
}
inline constexpr std::uint64_t kIccPmr = SysregId(3, 0, 4, 6, 0);
inline constexpr std::uint64_t kIccBpr0 = SysregId(3, 0, 12, 8, 3);
inline constexpr std::uint64_t kIccAp0r0 = SysregId(3, 0, 12, 8, 4);  // + n, n < 4
inline constexpr std::uint64_t kIccAp1r0 = SysregId(3, 0, 12, 9, 0);  // + n, n < 4
inline constexpr std::uint64_t kIccBpr1 = SysregId(3, 0, 12, 12, 3);
inline constexpr std::uint64_t kIccCtlr = SysregId(3, 0, 12, 12, 4);
inline constexpr std::uint64_t kIccSre = SysregId(3, 0, 12, 12, 5);
inline constexpr std::uint64_t kIccIgrpen0 = SysregId(3, 0, 12, 12, 6);
inline constexpr std::uint64_t kIccIgrpen1 = SysregId(3, 0, 12, 12, 7);
/// The GIC virtualization interface of a guest hypervisor (a vCPU with
/// KVM_ARM_VCPU_HAS_EL2): the list registers, active priorities and
/// controls through which it gives its own guest interrupts. KVM keeps
/// them in memory, not in the vCPU's register list.
inline constexpr std::uint64_t kIchAp0r0 = SysregId(3, 4, 12, 8, 0);  // + n, n < 4
inline constexpr std::uint64_t kIchAp1r0 = SysregId(3, 4, 12, 9, 0);  // + n, n < 4
inline constexpr std::uint64_t kIchHcr = SysregId(3, 4, 12, 11, 0);
inline constexpr std::uint64_t kIchVtr = SysregId(3, 4, 12, 11, 1);  // read only, not saved
inline constexpr std::uint64_t kIchVmcr = SysregId(3, 4, 12, 11, 7);
inline constexpr std::uint64_t kIchLr0 = SysregId(3, 4, 12, 12, 0);  // + n, n < 8
inline constexpr std::uint64_t kIchLr8 = SysregId(3, 4, 12, 13, 0);  // + n, n < 8

/// attr = affinity field of `mpidr_el1` << 32 | low.
constexpr std::uint64_t VcpuAttr(std::uint64_t mpidr_el1, std::uint64_t low) {
  return AffinityField(mpidr_el1) << 32 | low;
}
}  // namespace vgic

/// The snapshot encoding: magic "VTVGIC3\0", u32 version, u32 nr_irqs, then
/// each list as a u32 count and (u64 attr, u32 or u64 value) entries, all
/// little-endian, then a CRC-32 (zlib polynomial) of everything before it.
std::vector<std::uint8_t> EncodeVgicState(const VgicState& state);
/// Decodes and validates (bounds, checksum, sorted unique attrs, attrs of the
/// right shape). Never reads past `bytes` and allocates no more than the
/// entries `bytes` can hold; errors are one line, kMalformed (kUnsupported
/// for a newer version).
Result<VgicState> DecodeVgicState(std::span<const std::uint8_t> bytes);

}  // namespace vtime::kvm
