// Trapped MSR/MRS syndromes: encoding, decoding and the register table,
// checked against encodings written out here from the Arm ARM (DDI 0487)
// register descriptions, independently of src/arch/sysreg.cc.
#include "vtime/arch/esr.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <string_view>

#include "vtime/arch/sysreg.h"

namespace vtime {

// Failure messages name the error code instead of printing its bytes.
void PrintTo(ErrorCode code, std::ostream* os) { *os << ErrorCodeName(code); }

namespace arch {
namespace {

struct Expected {
  std::string_view name;
  unsigned op0, op1, crn, crm, op2;
};

// Arm ARM encodings, one line per register vtime models.
constexpr std::array<Expected, 28> kArmArm = {{
    {"CNTFRQ_EL0", 3, 3, 14, 0, 0},     {"CNTPCT_EL0", 3, 3, 14, 0, 1},
    {"CNTVCT_EL0", 3, 3, 14, 0, 2},     {"CNTPCTSS_EL0", 3, 3, 14, 0, 5},
    {"CNTVCTSS_EL0", 3, 3, 14, 0, 6},   {"CNTKCTL_EL1", 3, 0, 14, 1, 0},
    {"CNTP_TVAL_EL0", 3, 3, 14, 2, 0},  {"CNTP_CTL_EL0", 3, 3, 14, 2, 1},
    {"CNTP_CVAL_EL0", 3, 3, 14, 2, 2},  {"CNTV_TVAL_EL0", 3, 3, 14, 3, 0},
    {"CNTV_CTL_EL0", 3, 3, 14, 3, 1},   {"CNTV_CVAL_EL0", 3, 3, 14, 3, 2},
    {"CNTVOFF_EL2", 3, 4, 14, 0, 3},    {"CNTPOFF_EL2", 3, 4, 14, 0, 6},
    {"CNTHCTL_EL2", 3, 4, 14, 1, 0},    {"CNTHP_TVAL_EL2", 3, 4, 14, 2, 0},
    {"CNTHP_CTL_EL2", 3, 4, 14, 2, 1},  {"CNTHP_CVAL_EL2", 3, 4, 14, 2, 2},
    {"CNTHV_TVAL_EL2", 3, 4, 14, 3, 0}, {"CNTHV_CTL_EL2", 3, 4, 14, 3, 1},
    {"CNTHV_CVAL_EL2", 3, 4, 14, 3, 2}, {"CNTKCTL_EL12", 3, 5, 14, 1, 0},
    {"CNTP_TVAL_EL02", 3, 5, 14, 2, 0}, {"CNTP_CTL_EL02", 3, 5, 14, 2, 1},
    {"CNTP_CVAL_EL02", 3, 5, 14, 2, 2}, {"CNTV_TVAL_EL02", 3, 5, 14, 3, 0},
    {"CNTV_CTL_EL02", 3, 5, 14, 3, 1},  {"CNTV_CVAL_EL02", 3, 5, 14, 3, 2},
}};

SysRegEncoding Enc(unsigned op0, unsigned op1, unsigned crn, unsigned crm, unsigned op2) {
  return SysRegEncoding{static_cast<std::uint8_t>(op0), static_cast<std::uint8_t>(op1),
                        static_cast<std::uint8_t>(crn), static_cast<std::uint8_t>(crm),
                        static_cast<std::uint8_t>(op2)};
}

SysRegEncoding Enc(const Expected& e) { return Enc(e.op0, e.op1, e.crn, e.crm, e.op2); }

const Expected* FindExpected(std::string_view name) {
  for (const Expected& e : kArmArm) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

const Expected* FindExpected(const SysRegEncoding& enc) {
  for (const Expected& e : kArmArm) {
    if (Enc(e) == enc) return &e;
  }
  return nullptr;
}

std::string Show(const SysRegEncoding& e) {
  return "(" + std::to_string(e.op0) + "," + std::to_string(e.op1) + "," + std::to_string(e.crn) +
         "," + std::to_string(e.crm) + "," + std::to_string(e.op2) + ")";
}

// The checks the brief asks for, for any ESR that must be refused.
void ExpectMalformed(std::uint64_t esr) {
  const Result<SysRegAccess> r = DecodeSysRegTrap(esr);
  ASSERT_FALSE(r.has_value()) << "ESR 0x" << std::hex << esr << " decoded";
  EXPECT_EQ(r.error().code, ErrorCode::kMalformed) << std::hex << esr;
  EXPECT_FALSE(r.error().context.empty()) << std::hex << esr;
  EXPECT_NE(r.error().context.find("ESR"), std::string::npos) << r.error().context;
}

// A well-formed MRS X0, CNTVCT_EL0 to corrupt.
constexpr std::uint64_t kGoodEsr = 0x6234F801;

TEST(SysRegTable, ListsEveryRegisterOnceInEnumOrder) {
  const auto all = AllSysRegs();
  ASSERT_EQ(all.size(), kSysRegCount);
  ASSERT_EQ(all.size(), kArmArm.size());
  std::set<std::string_view> names;
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(static_cast<std::size_t>(all[i]), i);
    names.insert(NameOf(all[i]));
  }
  EXPECT_EQ(names.size(), kSysRegCount) << "duplicate register names";
}

TEST(SysRegTable, EncodingsMatchTheArmArm) {
  for (const SysReg reg : AllSysRegs()) {
    const Expected* e = FindExpected(NameOf(reg));
    ASSERT_NE(e, nullptr) << "no Arm ARM line for " << NameOf(reg);
    EXPECT_EQ(EncodingOf(reg), Enc(*e))
        << NameOf(reg) << ": table has " << Show(EncodingOf(reg)) << ", Arm ARM " << Show(Enc(*e));
  }
}

TEST(SysRegTable, EnumOrderMatchesTheArmArmList) {
  // The enum is documented in this order; a swapped entry would give one
  // register another's name.
  const auto all = AllSysRegs();
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(NameOf(all[i]), kArmArm[i].name) << "index " << i;
  }
}

TEST(SysRegTable, Spot) {
  EXPECT_EQ(EncodingOf(SysReg::CNTVCT_EL0), Enc(3, 3, 14, 0, 2));
  EXPECT_EQ(EncodingOf(SysReg::CNTV_CVAL_EL0), Enc(3, 3, 14, 3, 2));
  EXPECT_EQ(EncodingOf(SysReg::CNTVOFF_EL2), Enc(3, 4, 14, 0, 3));
  EXPECT_EQ(EncodingOf(SysReg::CNTHCTL_EL2), Enc(3, 4, 14, 1, 0));
  EXPECT_EQ(EncodingOf(SysReg::CNTKCTL_EL1), Enc(3, 0, 14, 1, 0));
  EXPECT_EQ(EncodingOf(SysReg::CNTKCTL_EL12), Enc(3, 5, 14, 1, 0));
  EXPECT_EQ(EncodingOf(SysReg::CNTV_CTL_EL02), Enc(3, 5, 14, 3, 1));
  EXPECT_EQ(EncodingOf(SysReg::CNTP_CVAL_EL02), Enc(3, 5, 14, 2, 2));
  EXPECT_EQ(NameOf(SysReg::CNTPOFF_EL2), "CNTPOFF_EL2");
}

TEST(SysRegTable, EveryTimerSpaceEncodingMapsExactlyToTheArmArmList) {
  // Sweep all of op0 = 3, CRn = 14: only the listed encodings are timer
  // registers, and each names the right one.
  int found = 0;
  for (unsigned op1 = 0; op1 < 8; ++op1) {
    for (unsigned crm = 0; crm < 16; ++crm) {
      for (unsigned op2 = 0; op2 < 8; ++op2) {
        const SysRegEncoding enc = Enc(3, op1, 14, crm, op2);
        const std::optional<SysReg> reg = SysRegFromEncoding(enc);
        const Expected* e = FindExpected(enc);
        if (e == nullptr) {
          EXPECT_FALSE(reg.has_value()) << Show(enc) << " decoded as " << NameOf(*reg);
          continue;
        }
        ++found;
        ASSERT_TRUE(reg.has_value()) << Show(enc) << " should be " << e->name;
        EXPECT_EQ(NameOf(*reg), e->name) << Show(enc);
      }
    }
  }
  EXPECT_EQ(found, static_cast<int>(kArmArm.size()));
}

TEST(SysRegTable, OtherOp0OrCrnNeverNameATimerRegister) {
  for (const Expected& e : kArmArm) {
    for (unsigned op0 = 0; op0 < 4; ++op0) {
      for (unsigned crn = 0; crn < 16; ++crn) {
        if (op0 == 3 && crn == 14) continue;
        const SysRegEncoding enc = Enc(op0, e.op1, crn, e.crm, e.op2);
        EXPECT_FALSE(SysRegFromEncoding(enc).has_value()) << Show(enc);
      }
    }
  }
}

TEST(SysRegTable, OutOfRangeFieldsAreNotARegister) {
  // Fields wider than the ESR can carry must not alias into the index.
  EXPECT_FALSE(SysRegFromEncoding(Enc(3, 3 + 8, 14, 0, 2)).has_value());
  EXPECT_FALSE(SysRegFromEncoding(Enc(3, 3, 14, 0 + 16, 2)).has_value());
  EXPECT_FALSE(SysRegFromEncoding(Enc(3, 3, 14, 0, 2 + 8)).has_value());
  EXPECT_FALSE(SysRegFromEncoding(Enc(3 + 4, 3, 14, 0, 2)).has_value());
  EXPECT_FALSE(SysRegFromEncoding(Enc(3, 3, 14 + 16, 0, 2)).has_value());
}

TEST(EsrEncode, MrsX1CntvctByHand) {
  // EC 0x18 << 26 | IL << 25 | op0 3 << 20 | op2 2 << 17 | op1 3 << 14 |
  // CRn 14 << 10 | Rt 1 << 5 | CRm 0 << 1 | Direction 1 (read)
  // = 0x60000000 + 0x02000000 + 0x00300000 + 0x00040000 + 0x0000C000 +
  //   0x00003800 + 0x20 + 0x1
  constexpr std::uint64_t kEsr = 0x6234F821;
  EXPECT_EQ(EncodeSysRegTrap(Enc(3, 3, 14, 0, 2), true, 1), kEsr);
  const Result<SysRegAccess> r = DecodeSysRegTrap(kEsr);
  ASSERT_TRUE(r.has_value()) << r.error().Message();
  EXPECT_EQ(r->reg, SysReg::CNTVCT_EL0);
  EXPECT_TRUE(r->is_read);
  EXPECT_EQ(r->rt, 1U);
}

TEST(EsrEncode, MsrCntvCvalX17ByHand) {
  // 0x62000000 | op0 3 << 20 | op2 2 << 17 | op1 3 << 14 | CRn 14 << 10 |
  // Rt 17 << 5 (0x220) | CRm 3 << 1 (0x6) | Direction 0 (write)
  constexpr std::uint64_t kEsr = 0x6234FA26;
  EXPECT_EQ(EncodeSysRegTrap(Enc(3, 3, 14, 3, 2), false, 17), kEsr);
  const Result<SysRegAccess> r = DecodeSysRegTrap(kEsr);
  ASSERT_TRUE(r.has_value()) << r.error().Message();
  EXPECT_EQ(r->reg, SysReg::CNTV_CVAL_EL0);
  EXPECT_FALSE(r->is_read);
  EXPECT_EQ(r->rt, 17U);
}

TEST(EsrEncode, MsrCntvoffXzrByHand) {
  // 0x62000000 | op0 3 << 20 | op2 3 << 17 (0x60000) | op1 4 << 14 (0x10000) |
  // CRn 14 << 10 (0x3800) | Rt 31 << 5 (0x3E0) | CRm 0 | Direction 0
  constexpr std::uint64_t kEsr = 0x62373BE0;
  EXPECT_EQ(EncodeSysRegTrap(Enc(3, 4, 14, 0, 3), false, kXzr), kEsr);
  const Result<SysRegAccess> r = DecodeSysRegTrap(kEsr);
  ASSERT_TRUE(r.has_value()) << r.error().Message();
  EXPECT_EQ(r->reg, SysReg::CNTVOFF_EL2);
  EXPECT_FALSE(r->is_read);
  EXPECT_EQ(r->rt, kXzr);
}

TEST(EsrEncode, MrsX0CntkctlEl1ByHand) {
  // 0x62000000 | op0 3 << 20 | op2 0 | op1 0 | CRn 14 << 10 | Rt 0 |
  // CRm 1 << 1 | Direction 1
  constexpr std::uint64_t kEsr = 0x62303803;
  EXPECT_EQ(EncodeSysRegTrap(Enc(3, 0, 14, 1, 0), true, 0), kEsr);
  const Result<SysRegAccess> r = DecodeSysRegTrap(kEsr);
  ASSERT_TRUE(r.has_value()) << r.error().Message();
  EXPECT_EQ(r->reg, SysReg::CNTKCTL_EL1);
}

TEST(EsrEncode, UpperBitsAreZeroAndEcIlSet) {
  for (const SysReg reg : AllSysRegs()) {
    for (const bool read : {false, true}) {
      const std::uint64_t esr = EncodeSysRegTrap(EncodingOf(reg), read, kXzr);
      EXPECT_EQ(esr >> 32, 0U) << NameOf(reg);
      EXPECT_EQ((esr >> 26) & 0x3f, 0x18U) << NameOf(reg);
      EXPECT_EQ((esr >> 25) & 1, 1U) << NameOf(reg);
      EXPECT_EQ((esr >> 22) & 7, 0U) << NameOf(reg);
      EXPECT_EQ(esr & 1, read ? 1U : 0U) << NameOf(reg);
    }
  }
}

class EsrRoundTrip : public ::testing::TestWithParam<SysReg> {};

TEST_P(EsrRoundTrip, MrsAndMsrDecodeToTheSameAccess) {
  const SysReg reg = GetParam();
  const Expected* e = FindExpected(NameOf(reg));
  ASSERT_NE(e, nullptr);
  for (const std::uint8_t rt : {std::uint8_t{0}, std::uint8_t{17}, kXzr}) {
    for (const bool read : {true, false}) {
      // Encode from the independent table, so a wrong table entry fails here
      // as a wrong `reg` rather than round-tripping through itself.
      const std::uint64_t esr = EncodeSysRegTrap(Enc(*e), read, rt);
      EXPECT_EQ(esr, EncodeSysRegTrap(EncodingOf(reg), read, rt));
      EXPECT_EQ((esr >> 5) & 0x1f, rt);
      const Result<SysRegAccess> r = DecodeSysRegTrap(esr);
      ASSERT_TRUE(r.has_value()) << r.error().Message();
      ASSERT_TRUE(r->reg.has_value()) << e->name;
      EXPECT_EQ(*r->reg, reg) << "decoded as " << NameOf(*r->reg);
      EXPECT_EQ(r->is_read, read);
      EXPECT_EQ(r->rt, rt);
      EXPECT_EQ(r->encoding, Enc(*e));
      EXPECT_EQ(EncodeSysRegTrap(r->encoding, r->is_read, r->rt), esr);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTimerRegisters, EsrRoundTrip, ::testing::ValuesIn(AllSysRegs()),
                         [](const ::testing::TestParamInfo<SysReg>& param_info) {
                           return std::string(NameOf(param_info.param));
                         });

TEST(EsrDecode, EveryFieldCombinationRoundTrips) {
  // All 2^17 encodings and directions, with two Rt values.
  for (unsigned op0 = 0; op0 < 4; ++op0) {
    for (unsigned op1 = 0; op1 < 8; ++op1) {
      for (unsigned crn = 0; crn < 16; ++crn) {
        for (unsigned crm = 0; crm < 16; ++crm) {
          for (unsigned op2 = 0; op2 < 8; ++op2) {
            for (const bool read : {false, true}) {
              const std::uint8_t rt = static_cast<std::uint8_t>((op1 * 7 + crm + op2) & 31U);
              const SysRegEncoding enc = Enc(op0, op1, crn, crm, op2);
              const Result<SysRegAccess> r = DecodeSysRegTrap(EncodeSysRegTrap(enc, read, rt));
              ASSERT_TRUE(r.has_value()) << Show(enc);
              ASSERT_EQ(r->encoding, enc) << Show(enc) << " decoded as " << Show(r->encoding);
              ASSERT_EQ(r->is_read, read);
              ASSERT_EQ(r->rt, rt);
              ASSERT_EQ(r->reg.has_value(), FindExpected(enc) != nullptr) << Show(enc);
            }
          }
        }
      }
    }
  }
}

TEST(EsrDecode, EveryRtRoundTrips) {
  for (unsigned rt = 0; rt < 32; ++rt) {
    const auto rt8 = static_cast<std::uint8_t>(rt);
    const Result<SysRegAccess> r =
        DecodeSysRegTrap(EncodeSysRegTrap(EncodingOf(SysReg::CNTP_CTL_EL0), false, rt8));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->rt, rt8);
    EXPECT_EQ(r->reg, SysReg::CNTP_CTL_EL0);
  }
}

TEST(EsrDecode, GoodEsrConstantIsWellFormed) {
  const Result<SysRegAccess> r = DecodeSysRegTrap(kGoodEsr);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reg, SysReg::CNTVCT_EL0);
  EXPECT_TRUE(r->is_read);
  EXPECT_EQ(r->rt, 0U);
}

TEST(EsrDecode, WrongExceptionClassIsMalformed) {
  const std::uint64_t iss_and_il = kGoodEsr & ((1ULL << 26) - 1);
  // 0x16 HVC, 0x24 data abort from a lower EL, 0 unknown, 0x17 SMC,
  // 0x19 SVE, 0x3f, and 0x1c / 0x08 / 0x38 which differ from 0x18 in one bit.
  for (const std::uint64_t ec :
       {0x16ULL, 0x24ULL, 0x0ULL, 0x17ULL, 0x19ULL, 0x3fULL, 0x1cULL, 0x08ULL, 0x38ULL, 0x10ULL}) {
    SCOPED_TRACE(ec);
    ExpectMalformed((ec << 26) | iss_and_il);
  }
}

TEST(EsrDecode, IlZeroIsMalformed) { ExpectMalformed(kGoodEsr & ~(1ULL << 25)); }

TEST(EsrDecode, EachIssRes0BitIsMalformed) {
  for (const unsigned bit : {22U, 23U, 24U}) {
    SCOPED_TRACE(bit);
    ExpectMalformed(kGoodEsr | (1ULL << bit));
  }
  ExpectMalformed(kGoodEsr | (7ULL << 22));
}

TEST(EsrDecode, EachUpperBitIsMalformed) {
  for (unsigned bit = 32; bit < 64; ++bit) {
    SCOPED_TRACE(bit);
    ExpectMalformed(kGoodEsr | (1ULL << bit));
  }
}

TEST(EsrDecode, ContextNamesTheReason) {
  const Result<SysRegAccess> hvc = DecodeSysRegTrap((0x16ULL << 26) | (1ULL << 25));
  ASSERT_FALSE(hvc.has_value());
  EXPECT_NE(hvc.error().context.find("0x16"), std::string::npos) << hvc.error().context;
  const Result<SysRegAccess> il = DecodeSysRegTrap(kGoodEsr & ~(1ULL << 25));
  ASSERT_FALSE(il.has_value());
  EXPECT_NE(il.error().context.find("IL"), std::string::npos) << il.error().context;
  EXPECT_EQ(il.error().sys_errno, 0);
}

TEST(EsrDecode, MidrEl1IsWellFormedButNotATimer) {
  const SysRegEncoding midr = Enc(3, 0, 0, 0, 0);
  const Result<SysRegAccess> r = DecodeSysRegTrap(EncodeSysRegTrap(midr, true, 3));
  ASSERT_TRUE(r.has_value()) << r.error().Message();
  EXPECT_FALSE(r->reg.has_value());
  EXPECT_EQ(r->encoding, midr);
  EXPECT_TRUE(r->is_read);
  EXPECT_EQ(r->rt, 3U);
}

TEST(EsrDecode, UnusedTimerSpaceEncodingsAreNotATimer) {
  // CRn = 14 next to real registers: CNTPCT/CNTVCT's neighbours op2 = 3, 4, 7;
  // CNTPS_* (op1 = 7, EL3) and CNTHPS_*/CNTHVS_* (op1 = 4, CRm = 4/5, Secure
  // EL2), which vtime does not model; op1 = 5 with CRm = 0.
  for (const SysRegEncoding enc :
       {Enc(3, 3, 14, 0, 3), Enc(3, 3, 14, 0, 4), Enc(3, 3, 14, 0, 7), Enc(3, 3, 14, 2, 3),
        Enc(3, 7, 14, 2, 0), Enc(3, 7, 14, 2, 1), Enc(3, 4, 14, 4, 1), Enc(3, 4, 14, 5, 2),
        Enc(3, 5, 14, 0, 2), Enc(3, 0, 14, 0, 2), Enc(3, 0, 14, 1, 1), Enc(3, 4, 14, 0, 0)}) {
    const Result<SysRegAccess> r = DecodeSysRegTrap(EncodeSysRegTrap(enc, true, 0));
    ASSERT_TRUE(r.has_value()) << Show(enc);
    EXPECT_FALSE(r->reg.has_value()) << Show(enc) << " decoded as " << NameOf(*r->reg);
    EXPECT_EQ(r->encoding, enc);
  }
}

TEST(EsrDecode, Op0OtherThanThreeIsNotATimer) {
  // The timer fields with op0 = 0, 1, 2 (instructions and debug registers).
  for (unsigned op0 = 0; op0 < 3; ++op0) {
    const SysRegEncoding enc = Enc(op0, 3, 14, 0, 2);
    const Result<SysRegAccess> r = DecodeSysRegTrap(EncodeSysRegTrap(enc, true, 0));
    ASSERT_TRUE(r.has_value()) << Show(enc);
    EXPECT_FALSE(r->reg.has_value()) << Show(enc);
    EXPECT_EQ(r->encoding.op0, op0);
  }
}

}  // namespace
}  // namespace arch
}  // namespace vtime
