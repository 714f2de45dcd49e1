// vGICv3 save/restore against real KVM (the arm64 lab, or an arm64 host):
// state programmed into one VM's vGIC through the device attributes comes
// out of a second VM identically after a restore; wrong states are refused
// before the device is touched; a saved state survives the snapshot
// encoding. The encoding's own tests need no KVM and are unit tests
// (tests/unit/backend/vgic_codec_test.cc).
#include "vtime/backend/vgic_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vtime/backend/kvm.h"
#include "common/vgic_state_diff.h"

namespace vtime::kvm {
namespace {

using testing::Diff;
using testing::Find;
using testing::Sample;

constexpr std::uint64_t kDistBase = 0x08000000;
constexpr std::uint64_t kRedistBase = 0x080A0000;
constexpr std::uint32_t kNrIrqs = 128;
constexpr std::uint32_t kSpiLine = 1U << 24;  // KVM_IRQ_LINE type SPI

struct GicVm {
  System system;
  Vm vm;
  std::vector<Vcpu> vcpus;
  Device gic;
  std::vector<std::uint64_t> mpidrs;
};

// A VM with `n` vCPUs (preferred target, PSCI 0.2) and an initialised vGICv3.
Result<GicVm> MakeGicVm(unsigned n, std::uint32_t nr_irqs = kNrIrqs) {
  auto system = System::Open();
  if (!system) return tl::unexpected(system.error());
  auto vm = system->CreateVm();
  if (!vm) return tl::unexpected(vm.error());
  auto init = vm->PreferredTarget();
  if (!init) return tl::unexpected(init.error());
  init->Set(feature::kPsci02);
  std::vector<Vcpu> vcpus;
  std::vector<std::uint64_t> mpidrs;
  for (unsigned i = 0; i < n; ++i) {
    auto vcpu = vm->CreateVcpu(i);
    if (!vcpu) return tl::unexpected(vcpu.error());
    if (auto r = vcpu->Init(*init); !r) return tl::unexpected(r.error());
    auto mpidr = ReadMpidr(*vcpu);
    if (!mpidr) return tl::unexpected(mpidr.error());
    mpidrs.push_back(*mpidr);
    vcpus.push_back(std::move(*vcpu));
  }
  auto gic = vm->CreateVgicV3(kDistBase, kRedistBase, nr_irqs);
  if (!gic) return tl::unexpected(gic.error());
  if (auto r = gic->SetAttr(vgic::kGrpCtrl, vgic::kCtrlInit, nullptr); !r) {
    return tl::unexpected(r.error());
  }
  return GicVm{std::move(*system), std::move(*vm), std::move(vcpus), std::move(*gic),
               std::move(mpidrs)};
}

std::uint32_t Get32(const Device& gic, std::uint32_t group, std::uint64_t attr) {
  std::uint32_t v = 0;
  auto r = gic.GetAttr(group, attr, &v);
  EXPECT_TRUE(r.has_value()) << r.error().Message();
  return v;
}

void Set32(Device& gic, std::uint32_t group, std::uint64_t attr, std::uint32_t v) {
  auto r = gic.SetAttr(group, attr, &v);
  EXPECT_TRUE(r.has_value()) << r.error().Message();
}

void Set64(Device& gic, std::uint32_t group, std::uint64_t attr, std::uint64_t v) {
  auto r = gic.SetAttr(group, attr, &v);
  EXPECT_TRUE(r.has_value()) << r.error().Message();
}


std::uint64_t Redist(const GicVm& g, unsigned vcpu, std::uint32_t offset) {
  return vgic::VcpuAttr(g.mpidrs[vcpu], offset);
}

std::uint64_t LineLevels(const GicVm& g, std::uint32_t first_intid) {
  return vgic::VcpuAttr(g.mpidrs[0], first_intid);  // info 0 = VGIC_LEVEL_INFO_LINE_LEVEL
}


// The state the round-trip test programs into VM A.
void Program(GicVm& a) {
  Device& gic = a.gic;
  // GICD_CTLR: enable group 1.
  Set32(gic, vgic::kGrpDistRegs, 0x0000, Get32(gic, vgic::kGrpDistRegs, 0x0000) | 2U);
  // SPI 40 in group 0, the rest of 32..63 in group 1.
  Set32(gic, vgic::kGrpDistRegs, 0x0084, ~(1U << 8));
  // SPI 40 enabled.
  Set32(gic, vgic::kGrpDistRegs, 0x0104, 1U << 8);
  // SPI 41 pending (latched), SPI 43 active.
  Set32(gic, vgic::kGrpDistRegs, 0x0204, 1U << 9);
  Set32(gic, vgic::kGrpDistRegs, 0x0304, 1U << 11);
  // Priorities of SPIs 40..43.
  Set32(gic, vgic::kGrpDistRegs, 0x0428, 0x40302010);
  // SPIs 32..47: SPI 41 edge-triggered, SPI 42 level-sensitive.
  Set32(gic, vgic::kGrpDistRegs, 0x0C08, 1U << 19);
  // SPI 40 routed to vCPU 1.
  Set32(gic, vgic::kGrpDistRegs, 0x6000 + 8 * 40,
        static_cast<std::uint32_t>(a.mpidrs[1] & 0xffffff));
  // SPI 42's input line held high by a "device".
  auto line = a.vm.IrqLine(kSpiLine | 42, true);
  EXPECT_TRUE(line.has_value()) << line.error().Message();
  // vCPU 0: PPI 27 (the virtual timer) enabled at priority 0x90.
  Set32(gic, vgic::kGrpRedistRegs, Redist(a, 0, 0x10100), 1U << 27);
  Set32(gic, vgic::kGrpRedistRegs, Redist(a, 0, 0x10418), 0x90000000);
  // vCPU 1: SGI 3 pending.
  Set32(gic, vgic::kGrpRedistRegs, Redist(a, 1, 0x10200), 1U << 3);
  // CPU interfaces: vCPU 1's priority mask, vCPU 0's group-1 enable.
  Set64(gic, vgic::kGrpCpuSysregs, vgic::VcpuAttr(a.mpidrs[1], vgic::kIccPmr), 0xf0);
  Set64(gic, vgic::kGrpCpuSysregs, vgic::VcpuAttr(a.mpidrs[0], vgic::kIccIgrpen1), 1);
}

// The programmed values, seen in a saved state.
void ExpectProgrammed(const GicVm& g, const VgicState& s) {
  EXPECT_EQ(s.nr_irqs, kNrIrqs);
  EXPECT_EQ(Find(s.dist, 0x0000).value_or(0) & 2U, 2U) << "GICD_CTLR.EnableGrp1";
  EXPECT_EQ(Find(s.dist, 0x0084), std::optional<std::uint32_t>(~(1U << 8))) << "GICD_IGROUPR1";
  EXPECT_EQ(Find(s.dist, 0x0104), std::optional<std::uint32_t>(1U << 8)) << "GICD_ISENABLER1";
  EXPECT_EQ(Find(s.dist, 0x0204), std::optional<std::uint32_t>(1U << 9)) << "GICD_ISPENDR1";
  EXPECT_EQ(Find(s.dist, 0x0304), std::optional<std::uint32_t>(1U << 11)) << "GICD_ISACTIVER1";
  EXPECT_EQ(Find(s.dist, 0x0428), std::optional<std::uint32_t>(0x40302010)) << "GICD_IPRIORITYR10";
  EXPECT_EQ(Find(s.dist, 0x0C08).value_or(0) & (3U << 18 | 3U << 20), 1U << 19) << "GICD_ICFGR2";
  EXPECT_EQ(Find(s.dist, 0x6000 + 8 * 40),
            std::optional<std::uint32_t>(static_cast<std::uint32_t>(g.mpidrs[1] & 0xffffff)))
      << "GICD_IROUTER40";
  EXPECT_EQ(Find(s.redist, Redist(g, 0, 0x10100)).value_or(0) & (1U << 27), 1U << 27)
      << "GICR_ISENABLER0 of vCPU 0";
  EXPECT_EQ(Find(s.redist, Redist(g, 1, 0x10100)).value_or(0) & (1U << 27), 0U)
      << "GICR_ISENABLER0 of vCPU 1";
  EXPECT_EQ(Find(s.redist, Redist(g, 0, 0x10418)).value_or(0) >> 24, 0x90U)
      << "GICR_IPRIORITYR6 of vCPU 0";
  EXPECT_EQ(Find(s.redist, Redist(g, 1, 0x10200)).value_or(0) & (1U << 3), 1U << 3)
      << "GICR_ISPENDR0 of vCPU 1";
  EXPECT_EQ(Find(s.cpu_sysregs, vgic::VcpuAttr(g.mpidrs[1], vgic::kIccPmr)),
            std::optional<std::uint64_t>(0xf0))
      << "ICC_PMR_EL1 of vCPU 1";
  EXPECT_EQ(Find(s.cpu_sysregs, vgic::VcpuAttr(g.mpidrs[0], vgic::kIccIgrpen1)),
            std::optional<std::uint64_t>(1))
      << "ICC_IGRPEN1_EL1 of vCPU 0";
  ASSERT_FALSE(s.line_levels.empty()) << "kernel without KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO";
  EXPECT_EQ(s.line_levels.size(), kNrIrqs / 32 - 1);
  EXPECT_EQ(Find(s.line_levels, LineLevels(g, 32)), std::optional<std::uint32_t>(1U << 10))
      << "line level of SPI 42";
}

TEST(VgicState, MpidrsAreTheVcpuIndices) {
  auto a = MakeGicVm(2);
  ASSERT_TRUE(a.has_value()) << a.error().Message();
  EXPECT_EQ(vgic::AffinityField(a->mpidrs[0]), 0U);
  EXPECT_EQ(vgic::AffinityField(a->mpidrs[1]), 1U);
  EXPECT_EQ(vgic::AffinityField(0x0000'00ff'8000'0000 | 0x00123456), 0xff123456U);
}

TEST(VgicState, SaveNeedsAnInitialisedVgic) {
  auto system = System::Open();
  ASSERT_TRUE(system.has_value()) << system.error().Message();
  auto vm = system->CreateVm();
  ASSERT_TRUE(vm.has_value());
  auto vcpu = vm->CreateVcpu(0);
  ASSERT_TRUE(vcpu.has_value());
  auto gic = vm->CreateVgicV3(kDistBase, kRedistBase, kNrIrqs);
  ASSERT_TRUE(gic.has_value()) << gic.error().Message();
  const std::uint64_t mpidr = 0;
  auto saved = SaveVgicV3(*gic, {&mpidr, 1}, kNrIrqs);
  ASSERT_FALSE(saved.has_value());
  std::printf("uninitialised vGIC: %s\n", saved.error().Message().c_str());
  EXPECT_EQ(saved.error().sys_errno, EBUSY);
  EXPECT_NE(saved.error().Message().find("initialised"), std::string::npos);
}

TEST(VgicState, RestoreIntoASecondVmReproducesTheState) {
  auto a = MakeGicVm(2);
  ASSERT_TRUE(a.has_value()) << a.error().Message();
  Program(*a);
  auto saved = SaveVgicV3(a->gic, a->mpidrs, kNrIrqs);
  ASSERT_TRUE(saved.has_value()) << saved.error().Message();
  ExpectProgrammed(*a, *saved);
  std::printf("saved: %zu distributor, %zu redistributor, %zu CPU interface, %zu line-level\n",
              saved->dist.size(), saved->redist.size(), saved->cpu_sysregs.size(),
              saved->line_levels.size());

  auto b = MakeGicVm(2);
  ASSERT_TRUE(b.has_value()) << b.error().Message();
  auto fresh = SaveVgicV3(b->gic, b->mpidrs, kNrIrqs);
  ASSERT_TRUE(fresh.has_value()) << fresh.error().Message();
  EXPECT_FALSE(*fresh == *saved);

  auto restored = RestoreVgicV3(b->gic, b->mpidrs, *saved);
  ASSERT_TRUE(restored.has_value()) << restored.error().Message();
  auto again = SaveVgicV3(b->gic, b->mpidrs, kNrIrqs);
  ASSERT_TRUE(again.has_value()) << again.error().Message();
  ExpectProgrammed(*b, *again);
  EXPECT_TRUE(*again == *saved) << Diff(*saved, *again);
  // Through the snapshot encoding too.
  auto decoded = DecodeVgicState(EncodeVgicState(*saved));
  ASSERT_TRUE(decoded.has_value()) << decoded.error().Message();
  EXPECT_TRUE(*decoded == *saved) << Diff(*saved, *decoded);
}

TEST(VgicState, RestoreIsExactOnAUsedVgic) {
  auto a = MakeGicVm(2);
  ASSERT_TRUE(a.has_value()) << a.error().Message();
  Program(*a);
  auto saved = SaveVgicV3(a->gic, a->mpidrs, kNrIrqs);
  ASSERT_TRUE(saved.has_value()) << saved.error().Message();
  // Enable and activate more, then restore the saved state over it: the
  // clear-then-set writes undo them.
  Set32(a->gic, vgic::kGrpDistRegs, 0x0104, 1U << 18);                    // SPI 50
  Set32(a->gic, vgic::kGrpDistRegs, 0x0304, 1U << 12);                    // SPI 44
  Set32(a->gic, vgic::kGrpRedistRegs, Redist(*a, 1, 0x10100), 1U << 30);  // PPI 30, vCPU 1
  Set64(a->gic, vgic::kGrpCpuSysregs, vgic::VcpuAttr(a->mpidrs[1], vgic::kIccPmr), 0x80);
  auto r = RestoreVgicV3(a->gic, a->mpidrs, *saved);
  ASSERT_TRUE(r.has_value()) << r.error().Message();
  auto again = SaveVgicV3(a->gic, a->mpidrs, kNrIrqs);
  ASSERT_TRUE(again.has_value()) << again.error().Message();
  EXPECT_TRUE(*again == *saved) << Diff(*saved, *again);

  // Pending too: from userspace ISPENDR sets the latch to the value written
  // (arm-vgic-v3.rst), so a restore clears a latch the state does not have.
  Set32(a->gic, vgic::kGrpDistRegs, 0x0204, (1U << 9) | (1U << 13));     // SPI 45 pending too
  Set32(a->gic, vgic::kGrpRedistRegs, Redist(*a, 0, 0x10200), 1U << 5);  // SGI 5, vCPU 0
  ASSERT_TRUE(RestoreVgicV3(a->gic, a->mpidrs, *saved).has_value());
  auto third = SaveVgicV3(a->gic, a->mpidrs, kNrIrqs);
  ASSERT_TRUE(third.has_value()) << third.error().Message();
  EXPECT_TRUE(*third == *saved) << Diff(*saved, *third);
}

TEST(VgicState, RestoreRefusesAStateForOtherVcpusBeforeTouchingTheDevice) {
  auto a = MakeGicVm(2);
  ASSERT_TRUE(a.has_value()) << a.error().Message();
  Program(*a);
  auto saved = SaveVgicV3(a->gic, a->mpidrs, kNrIrqs);
  ASSERT_TRUE(saved.has_value()) << saved.error().Message();

  // A device that fails every ioctl with EBADF: the refusal must come first.
  Device closed{Fd(-1)};
  const std::uint64_t one[] = {a->mpidrs[0]};
  auto fewer = RestoreVgicV3(closed, one, *saved);
  ASSERT_FALSE(fewer.has_value());
  std::printf("1 vCPU: %s\n", fewer.error().Message().c_str());
  EXPECT_EQ(fewer.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(fewer.error().sys_errno, 0);
  EXPECT_NE(fewer.error().Message().find("2 vCPUs, the VM has 1"), std::string::npos);

  const std::uint64_t three[] = {a->mpidrs[0], a->mpidrs[1], 2};
  auto more = RestoreVgicV3(closed, three, *saved);
  ASSERT_FALSE(more.has_value());
  EXPECT_EQ(more.error().sys_errno, 0);
  EXPECT_NE(more.error().Message().find("2 vCPUs, the VM has 3"), std::string::npos);

  const std::uint64_t other[] = {a->mpidrs[0], 5};
  auto moved = RestoreVgicV3(closed, other, *saved);
  ASSERT_FALSE(moved.has_value());
  EXPECT_EQ(moved.error().sys_errno, 0);
  std::printf("other MPIDRs: %s\n", moved.error().Message().c_str());

  const std::uint64_t twice[] = {a->mpidrs[0], a->mpidrs[0]};
  auto dup = RestoreVgicV3(closed, twice, *saved);
  ASSERT_FALSE(dup.has_value());
  EXPECT_EQ(dup.error().sys_errno, 0);

  // And on a real one-vCPU VM: refused, its vGIC unchanged.
  auto c = MakeGicVm(1);
  ASSERT_TRUE(c.has_value()) << c.error().Message();
  auto before = SaveVgicV3(c->gic, c->mpidrs, kNrIrqs);
  ASSERT_TRUE(before.has_value()) << before.error().Message();
  auto refused = RestoreVgicV3(c->gic, c->mpidrs, *saved);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  auto after = SaveVgicV3(c->gic, c->mpidrs, kNrIrqs);
  ASSERT_TRUE(after.has_value()) << after.error().Message();
  EXPECT_TRUE(*after == *before) << Diff(*before, *after);
}

TEST(VgicState, RestoreRefusesAnotherInterruptCount) {
  auto a = MakeGicVm(2);
  ASSERT_TRUE(a.has_value()) << a.error().Message();
  auto saved = SaveVgicV3(a->gic, a->mpidrs, kNrIrqs);
  ASSERT_TRUE(saved.has_value()) << saved.error().Message();
  auto small = MakeGicVm(2, 64);
  ASSERT_TRUE(small.has_value()) << small.error().Message();
  auto r = RestoreVgicV3(small->gic, small->mpidrs, *saved);
  ASSERT_FALSE(r.has_value());
  std::printf("64-interrupt vGIC: %s\n", r.error().Message().c_str());
  EXPECT_NE(r.error().Message().find("128 interrupts, the device has 64"), std::string::npos);
  auto wrong_count = SaveVgicV3(small->gic, small->mpidrs, kNrIrqs);
  ASSERT_FALSE(wrong_count.has_value());
}

TEST(VgicState, RestoreRefusesMalformedStatesBeforeTouchingTheDevice) {
  Device closed{Fd(-1)};
  const std::uint64_t mpidrs[] = {0, 1};
  VgicState s = Sample();
  s.nr_irqs = 96;
  std::swap(s.dist[0], s.dist[1]);
  auto r = RestoreVgicV3(closed, mpidrs, s);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().sys_errno, 0);
  std::printf("unsorted: %s\n", r.error().Message().c_str());
}

}  // namespace
}  // namespace vtime::kvm
