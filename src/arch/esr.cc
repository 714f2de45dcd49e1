#include "vtime/arch/esr.h"

#include <string>

#include "vtime/hex.h"

namespace vtime::arch {
namespace {

// ISS layout for EC 0x18 (Arm ARM, ISS encoding for an exception from MSR,
// MRS or System instruction execution in AArch64 state).
constexpr unsigned kEcShift = 26;
constexpr std::uint64_t kIlBit = 1ULL << 25;
constexpr std::uint64_t kIssRes0 = 0x7ULL << 22;  // ISS[24:22]
constexpr unsigned kOp0Shift = 20;
constexpr unsigned kOp2Shift = 17;
constexpr unsigned kOp1Shift = 14;
constexpr unsigned kCrnShift = 10;
constexpr unsigned kRtShift = 5;
constexpr unsigned kCrmShift = 1;
constexpr std::uint64_t kDirectionRead = 1;

std::uint8_t Field(std::uint64_t esr, unsigned shift, std::uint64_t mask) {
  return static_cast<std::uint8_t>((esr >> shift) & mask);
}

// Kept out of line so that the common, well-formed decode stays small.
[[gnu::cold, gnu::noinline]] Result<SysRegAccess> RefuseSyndrome(std::uint64_t esr) {
  const auto ec = static_cast<std::uint32_t>((esr >> kEcShift) & 0x3f);
  std::string why;
  if (ec != kEcSysReg) {
    why = "exception class " + Hex(ec) + " is not a trapped MSR/MRS (0x18)";
  } else if ((esr >> 32) != 0) {
    why = "bits [63:32] are RES0 for EC 0x18";
  } else if ((esr & kIlBit) == 0) {
    why = "IL is 0, but MSR/MRS are 32-bit instructions";
  } else {
    why = "ISS[24:22] are RES0 for EC 0x18";
  }
  return Fail(ErrorCode::kMalformed, "ESR " + Hex(esr) + ": " + why);
}

}  // namespace

Result<SysRegAccess> DecodeSysRegTrap(std::uint64_t esr) {
  constexpr std::uint64_t kMustBe = (std::uint64_t{kEcSysReg} << kEcShift) | kIlBit;
  constexpr std::uint64_t kChecked =
      ~((1ULL << 32) - 1) | (0x3fULL << kEcShift) | kIlBit | kIssRes0;
  if ((esr & kChecked) != kMustBe) return RefuseSyndrome(esr);
  SysRegAccess access;
  access.encoding = SysRegEncoding{Field(esr, kOp0Shift, 0x3), Field(esr, kOp1Shift, 0x7),
                                   Field(esr, kCrnShift, 0xf), Field(esr, kCrmShift, 0xf),
                                   Field(esr, kOp2Shift, 0x7)};
  access.rt = Field(esr, kRtShift, 0x1f);
  access.is_read = (esr & kDirectionRead) != 0;
  access.reg = SysRegFromEncoding(access.encoding);
  return access;
}

std::uint64_t EncodeSysRegTrap(SysRegEncoding enc, bool is_read, std::uint8_t rt) {
  return (std::uint64_t{kEcSysReg} << kEcShift) | kIlBit |
         (std::uint64_t{enc.op0 & 3U} << kOp0Shift) | (std::uint64_t{enc.op2 & 7U} << kOp2Shift) |
         (std::uint64_t{enc.op1 & 7U} << kOp1Shift) | (std::uint64_t{enc.crn & 15U} << kCrnShift) |
         (std::uint64_t{rt & 31U} << kRtShift) | (std::uint64_t{enc.crm & 15U} << kCrmShift) |
         (is_read ? kDirectionRead : 0);
}

}  // namespace vtime::arch
