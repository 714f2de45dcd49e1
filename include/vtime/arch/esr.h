// Decoding of a trapped MSR/MRS from its syndrome (ESR_EL2, exception class
// 0x18) into "read or write register R through Xt".
#pragma once

#include <cstdint>
#include <optional>

#include "vtime/arch/sysreg.h"
#include "vtime/result.h"

namespace vtime::arch {

/// ESR_ELx.EC for "trapped MSR, MRS or System instruction (AArch64)".
inline constexpr std::uint32_t kEcSysReg = 0x18;

/// Rt value that names XZR: reads discard the value, writes write zero.
inline constexpr std::uint8_t kXzr = 31;

/// One trapped system-register access.
struct SysRegAccess {
  SysRegEncoding encoding;    ///< As the syndrome gave it.
  std::optional<SysReg> reg;  ///< The timer register it names, if any.
  bool is_read = false;       ///< MRS (Direction = 1) rather than MSR.
  std::uint8_t rt = 0;        ///< General-purpose register number, 31 = XZR.
};

/// Decodes an ESR_EL2 value. Fails (kMalformed) if the exception class is not
/// 0x18, IL is 0 (EC 0x18 only comes from 32-bit instructions), or a RES0 bit
/// of the ISS or of ESR_EL2[63:32] is set. An encoding that is well formed
/// but not a timer register decodes with `reg` empty; emulating it UNDEFs.
Result<SysRegAccess> DecodeSysRegTrap(std::uint64_t esr);

/// The ESR_EL2 value a trap of this access would report (EC 0x18, IL 1).
std::uint64_t EncodeSysRegTrap(SysRegEncoding enc, bool is_read, std::uint8_t rt);

}  // namespace vtime::arch
