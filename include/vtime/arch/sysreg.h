// The system registers of the Arm Generic Timer and their AArch64 encodings
// (op0, op1, CRn, CRm, op2), as MRS/MSR and ESR_EL2 name them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace vtime::arch {

/// The five fields that name an AArch64 system register.
struct SysRegEncoding {
  std::uint8_t op0 = 0;
  std::uint8_t op1 = 0;
  std::uint8_t crn = 0;
  std::uint8_t crm = 0;
  std::uint8_t op2 = 0;
  friend constexpr bool operator==(SysRegEncoding, SysRegEncoding) = default;
};

/// Every counter and timer register vtime knows. The EL02/EL12 forms are the
/// aliases a VHE hypervisor at EL2 uses to reach the EL1 timers.
enum class SysReg : std::uint8_t {
  CNTFRQ_EL0,
  CNTPCT_EL0,
  CNTVCT_EL0,
  CNTPCTSS_EL0,  // FEAT_ECV self-synchronised views
  CNTVCTSS_EL0,
  CNTKCTL_EL1,
  CNTP_TVAL_EL0,
  CNTP_CTL_EL0,
  CNTP_CVAL_EL0,
  CNTV_TVAL_EL0,
  CNTV_CTL_EL0,
  CNTV_CVAL_EL0,
  CNTVOFF_EL2,
  CNTPOFF_EL2,  // FEAT_ECV CNTPOFF
  CNTHCTL_EL2,
  CNTHP_TVAL_EL2,
  CNTHP_CTL_EL2,
  CNTHP_CVAL_EL2,
  CNTHV_TVAL_EL2,  // FEAT_VHE
  CNTHV_CTL_EL2,
  CNTHV_CVAL_EL2,
  CNTKCTL_EL12,
  CNTP_TVAL_EL02,
  CNTP_CTL_EL02,
  CNTP_CVAL_EL02,
  CNTV_TVAL_EL02,
  CNTV_CTL_EL02,
  CNTV_CVAL_EL02,
};

/// Number of SysReg values.
inline constexpr std::size_t kSysRegCount = static_cast<std::size_t>(SysReg::CNTV_CVAL_EL02) + 1;

/// The architectural encoding of a register.
SysRegEncoding EncodingOf(SysReg reg);

/// The Arm name of a register ("CNTV_CVAL_EL0").
std::string_view NameOf(SysReg reg);

namespace detail {
/// op1:CRm:op2 -> SysReg (0xff where none); op0 = 3 and CRn = 14 hold for
/// every timer register, so these 10 bits are the whole key. Inline lookups
/// keep a trapped access's decode to one load.
extern const std::array<std::uint8_t, 1024> kSysRegIndex;
inline constexpr std::uint8_t kNoSysReg = 0xff;
}  // namespace detail

/// The register an encoding names, or nothing if it is not a counter or
/// timer register vtime models.
inline std::optional<SysReg> SysRegFromEncoding(SysRegEncoding enc) {
  if (enc.op0 != 3 || enc.crn != 14 || enc.op1 > 7 || enc.crm > 15 || enc.op2 > 7) {
    return std::nullopt;
  }
  const unsigned key = (unsigned{enc.op1} << 7) | (unsigned{enc.crm} << 3) | enc.op2;
  const std::uint8_t slot = detail::kSysRegIndex[key];
  if (slot == detail::kNoSysReg) return std::nullopt;
  return static_cast<SysReg>(slot);
}

/// All registers, in SysReg order.
std::span<const SysReg> AllSysRegs();

}  // namespace vtime::arch
