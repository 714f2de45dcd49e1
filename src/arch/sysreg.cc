#include "vtime/arch/sysreg.h"

#include <array>
#include <cassert>

namespace vtime::arch {
namespace {

struct Entry {
  SysReg reg;
  std::string_view name;
  SysRegEncoding enc;
};

// Encodings from the Arm ARM (DDI 0487) register descriptions. The table is
// in SysReg order so that lookups by register are an index.
constexpr std::array<Entry, kSysRegCount> kTable = {{
    {SysReg::CNTFRQ_EL0, "CNTFRQ_EL0", {3, 3, 14, 0, 0}},
    {SysReg::CNTPCT_EL0, "CNTPCT_EL0", {3, 3, 14, 0, 1}},
    {SysReg::CNTVCT_EL0, "CNTVCT_EL0", {3, 3, 14, 0, 2}},
    {SysReg::CNTPCTSS_EL0, "CNTPCTSS_EL0", {3, 3, 14, 0, 5}},
    {SysReg::CNTVCTSS_EL0, "CNTVCTSS_EL0", {3, 3, 14, 0, 6}},
    {SysReg::CNTKCTL_EL1, "CNTKCTL_EL1", {3, 0, 14, 1, 0}},
    {SysReg::CNTP_TVAL_EL0, "CNTP_TVAL_EL0", {3, 3, 14, 2, 0}},
    {SysReg::CNTP_CTL_EL0, "CNTP_CTL_EL0", {3, 3, 14, 2, 1}},
    {SysReg::CNTP_CVAL_EL0, "CNTP_CVAL_EL0", {3, 3, 14, 2, 2}},
    {SysReg::CNTV_TVAL_EL0, "CNTV_TVAL_EL0", {3, 3, 14, 3, 0}},
    {SysReg::CNTV_CTL_EL0, "CNTV_CTL_EL0", {3, 3, 14, 3, 1}},
    {SysReg::CNTV_CVAL_EL0, "CNTV_CVAL_EL0", {3, 3, 14, 3, 2}},
    {SysReg::CNTVOFF_EL2, "CNTVOFF_EL2", {3, 4, 14, 0, 3}},
    {SysReg::CNTPOFF_EL2, "CNTPOFF_EL2", {3, 4, 14, 0, 6}},
    {SysReg::CNTHCTL_EL2, "CNTHCTL_EL2", {3, 4, 14, 1, 0}},
    {SysReg::CNTHP_TVAL_EL2, "CNTHP_TVAL_EL2", {3, 4, 14, 2, 0}},
    {SysReg::CNTHP_CTL_EL2, "CNTHP_CTL_EL2", {3, 4, 14, 2, 1}},
    {SysReg::CNTHP_CVAL_EL2, "CNTHP_CVAL_EL2", {3, 4, 14, 2, 2}},
    {SysReg::CNTHV_TVAL_EL2, "CNTHV_TVAL_EL2", {3, 4, 14, 3, 0}},
    {SysReg::CNTHV_CTL_EL2, "CNTHV_CTL_EL2", {3, 4, 14, 3, 1}},
    {SysReg::CNTHV_CVAL_EL2, "CNTHV_CVAL_EL2", {3, 4, 14, 3, 2}},
    {SysReg::CNTKCTL_EL12, "CNTKCTL_EL12", {3, 5, 14, 1, 0}},
    {SysReg::CNTP_TVAL_EL02, "CNTP_TVAL_EL02", {3, 5, 14, 2, 0}},
    {SysReg::CNTP_CTL_EL02, "CNTP_CTL_EL02", {3, 5, 14, 2, 1}},
    {SysReg::CNTP_CVAL_EL02, "CNTP_CVAL_EL02", {3, 5, 14, 2, 2}},
    {SysReg::CNTV_TVAL_EL02, "CNTV_TVAL_EL02", {3, 5, 14, 3, 0}},
    {SysReg::CNTV_CTL_EL02, "CNTV_CTL_EL02", {3, 5, 14, 3, 1}},
    {SysReg::CNTV_CVAL_EL02, "CNTV_CVAL_EL02", {3, 5, 14, 3, 2}},
}};

constexpr bool TableIsInOrder() {
  for (std::size_t i = 0; i < kTable.size(); ++i) {
    if (static_cast<std::size_t>(kTable[i].reg) != i) return false;
  }
  return true;
}
static_assert(TableIsInOrder(), "kTable must list registers in SysReg order");

constexpr std::array<SysReg, kSysRegCount> MakeAll() {
  std::array<SysReg, kSysRegCount> all{};
  for (std::size_t i = 0; i < kTable.size(); ++i) all[i] = kTable[i].reg;
  return all;
}
constexpr std::array<SysReg, kSysRegCount> kAll = MakeAll();

constexpr std::size_t IndexOf(std::uint8_t op1, std::uint8_t crm, std::uint8_t op2) {
  return (static_cast<std::size_t>(op1 & 7U) << 7) | (static_cast<std::size_t>(crm & 15U) << 3) |
         (op2 & 7U);
}
constexpr std::array<std::uint8_t, 1024> MakeIndex() {
  std::array<std::uint8_t, 1024> index{};
  for (auto& slot : index) slot = detail::kNoSysReg;
  for (const Entry& e : kTable) {
    index[IndexOf(e.enc.op1, e.enc.crm, e.enc.op2)] = static_cast<std::uint8_t>(e.reg);
  }
  return index;
}

const Entry& EntryOf(SysReg reg) {
  const auto index = static_cast<std::size_t>(reg);
  assert(index < kTable.size());
  return kTable[index];
}

}  // namespace

namespace detail {
const std::array<std::uint8_t, 1024> kSysRegIndex = MakeIndex();
}  // namespace detail

SysRegEncoding EncodingOf(SysReg reg) { return EntryOf(reg).enc; }

std::string_view NameOf(SysReg reg) { return EntryOf(reg).name; }

std::span<const SysReg> AllSysRegs() { return kAll; }

}  // namespace vtime::arch
