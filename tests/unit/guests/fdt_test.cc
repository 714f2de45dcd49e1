// The guests' device-tree reader (guests/rt/fdt.c, built for this host)
// against the trees vtvmm writes and against trees QEMU's choices make:
// the PSCI conduit and the timer PPIs a guest takes from them.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include <libfdt.h>

// guests/rt/fdt.h (its rt.h is not C++).
int fdt_psci_smc(std::uintptr_t dtb, int* smc, const char** why);
int fdt_timer_intids(std::uintptr_t dtb, std::uint32_t* virt, std::uint32_t* phys,
                     const char** why);
}

#include "vmm/device_tree.h"

namespace vtime {
namespace {

std::uintptr_t Addr(const std::vector<std::uint8_t>& blob) {
  return reinterpret_cast<std::uintptr_t>(blob.data());
}

// A tree with one node, `node`, below the root, and its
// properties, each a name and raw bytes.
std::vector<std::uint8_t> Tree(const char* node,
                               const std::vector<std::pair<const char*, std::string>>& props) {
  std::vector<std::uint8_t> blob(4096);
  EXPECT_EQ(fdt_create_empty_tree(blob.data(), static_cast<int>(blob.size())), 0);
  const int off = fdt_add_subnode(blob.data(), 0, node);
  EXPECT_GE(off, 0);
  for (const auto& [name, value] : props) {
    EXPECT_EQ(fdt_setprop(blob.data(), off, name, value.data(), static_cast<int>(value.size())), 0);
  }
  return blob;
}

std::string Str(const char* s) { return std::string(s, std::strlen(s) + 1); }

struct Conduit {
  int rc = 0;
  int smc = -1;
  std::string why;
};

Conduit PsciOf(const std::vector<std::uint8_t>& blob) {
  Conduit c;
  const char* why = "";
  c.rc = fdt_psci_smc(Addr(blob), &c.smc, &why);
  c.why = why;
  return c;
}

TEST(GuestFdt, VtvmmsTreeNamesHvc) {
  auto dtb = vmm::BuildDeviceTree(vmm::MachineDescription{});
  ASSERT_TRUE(dtb.has_value());
  const Conduit c = PsciOf(*dtb);
  EXPECT_EQ(c.rc, 0) << c.why;
  EXPECT_EQ(c.smc, 0);
}

TEST(GuestFdt, AnSmcMethodIsTaken) {
  const auto blob = Tree("psci", {{"compatible", Str("arm,psci-0.2")}, {"method", Str("smc")}});
  const Conduit c = PsciOf(blob);
  EXPECT_EQ(c.rc, 0) << c.why;
  EXPECT_EQ(c.smc, 1);
}

TEST(GuestFdt, APsciNodeIsFoundByAnyCompatibleEntry) {
  const auto blob =
      Tree("firmware-calls",
           {{"compatible", std::string("vendor,fw\0arm,psci-1.0\0", 23)}, {"method", Str("smc")}});
  const Conduit c = PsciOf(blob);
  EXPECT_EQ(c.rc, 0) << c.why;
  EXPECT_EQ(c.smc, 1);
}

TEST(GuestFdt, AMethodOutsideAPsciNodeIsNoConduit) {
  const auto blob = Tree("mailbox", {{"compatible", Str("vendor,mbox")}, {"method", Str("smc")}});
  const Conduit c = PsciOf(blob);
  EXPECT_EQ(c.rc, -1);
  EXPECT_EQ(c.smc, -1);  // untouched
  EXPECT_EQ(c.why, "has no PSCI node with a method");
}

TEST(GuestFdt, AnUnknownMethodIsRefused) {
  const auto blob = Tree("psci", {{"method", Str("svc")}});
  const Conduit c = PsciOf(blob);
  EXPECT_EQ(c.rc, -1);
  EXPECT_EQ(c.smc, -1);
  EXPECT_EQ(c.why, "PSCI method is neither hvc nor smc");
}

TEST(GuestFdt, AnUnterminatedMethodIsRefused) {
  const auto blob = Tree("psci", {{"method", std::string("smcX")}});
  EXPECT_EQ(PsciOf(blob).rc, -1);
}

TEST(GuestFdt, NotATreeIsRefused) {
  const std::vector<std::uint8_t> zeros(256);
  const Conduit c = PsciOf(zeros);
  EXPECT_EQ(c.rc, -1);
  EXPECT_EQ(c.why, "bad magic");
}

TEST(GuestFdt, ATreeCutShortIsRefusedWithoutReadingPastIt) {
  auto dtb = vmm::BuildDeviceTree(vmm::MachineDescription{});
  ASSERT_TRUE(dtb.has_value());
  // Its first 64 bytes, the header saying so: the structure block the
  // header points at lies past them (ASan builds would see a read there).
  std::vector<std::uint8_t> cut(dtb->begin(), dtb->begin() + 64);
  fdt_set_totalsize(cut.data(), 64);
  const Conduit c = PsciOf(cut);
  EXPECT_EQ(c.rc, -1);
  EXPECT_EQ(c.why, "structure block out of bounds");
}

TEST(GuestFdt, TheTimerPpisAreVtvmmsOwn) {
  vmm::MachineDescription m;
  m.vtimer_ppi = 20;
  m.ptimer_ppi = 19;
  auto dtb = vmm::BuildDeviceTree(m);
  ASSERT_TRUE(dtb.has_value());
  std::uint32_t virt = 0, phys = 0;
  const char* why = "";
  EXPECT_EQ(fdt_timer_intids(Addr(*dtb), &virt, &phys, &why), 0) << why;
  EXPECT_EQ(virt, 20U);
  EXPECT_EQ(phys, 19U);
}

}  // namespace
}  // namespace vtime
