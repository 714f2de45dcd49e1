// vtime's names for a vCPU's registers, the same on every backend: 64-bit
// ids in the arm64 ONE_REG layout (the architecture's own encoding of each
// system register, op0:op1:CRn:CRm:op2, in the low 16 bits; the core
// registers by their place in the general-register file). A snapshot's
// registers carry these ids whichever backend saved them, so that one taken
// on one backend restores on another.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

#include "vtime/arch/sysreg.h"

namespace vtime::backend::regs {

/// The id fields: architecture, size (log2 of the bytes), group.
inline constexpr std::uint64_t kArm64 = 0x6000000000000000;
inline constexpr std::uint64_t kSizeU32 = 0x0020000000000000;
inline constexpr std::uint64_t kSizeU64 = 0x0030000000000000;
inline constexpr std::uint64_t kSizeU128 = 0x0040000000000000;
inline constexpr std::uint64_t kSizeMask = 0x00f0000000000000;
inline constexpr unsigned kSizeShift = 52;
inline constexpr std::uint64_t kGroupMask = 0x000000000fff0000;
inline constexpr std::uint64_t kGroupCore = 0x0000000000100000;
inline constexpr std::uint64_t kGroupSys = 0x0000000000130000;

/// The size in bytes of the register an id names.
constexpr std::size_t Size(std::uint64_t id) {
  return std::size_t{1} << ((id & kSizeMask) >> kSizeShift);
}

/// x0..x30 (n < 31), SP_EL0 (31), PC (32): the general-register file, in
/// 32-bit words from its start (each register is two).
inline constexpr unsigned kSp = 31;
inline constexpr unsigned kPc = 32;
constexpr std::uint64_t Core(unsigned n) { return kArm64 | kSizeU64 | kGroupCore | (2 * n); }
/// PSTATE, after PC.
constexpr std::uint64_t Pstate() { return kArm64 | kSizeU64 | kGroupCore | 66; }
/// SP_EL1 and ELR_EL1 after PSTATE, then the five banked SPSRs.
constexpr std::uint64_t SpEl1() { return kArm64 | kSizeU64 | kGroupCore | 68; }
constexpr std::uint64_t ElrEl1() { return kArm64 | kSizeU64 | kGroupCore | 70; }
constexpr std::uint64_t SpsrEl1() { return kArm64 | kSizeU64 | kGroupCore | 72; }
/// V0..V31 (128 bits each, 16-byte aligned after the SPSRs), then FPSR and
/// FPCR (32 bits).
constexpr std::uint64_t Vreg(unsigned n) { return kArm64 | kSizeU128 | kGroupCore | (84 + 4 * n); }
constexpr std::uint64_t Fpsr() { return kArm64 | kSizeU32 | kGroupCore | 212; }
constexpr std::uint64_t Fpcr() { return kArm64 | kSizeU32 | kGroupCore | 213; }

/// A 64-bit system register by its encoding.
constexpr std::uint64_t Sys(arch::SysRegEncoding e) {
  return kArm64 | kSizeU64 | kGroupSys | (std::uint64_t{e.op0} << 14) |
         (std::uint64_t{e.op1} << 11) | (std::uint64_t{e.crn} << 7) | (std::uint64_t{e.crm} << 3) |
         e.op2;
}
/// The encoding of a system-register id (its low 16 bits).
constexpr arch::SysRegEncoding EncodingOf(std::uint64_t id) {
  return arch::SysRegEncoding{
      static_cast<std::uint8_t>((id >> 14) & 3), static_cast<std::uint8_t>((id >> 11) & 7),
      static_cast<std::uint8_t>((id >> 7) & 15), static_cast<std::uint8_t>((id >> 3) & 15),
      static_cast<std::uint8_t>(id & 7)};
}
constexpr bool IsSys(std::uint64_t id) { return (id & kGroupMask) == kGroupSys; }

/// The timer registers. The ids of the virtual counter and the virtual
/// timer's CVAL are each other's architectural encodings (KVM's TIMER_CNT
/// and TIMER_CVAL, a frozen ABI mistake that vtime's snapshots keep): the
/// names here say which register each id really reaches.
inline constexpr std::uint64_t kCntvCtl = 0x603000000013DF19;   // CNTV_CTL_EL0
inline constexpr std::uint64_t kCntvct = 0x603000000013DF1A;    // CNTVCT_EL0 (as TIMER_CNT)
inline constexpr std::uint64_t kCntvCval = 0x603000000013DF02;  // CNTV_CVAL_EL0 (as TIMER_CVAL)
inline constexpr std::uint64_t kCntpCtl = 0x603000000013DF11;   // CNTP_CTL_EL0
inline constexpr std::uint64_t kCntpCval = 0x603000000013DF12;  // CNTP_CVAL_EL0
inline constexpr std::uint64_t kCntpct = 0x603000000013DF01;    // CNTPCT_EL0
inline constexpr std::uint64_t kCntkctlEl1 = 0x603000000013C708;
/// The EL2 time registers of a vCPU with EL2 (architectural encodings).
inline constexpr std::uint64_t kCntvoffEl2 = 0x603000000013E703;  // (3,4,14,0,3)
inline constexpr std::uint64_t kCnthctlEl2 = 0x603000000013E708;  // (3,4,14,1,0)
inline constexpr std::uint64_t kCnthpCtl = 0x603000000013E711;    // CNTHP_CTL_EL2 (3,4,14,2,1)
inline constexpr std::uint64_t kCnthpCval = 0x603000000013E712;   // CNTHP_CVAL_EL2 (3,4,14,2,2)
inline constexpr std::uint64_t kCnthvCtl = 0x603000000013E719;    // CNTHV_CTL_EL2 (3,4,14,3,1)
inline constexpr std::uint64_t kCnthvCval = 0x603000000013E71A;   // CNTHV_CVAL_EL2 (3,4,14,3,2)
/// Those six, in the order vtime reads them.
inline constexpr std::array<std::uint64_t, 6> kEl2TimeRegisters = {
    kCntvoffEl2, kCnthctlEl2, kCnthpCtl, kCnthpCval, kCnthvCtl, kCnthvCval};
inline constexpr std::uint64_t kMpidrEl1 = 0x603000000013C005;  // MPIDR_EL1 (3,0,0,0,5)

/// True for the timer registers, CNTKCTL_EL1 and the EL2 time registers,
/// which vtime saves and restores as guest time (offsets first, then
/// CTL/CVAL), not as plain state.
constexpr bool IsTimeRegister(std::uint64_t id) {
  return id == kCntvCtl || id == kCntvct || id == kCntvCval || id == kCntpCtl || id == kCntpCval ||
         id == kCntpct || id == kCntkctlEl1 ||
         std::find(kEl2TimeRegisters.begin(), kEl2TimeRegisters.end(), id) !=
             kEl2TimeRegisters.end();
}

}  // namespace vtime::backend::regs
