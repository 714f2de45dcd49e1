// The vGICv3 registers a saved state holds, shared by the snapshot codec
// (vgic_codec.cc, pure) and the KVM save/restore (vgic_state.cc): their
// offsets, the phase each is restored in, and the shape check both apply.
// Internal to src/backend/kvm; no OS header.
#pragma once

#include <array>
#include <cstdint>

#include "vtime/backend/vgic_codec.h"
#include "vtime/result.h"

namespace vtime::kvm {

// Distributor register offsets (GICv3 architecture, GICD_*).
inline constexpr std::uint32_t kGicdCtlr = 0x0000;
inline constexpr std::uint32_t kGicdIidr = 0x0008;
inline constexpr std::uint32_t kGicdIgroupr = 0x0080;
inline constexpr std::uint32_t kGicdIsenabler = 0x0100;
inline constexpr std::uint32_t kGicdIcenabler = 0x0180;
inline constexpr std::uint32_t kGicdIspendr = 0x0200;
inline constexpr std::uint32_t kGicdIsactiver = 0x0300;
inline constexpr std::uint32_t kGicdIcactiver = 0x0380;
inline constexpr std::uint32_t kGicdIpriorityr = 0x0400;
inline constexpr std::uint32_t kGicdIcfgr = 0x0C00;
inline constexpr std::uint32_t kGicdIrouter = 0x6000;
// Redistributor: RD frame, and SGI frame (offsets within it, add vgic::kSgiFrame).
// GICR_PROPBASER/PENDBASER are left out: they only matter for LPIs (an ITS),
// which this does not cover, and KVM sanitises a written 0 into 0x180, so
// writing back their reset value would not even reproduce it.
inline constexpr std::uint32_t kGicrCtlr = 0x0000;
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

/// 64..1024 interrupts in steps of 32, what KVM_DEV_ARM_VGIC_GRP_NR_IRQS takes.
bool ValidNrIrqs(std::uint32_t n);

/// The phase of a distributor offset that SaveVgicV3 reads for nr_irqs, or
/// kNotSaved.
Phase DistPhase(std::uint64_t offset, std::uint32_t nr_irqs);
/// The phase of a redistributor offset (RD frame, or kSgiFrame + x), or kNotSaved.
Phase RedistPhase(std::uint64_t offset);

// The CPU interface registers saved on every vCPU (plus 1, 2 or 4 of each of
// AP0R/AP1R), in restore order: SRE, then CTLR (KVM checks its PRIbits and
// IDbits against the host's), BPR1 after CTLR (whose CBPR governs it), the
// group enables last.
inline constexpr std::array<std::uint64_t, 7> kIccFixed = {
    vgic::kIccSre,  vgic::kIccCtlr,    vgic::kIccPmr,    vgic::kIccBpr0,
    vgic::kIccBpr1, vgic::kIccIgrpen0, vgic::kIccIgrpen1};

/// Sort key of a sysreg within one vCPU's restore, or -1 if not one we save:
/// SRE, CTLR, PMR, BPR0, BPR1 (0..4), AP0R0..3 (5..8), AP1R0..3 (9..12),
/// IGRPEN0, IGRPEN1 (13, 14); for a guest hypervisor then ICH_VMCR_EL2
/// (15), ICH_AP0R0..3 (16..19), ICH_AP1R0..3 (20..23), ICH_LR0..15
/// (24..39) and ICH_HCR_EL2 (40).
int SysregRank(std::uint64_t id);

/// The shape of a state, without any device or vCPU list: nr_irqs valid,
/// lists sorted and unique, every attr one that SaveVgicV3 produces.
/// Errors are kMalformed.
Result<void> CheckShape(const VgicState& s);

}  // namespace vtime::kvm
