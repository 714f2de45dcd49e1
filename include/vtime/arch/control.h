// CNTKCTL_EL1 and CNTHCTL_EL2: the bits that decide which counter and timer
// accesses are allowed at EL0 and EL1.
#pragma once

#include <cstdint>

namespace vtime::arch {

/// CNTKCTL_EL1 (and the EL0 half of CNTHCTL_EL2 when HCR_EL2.E2H is 1).
namespace cntkctl {
inline constexpr std::uint64_t kEl0Pcten = 1U << 0;  ///< EL0 may read CNTPCT (and CNTFRQ)
inline constexpr std::uint64_t kEl0Vcten = 1U << 1;  ///< EL0 may read CNTVCT (and CNTFRQ)
inline constexpr std::uint64_t kEvnten = 1U << 2;    ///< event stream enable
inline constexpr std::uint64_t kEvntdir = 1U << 3;   ///< event stream edge direction
inline constexpr std::uint64_t kEvntiMask = 0xfU << 4;
inline constexpr std::uint64_t kEl0Vten = 1U << 8;  ///< EL0 may access CNTV_*
inline constexpr std::uint64_t kEl0Pten = 1U << 9;  ///< EL0 may access CNTP_*
inline constexpr std::uint64_t kEvntis = 1U << 17;  ///< event stream scale (FEAT_ECV)
/// The bits a write stores; EVNTIS only with FEAT_ECV.
inline constexpr std::uint64_t kWritable = 0x3ffU;
}  // namespace cntkctl

/// CNTHCTL_EL2. With HCR_EL2.E2H = 1 (the layout KVM uses) the EL1 access
/// controls sit at bits 10 and 11; with E2H = 0 they are bits 0 and 1.
namespace cnthctl {
inline constexpr std::uint64_t kEl1PctenE2h0 = 1U << 0;  ///< E2H=0: EL1 may read CNTPCT
inline constexpr std::uint64_t kEl1PcenE2h0 = 1U << 1;   ///< E2H=0: EL1 may use CNTP_*
inline constexpr std::uint64_t kEl1Pcten = 1U << 10;     ///< E2H=1: EL1 may read CNTPCT
inline constexpr std::uint64_t kEl1Pten = 1U << 11;      ///< E2H=1: EL1 may use CNTP_*
inline constexpr std::uint64_t kEcv = 1U << 12;          ///< CNTPOFF_EL2 in force (FEAT_ECV)
inline constexpr std::uint64_t kEl1Tvt = 1U << 13;       ///< trap EL0/EL1 CNTV_* (FEAT_ECV)
inline constexpr std::uint64_t kEl1Tvct = 1U << 14;      ///< trap EL0/EL1 CNTVCT (FEAT_ECV)
inline constexpr std::uint64_t kEl1Nvpct = 1U << 15;     ///< FEAT_ECV, NV2 redirection
inline constexpr std::uint64_t kEl1Nvvct = 1U << 16;     ///< FEAT_ECV, NV2 redirection
inline constexpr std::uint64_t kEvntis = 1U << 17;       ///< FEAT_ECV
inline constexpr std::uint64_t kCntvmask = 1U << 18;     ///< FEAT_RME
inline constexpr std::uint64_t kCntpmask = 1U << 19;     ///< FEAT_RME
/// Bits that exist without FEAT_ECV: the EL0/EL1 controls and event stream.
inline constexpr std::uint64_t kBase = 0xfffU;
/// Bits FEAT_ECV adds (ECV itself needs CNTPOFF, see control rules).
inline constexpr std::uint64_t kEcvBits = kEl1Tvt | kEl1Tvct | kEl1Nvpct | kEl1Nvvct | kEvntis;
}  // namespace cnthctl

}  // namespace vtime::arch
