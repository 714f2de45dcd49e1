// vtvmm's GICv3: the distributor, the redistributors, the CPU interface and
// the virtualization interface, driven as a guest and a guest hypervisor do.
#include "vtime/vmm/user_gicv3.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace vtime::vmm {
namespace {

using namespace gicv3;  // NOLINT(google-build-using-namespace): the register encodings
// Short names for the test.
constexpr arch::SysRegEncoding kPmr = kIccPmr;
constexpr arch::SysRegEncoding kIar0 = kIccIar0;
constexpr arch::SysRegEncoding kAp1r0 = IccAp1r(0);
constexpr arch::SysRegEncoding kDir = kIccDir;
constexpr arch::SysRegEncoding kRpr = kIccRpr;
constexpr arch::SysRegEncoding kSgi1r = kIccSgi1r;
constexpr arch::SysRegEncoding kIar1 = kIccIar1;
constexpr arch::SysRegEncoding kEoir1 = kIccEoir1;
constexpr arch::SysRegEncoding kHppir1 = kIccHppir1;
constexpr arch::SysRegEncoding kCtlr = kIccCtlr;
constexpr arch::SysRegEncoding kSre = kIccSre;
constexpr arch::SysRegEncoding kIgrpen1 = kIccIgrpen1;
constexpr arch::SysRegEncoding kSreEl2 = kIccSreEl2;
constexpr arch::SysRegEncoding Lr(std::uint8_t n) { return IchLr(n); }

constexpr CpuIfContext kEl1{.el = 1, .imo = false, .fmo = false};
constexpr CpuIfContext kEl2{.el = 2, .imo = false, .fmo = false};
constexpr CpuIfContext kNested{.el = 1, .imo = true, .fmo = true};

constexpr std::uint64_t kRedistSgi = 0x10000;
constexpr std::uint64_t kLrPending = 1ULL << 62;
constexpr std::uint64_t kLrActive = 2ULL << 62;
constexpr std::uint64_t kLrGroup1 = 1ULL << 60;
constexpr std::uint64_t kLrHw = 1ULL << 61;
constexpr std::uint64_t kLrEoi = 1ULL << 41;
constexpr std::uint64_t LrPrio(std::uint64_t p) { return p << 48; }

UserGicV3 Make(unsigned cpus = 2) {
  auto gic = UserGicV3::Create(UserGicConfig{.num_cpus = cpus, .num_irqs = 64});
  EXPECT_TRUE(gic) << gic.error().Message();
  return std::move(*gic);
}

std::uint64_t Read(UserGicV3& g, unsigned cpu, arch::SysRegEncoding e,
                   const CpuIfContext& ctx = kEl1) {
  const SysRegResult r = g.SysRegRead(cpu, e, ctx);
  EXPECT_TRUE(r.handled);
  return r.value;
}
void Write(UserGicV3& g, unsigned cpu, arch::SysRegEncoding e, std::uint64_t v,
           const CpuIfContext& ctx = kEl1) {
  EXPECT_TRUE(g.SysRegWrite(cpu, e, v, ctx).handled);
}

// What the project's guest runtime does: ARE and group 1 on, the CPU's
// redistributor awake, its private interrupts group 1, the CPU interface on.
void GuestInit(UserGicV3& g, unsigned cpu) {
  g.DistWrite(cpu, 0, 0x12, 4);  // ARE | EnableGrp1
  const std::uint64_t rd = cpu * UserGicV3::kRedistStride;
  g.RedistWrite(rd + 0x14, g.RedistRead(rd + 0x14, 4) & ~2ULL, 4);
  g.RedistWrite(rd + kRedistSgi + 0x80, 0xffffffff, 4);  // IGROUPR0
  Write(g, cpu, kPmr, 0xff);
  Write(g, cpu, kIgrpen1, 1);
}

void EnablePpi(UserGicV3& g, unsigned cpu, unsigned intid, std::uint8_t prio = 0xa0) {
  const std::uint64_t rd = cpu * UserGicV3::kRedistStride;
  g.RedistWrite(rd + kRedistSgi + 0x400 + intid, prio, 1);
  g.RedistWrite(rd + kRedistSgi + 0x100, 1ULL << intid, 4);  // ISENABLER0
}

TEST(UserGicV3, RefusesImpossibleSizes) {
  EXPECT_FALSE(UserGicV3::Create(UserGicConfig{.num_cpus = 0, .num_irqs = 64}));
  EXPECT_FALSE(UserGicV3::Create(UserGicConfig{.num_cpus = 9, .num_irqs = 64}));
  EXPECT_FALSE(UserGicV3::Create(UserGicConfig{.num_cpus = 1, .num_irqs = 48}));
}

TEST(UserGicV3, IdentifiesItselfAsAGicV3WithOneRedistributorPerCpu) {
  UserGicV3 g = Make(2);
  bool known = false;
  EXPECT_EQ(g.DistRead(0, 0xFFE8, 4, &known) >> 4 & 0xf, 3U);  // ArchRev 3
  EXPECT_TRUE(known);
  EXPECT_EQ(g.DistRead(0, 0x4, 4) & 0x1f, 1U);   // ITLinesNumber: 64 INTIDs
  EXPECT_EQ(g.DistRead(0, 0, 4) & 0x50, 0x50U);  // ARE and DS read as one
  const std::uint64_t typer0 = g.RedistRead(0x8, 8);
  const std::uint64_t typer1 = g.RedistRead(UserGicV3::kRedistStride + 0x8, 8);
  EXPECT_EQ(typer0 & 0x10, 0U);            // not Last
  EXPECT_EQ(typer1 & 0x10, 0x10U);         // Last
  EXPECT_EQ(typer1 >> 32, 1U);             // Aff0 1
  EXPECT_EQ(typer1 >> 8 & 0xffff, 1U);     // Processor_Number
  EXPECT_EQ(g.RedistRead(0x14, 4), 0x6U);  // asleep at reset
  g.RedistWrite(0x14, 0, 4);
  EXPECT_EQ(g.RedistRead(0x14, 4), 0U);  // awake, children too
  g.RedistRead(2 * UserGicV3::kRedistStride, 4, &known);
  EXPECT_FALSE(known);  // no third CPU
}

TEST(UserGicV3, APpiIsAcknowledgedEndedAndFollowsItsLine) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  EnablePpi(g, 0, 27);
  EXPECT_FALSE(g.IrqLine(0));
  g.SetPpiLevel(0, 27, true);
  EXPECT_TRUE(g.IrqLine(0));
  EXPECT_FALSE(g.FiqLine(0));  // group 1 is IRQ
  EXPECT_EQ(Read(g, 0, kHppir1), 27U);
  EXPECT_EQ(Read(g, 0, kIar1), 27U);
  EXPECT_TRUE(g.IsActive(0, 27));
  EXPECT_FALSE(g.IrqLine(0));  // active: not signalled again
  EXPECT_EQ(Read(g, 0, kRpr), 0xa0U);
  EXPECT_EQ(Read(g, 0, kIar1), 1023U);
  Write(g, 0, kEoir1, 27);
  EXPECT_FALSE(g.IsActive(0, 27));
  EXPECT_EQ(Read(g, 0, kRpr), 0xffU);
  EXPECT_TRUE(g.IrqLine(0));  // level still high: pending again
  g.SetPpiLevel(0, 27, false);
  EXPECT_FALSE(g.IrqLine(0));
  EXPECT_FALSE(g.IsPending(0, 27));
}

TEST(UserGicV3, PriorityMaskGroupEnablesAndPreemption) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  EnablePpi(g, 0, 27, 0xa0);
  EnablePpi(g, 0, 26, 0x40);
  g.SetPpiLevel(0, 27, true);
  Write(g, 0, kPmr, 0xa0);  // masks priority 0xa0
  EXPECT_FALSE(g.IrqLine(0));
  Write(g, 0, kPmr, 0xff);
  Write(g, 0, kIgrpen1, 0);
  EXPECT_FALSE(g.IrqLine(0));
  Write(g, 0, kIgrpen1, 1);
  EXPECT_EQ(Read(g, 0, kIar1), 27U);
  // A higher priority preempts the running 0xa0; equal or lower does not.
  g.SetPpiLevel(0, 26, true);
  EXPECT_TRUE(g.IrqLine(0));
  EXPECT_EQ(Read(g, 0, kIar1), 26U);
  EXPECT_EQ(Read(g, 0, kRpr), 0x40U);
  EXPECT_EQ(Read(g, 0, kAp1r0), (1U << (0x40 >> 3)) | (1U << (0xa0 >> 3)));
  Write(g, 0, kEoir1, 26);
  EXPECT_EQ(Read(g, 0, kRpr), 0xa0U);
  Write(g, 0, kEoir1, 27);
  EXPECT_EQ(Read(g, 0, kAp1r0), 0U);
  // The low priority bits are not implemented.
  Write(g, 0, kPmr, 0xff);
  EXPECT_EQ(Read(g, 0, kPmr), 0xf8U);
}

TEST(UserGicV3, EoiModeSplitsPriorityDropFromDeactivation) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  EnablePpi(g, 0, 30);
  Write(g, 0, kCtlr, 2);                         // EOImode
  EXPECT_EQ(Read(g, 0, kCtlr) & 0x702, 0x402U);  // PRIbits says 5 bits
  g.SetPpiLevel(0, 30, true);
  EXPECT_EQ(Read(g, 0, kIar1), 30U);
  Write(g, 0, kEoir1, 30);
  EXPECT_EQ(Read(g, 0, kRpr), 0xffU);
  EXPECT_TRUE(g.IsActive(0, 30));
  Write(g, 0, kDir, 30);
  EXPECT_FALSE(g.IsActive(0, 30));
}

TEST(UserGicV3, SpisFollowIroutingAndSgisTheirTargetList) {
  UserGicV3 g = Make(2);
  GuestInit(g, 0);
  GuestInit(g, 1);
  g.DistWrite(0, 0x84, 0xffffffff, 4);    // SPIs 32..63 group 1
  g.DistWrite(0, 0x400 + 33, 0x80, 1);    // priority
  g.DistWrite(0, 0x6000 + 8 * 33, 1, 8);  // IROUTER: Aff0 1
  g.DistWrite(0, 0x104, 1U << 1, 4);      // ISENABLER1: SPI 33
  EXPECT_EQ(g.DistRead(0, 0x6000 + 8 * 33, 8), 1U);
  g.SetSpiLevel(33, true);
  EXPECT_FALSE(g.IrqLine(0));
  EXPECT_TRUE(g.IrqLine(1));
  EXPECT_EQ(Read(g, 1, kIar1), 33U);
  // SGI 3 from CPU 0 to CPU 1 (TargetList bit 1), then to all but CPU 1.
  const std::uint64_t rd1 = UserGicV3::kRedistStride;
  g.RedistWrite(rd1 + kRedistSgi + 0x100, 1U << 3, 4);
  Write(g, 0, kSgi1r, (3ULL << 24) | (1U << 1));
  EXPECT_TRUE(g.IsPending(1, 3));
  EXPECT_FALSE(g.IsPending(0, 3));
  Write(g, 1, kSgi1r, (5ULL << 24) | (1ULL << 40));
  EXPECT_TRUE(g.IsPending(0, 5));
  EXPECT_FALSE(g.IsPending(1, 5));
}

TEST(UserGicV3, Group0SignalsFiq) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  g.DistWrite(0, 0, 0x13, 4);                        // and EnableGrp0
  g.RedistWrite(kRedistSgi + 0x80, ~(1U << 27), 4);  // PPI 27 in group 0
  Write(g, 0, Icc(12, 6), 1);                        // ICC_IGRPEN0_EL1
  EnablePpi(g, 0, 27);
  g.SetPpiLevel(0, 27, true);
  EXPECT_TRUE(g.FiqLine(0));
  EXPECT_FALSE(g.IrqLine(0));
  EXPECT_EQ(Read(g, 0, kIar1), 1023U);
  EXPECT_EQ(Read(g, 0, kIar0), 27U);
}

TEST(UserGicV3, El2RegistersAreNotThereAtEl1) {
  UserGicV3 g = Make(1);
  EXPECT_FALSE(g.SysRegRead(0, kIchVtr, kEl1).handled);
  EXPECT_FALSE(g.SysRegWrite(0, Lr(0), 1, kEl1).handled);
  EXPECT_FALSE(g.SysRegRead(0, kSreEl2, kEl1).handled);
  EXPECT_EQ(Read(g, 0, kSreEl2, kEl2) & 0x9, 0x9U);  // SRE and Enable
  EXPECT_EQ(Read(g, 0, kSre) & 1, 1U);
  EXPECT_FALSE(g.SysRegRead(0, arch::SysRegEncoding{3, 0, 12, 0, 0}, kEl1).handled);  // VBAR
  EXPECT_FALSE(g.SysRegWrite(0, kIar1, 0, kEl1).handled);                             // read-only
  EXPECT_FALSE(g.SysRegWrite(0, kIchVtr, 0, kEl2).handled);
  const std::uint64_t vtr = Read(g, 0, kIchVtr, kEl2);
  EXPECT_EQ(vtr & 0x1f, UserGicV3::kListRegs - 1);
  EXPECT_EQ(vtr >> 29 & 7, 4U);  // PRIbits: 5
}

// The guest hypervisor's path (guests/rt/el2.h): the virtual interface on,
// a list register pending; the nested guest takes it with its ICC_* names.
TEST(UserGicV3, AListRegisterReachesTheNestedGuestAndIsEnded) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  Write(g, 0, Lr(0), 0, kEl2);
  Write(g, 0, kIchVmcr, (0xffULL << 24) | 2, kEl2);  // VPMR, VENG1
  Write(g, 0, kIchHcr, 1, kEl2);                     // En
  EXPECT_EQ(Read(g, 0, kIchElrsr, kEl2) & 0xf, 0xfU);
  EXPECT_FALSE(g.VirqLine(0));
  Write(g, 0, Lr(0), kLrPending | kLrGroup1 | LrPrio(0xa0) | 27, kEl2);
  EXPECT_TRUE(g.VirqLine(0));
  EXPECT_FALSE(g.IrqLine(0));  // the physical interface is not involved
  EXPECT_EQ(Read(g, 0, kIchElrsr, kEl2) & 1, 0U);
  EXPECT_EQ(Read(g, 0, kHppir1, kNested), 27U);
  EXPECT_EQ(Read(g, 0, kIar1, kNested), 27U);
  EXPECT_FALSE(g.VirqLine(0));
  EXPECT_EQ(Read(g, 0, Lr(0), kEl2) >> 62, 2U);  // active
  EXPECT_EQ(Read(g, 0, kRpr, kNested), 0xa0U);
  EXPECT_EQ(Read(g, 0, kRpr, kEl1), 0xffU);  // the physical one is idle
  Write(g, 0, kEoir1, 27, kNested);
  EXPECT_EQ(Read(g, 0, Lr(0), kEl2) >> 62, 0U);
  EXPECT_EQ(Read(g, 0, kRpr, kNested), 0xffU);
  EXPECT_EQ(Read(g, 0, kIar1, kNested), 1023U);
  // The nested guest's PMR and group enable are the VMCR's fields.
  Write(g, 0, kPmr, 0x80, kNested);
  EXPECT_EQ(Read(g, 0, kIchVmcr, kEl2) >> 24, 0x80U);
  EXPECT_EQ(Read(g, 0, kPmr, kEl1), 0xf8U);  // the physical PMR unchanged
}

TEST(UserGicV3, VirtualSignalRespectsVpmrAndTheVirtualRunningPriority) {
  UserGicV3 g = Make(1);
  Write(g, 0, kIchHcr, 1, kEl2);
  Write(g, 0, kIchVmcr, (0x80ULL << 24) | 2, kEl2);
  Write(g, 0, Lr(0), kLrPending | kLrGroup1 | LrPrio(0xa0) | 40, kEl2);
  EXPECT_FALSE(g.VirqLine(0));  // 0xa0 is masked by VPMR 0x80
  Write(g, 0, Lr(1), kLrPending | kLrGroup1 | LrPrio(0x40) | 41, kEl2);
  EXPECT_TRUE(g.VirqLine(0));
  EXPECT_EQ(Read(g, 0, kIar1, kNested), 41U);
  Write(g, 0, Lr(2), kLrPending | kLrGroup1 | LrPrio(0x40) | 42, kEl2);
  EXPECT_FALSE(g.VirqLine(0));  // same priority as the running one
  Write(g, 0, kIchHcr, 0, kEl2);
  EXPECT_EQ(Read(g, 0, kIar1, kNested), 1023U);  // the interface is off
}

TEST(UserGicV3, AHardwareListRegisterDeactivatesThePhysicalInterrupt) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  EnablePpi(g, 0, 27);
  Write(g, 0, kCtlr, 2, kEl2);  // EOImode: the hypervisor drops priority only
  g.SetPpiLevel(0, 27, true);
  EXPECT_EQ(Read(g, 0, kIar1, kEl2), 27U);
  Write(g, 0, kEoir1, 27, kEl2);
  EXPECT_TRUE(g.IsActive(0, 27));
  Write(g, 0, kIchHcr, 1, kEl2);
  Write(g, 0, kIchVmcr, (0xffULL << 24) | 2, kEl2);
  Write(g, 0, Lr(0), kLrPending | kLrGroup1 | kLrHw | (27ULL << 32) | LrPrio(0xa0) | 27, kEl2);
  EXPECT_EQ(Read(g, 0, kIar1, kNested), 27U);
  Write(g, 0, kEoir1, 27, kNested);
  EXPECT_FALSE(g.IsActive(0, 27));  // deactivated through the list register
}

TEST(UserGicV3, AnEoiNoListRegisterHoldsCountsInEoicount) {
  UserGicV3 g = Make(1);
  Write(g, 0, kIchHcr, 1 | (1U << 2), kEl2);  // En, LRENPIE
  Write(g, 0, kIchVmcr, (0xffULL << 24) | 2, kEl2);
  EXPECT_EQ(Read(g, 0, kIchMisr, kEl2) & 4, 0U);
  Write(g, 0, kEoir1, 99, kNested);
  EXPECT_EQ(Read(g, 0, kIchHcr, kEl2) >> 27, 1U);
  EXPECT_EQ(Read(g, 0, kIchMisr, kEl2) & 4, 4U);  // LRENP
  EXPECT_TRUE(g.IsPending(0, UserGicV3::kMaintenancePpi));
}

TEST(UserGicV3, MaintenanceInterruptForEoiAndNoPending) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  EnablePpi(g, 0, UserGicV3::kMaintenancePpi, 0x80);
  Write(g, 0, kIchVmcr, (0xffULL << 24) | 2, kEl2);
  Write(g, 0, Lr(0), kLrPending | kLrGroup1 | kLrEoi | LrPrio(0xa0) | 27, kEl2);
  Write(g, 0, kIchHcr, 1 | (1U << 3), kEl2);  // En, NPIE
  EXPECT_FALSE(g.IrqLine(0));                 // an LR is pending: no NP
  EXPECT_EQ(Read(g, 0, kIar1, kNested), 27U);
  EXPECT_EQ(Read(g, 0, kIchMisr, kEl2), 1U << 3);  // NP: nothing pending now
  EXPECT_TRUE(g.IrqLine(0));                       // PPI 25 at the physical interface
  Write(g, 0, kEoir1, 27, kNested);
  EXPECT_EQ(Read(g, 0, kIchEisr, kEl2), 1U);       // LR 0 ended with EOI set
  EXPECT_EQ(Read(g, 0, kIchElrsr, kEl2) & 1, 0U);  // not free until cleared
  EXPECT_EQ(Read(g, 0, kIchMisr, kEl2) & 1, 1U);
  Write(g, 0, Lr(0), 0, kEl2);
  Write(g, 0, kIchHcr, 1, kEl2);
  EXPECT_EQ(Read(g, 0, kIchMisr, kEl2), 0U);
  EXPECT_FALSE(g.IsPending(0, UserGicV3::kMaintenancePpi));
}

TEST(UserGicV3, ActiveAndPendingListRegisterGoesBackToPending) {
  UserGicV3 g = Make(1);
  Write(g, 0, kIchHcr, 1, kEl2);
  Write(g, 0, kIchVmcr, (0xffULL << 24) | 2, kEl2);
  Write(g, 0, Lr(0), kLrActive | kLrPending | kLrGroup1 | LrPrio(0xa0) | 30, kEl2);
  EXPECT_FALSE(g.VirqLine(0));  // active and pending: not taken again
  Write(g, 0, kDir, 30, kNested);
  EXPECT_EQ(Read(g, 0, Lr(0), kEl2) >> 62, 1U);
  EXPECT_TRUE(g.VirqLine(0));
}

// GICD_TYPER.ITLinesNumber is N for INTIDs up to 32(N+1)-1: 1020 INTIDs
// need N = 31 (INTIDs 1020..1023 are special), 32 need N = 0 (no SPIs).
TEST(UserGicV3, ItLinesNumberCoversEveryInterruptId) {
  struct Size {
    unsigned irqs;
    unsigned lines;
  };
  for (const Size size : {Size{32, 0}, Size{64, 1}, Size{992, 30}, Size{1020, 31}}) {
    auto g = UserGicV3::Create(UserGicConfig{.num_cpus = 1, .num_irqs = size.irqs});
    ASSERT_TRUE(g) << g.error().Message();
    EXPECT_EQ(g->DistRead(0, 0x4, 4) & 0x1f, size.lines) << size.irqs << " INTIDs";
  }
}

// A GIC with no SPIs (num_irqs 32) is a valid configuration (ITLinesNumber
// 0): the SPI registers read as zero, ignore writes, and the lines are
// ignored; the private interrupts work as usual.
TEST(UserGicV3, AGicWithoutSpisKeepsItsPrivateInterrupts) {
  auto made = UserGicV3::Create(UserGicConfig{.num_cpus = 1, .num_irqs = 32});
  ASSERT_TRUE(made) << made.error().Message();
  UserGicV3& g = *made;
  EXPECT_FALSE(UserGicV3::Create(UserGicConfig{.num_cpus = 1, .num_irqs = 0}));
  EXPECT_FALSE(UserGicV3::Create(UserGicConfig{.num_cpus = 1, .num_irqs = 1024}));
  GuestInit(g, 0);
  g.DistWrite(0, 0x84, 0xffffffff, 4);   // IGROUPR1
  g.DistWrite(0, 0x104, 0xffffffff, 4);  // ISENABLER1
  g.DistWrite(0, 0x204, 0xffffffff, 4);  // ISPENDR1
  g.DistWrite(0, 0x400 + 32, 0x80, 1);
  EXPECT_EQ(g.DistRead(0, 0x104, 4), 0U);
  EXPECT_EQ(g.DistRead(0, 0x204, 4), 0U);
  EXPECT_EQ(g.DistRead(0, 0x400 + 32, 1), 0U);
  EXPECT_EQ(g.DistRead(0, 0x6000 + 8 * 32, 8), 0U);
  g.SetSpiLevel(32, true);
  EXPECT_FALSE(g.IsPending(0, 32));
  EXPECT_FALSE(g.IrqLine(0));
  EnablePpi(g, 0, 27);
  g.SetPpiLevel(0, 27, true);
  EXPECT_EQ(Read(g, 0, kIar1), 27U);
}

// GICD_IROUTER: Aff0 [7:0], Aff1 [15:8], Aff2 [23:16], Aff3 [39:32]. A
// route naming another cluster at any level reaches none of this GIC's CPUs
// (all have Aff1..3 = 0), even when its Aff0 names one.
TEST(UserGicV3, AnSpiRoutedToAnotherClusterReachesNoCpu) {
  UserGicV3 g = Make(2);
  GuestInit(g, 0);
  GuestInit(g, 1);
  g.DistWrite(0, 0x84, 0xffffffff, 4);  // SPIs 32..63 group 1
  g.DistWrite(0, 0x400 + 33, 0x80, 1);
  g.DistWrite(0, 0x104, 1U << 1, 4);  // ISENABLER1: SPI 33
  g.SetSpiLevel(33, true);
  for (const std::uint64_t other : {1ULL << 8, 1ULL << 16, 1ULL << 32}) {
    for (const std::uint64_t aff0 : {0ULL, 1ULL}) {
      g.DistWrite(0, 0x6000 + 8 * 33, other | aff0, 8);
      EXPECT_EQ(g.DistRead(0, 0x6000 + 8 * 33, 8), other | aff0);
      EXPECT_FALSE(g.IrqLine(0)) << std::hex << (other | aff0);
      EXPECT_FALSE(g.IrqLine(1)) << std::hex << (other | aff0);
    }
  }
  g.DistWrite(0, 0x6000 + 8 * 33, 1, 8);
  EXPECT_TRUE(g.IrqLine(1));
}

// IHI 0069, priority grouping: BPR0 = n makes [7:n+1] the group priority;
// group 1 with its own binary point (CBPR 0) uses [7:n] for BPR1 = n, whose
// minimum is BPR0's plus one. At the minimum BPR1 (3) all five implemented
// bits [7:3] are group priority, so 0xa0 preempts 0xa8.
TEST(UserGicV3, Group1BinaryPointSplitsOneBitLowerThanGroup0s) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  EnablePpi(g, 0, 27, 0xa8);
  EnablePpi(g, 0, 26, 0xa0);
  EXPECT_EQ(Read(g, 0, kIccBpr1), 3U);
  g.SetPpiLevel(0, 27, true);
  EXPECT_EQ(Read(g, 0, kIar1), 27U);
  EXPECT_EQ(Read(g, 0, kRpr), 0xa8U);
  EXPECT_EQ(Read(g, 0, kAp1r0), 1U << (0xa8 >> 3));
  g.SetPpiLevel(0, 26, true);
  EXPECT_TRUE(g.IrqLine(0));
  EXPECT_EQ(Read(g, 0, kIar1), 26U);
  Write(g, 0, kEoir1, 26);
  Write(g, 0, kEoir1, 27);
  EXPECT_EQ(Read(g, 0, kRpr), 0xffU);
  // BPR1 4: group priority [7:4], 0xa0 and 0xa8 are one level.
  Write(g, 0, kIccBpr1, 4);
  g.SetPpiLevel(0, 26, false);
  EXPECT_EQ(Read(g, 0, kIar1), 27U);
  EXPECT_EQ(Read(g, 0, kRpr), 0xa0U);
  g.SetPpiLevel(0, 26, true);
  EXPECT_FALSE(g.IrqLine(0));
  // CBPR: group 1 uses BPR0 (2: [7:3]), which splits as BPR1 3 does.
  Write(g, 0, kEoir1, 27);
  Write(g, 0, kCtlr, 1);
  EXPECT_EQ(Read(g, 0, kIccBpr1), 3U);  // BPR0 + 1
  g.SetPpiLevel(0, 26, false);
  EXPECT_EQ(Read(g, 0, kIar1), 27U);
  EXPECT_EQ(Read(g, 0, kRpr), 0xa8U);
  g.SetPpiLevel(0, 26, true);
  EXPECT_TRUE(g.IrqLine(0));
}

// The same for the virtual interface: ICH_VMCR_EL2.VBPR1 3 (its minimum)
// makes [7:3] the virtual group priority.
TEST(UserGicV3, VirtualGroup1BinaryPointSplitsOneBitLowerThanGroup0s) {
  UserGicV3 g = Make(1);
  Write(g, 0, kIchHcr, 1, kEl2);
  Write(g, 0, kIchVmcr, (0xffULL << 24) | 2, kEl2);  // VBPR0, VBPR1 at their minimum
  EXPECT_EQ(Read(g, 0, kIccBpr1, kNested), 3U);
  Write(g, 0, Lr(0), kLrPending | kLrGroup1 | LrPrio(0xa8) | 40, kEl2);
  EXPECT_EQ(Read(g, 0, kIar1, kNested), 40U);
  EXPECT_EQ(Read(g, 0, kRpr, kNested), 0xa8U);
  Write(g, 0, Lr(1), kLrPending | kLrGroup1 | LrPrio(0xa0) | 41, kEl2);
  EXPECT_TRUE(g.VirqLine(0));
  EXPECT_EQ(Read(g, 0, kIar1, kNested), 41U);
  EXPECT_EQ(Read(g, 0, kRpr, kNested), 0xa0U);
  // VBPR1 4: one level for both, no preemption.
  Write(g, 0, kEoir1, 41, kNested);
  Write(g, 0, kEoir1, 40, kNested);
  Write(g, 0, kIccBpr1, 4, kNested);
  Write(g, 0, Lr(0), kLrPending | kLrGroup1 | LrPrio(0xa8) | 40, kEl2);
  EXPECT_EQ(Read(g, 0, kIar1, kNested), 40U);
  EXPECT_EQ(Read(g, 0, kRpr, kNested), 0xa0U);
  Write(g, 0, Lr(1), kLrPending | kLrGroup1 | LrPrio(0xa0) | 41, kEl2);
  EXPECT_FALSE(g.VirqLine(0));
}

// A GICx_ISPENDR write latches a level-sensitive interrupt pending; the
// acknowledgement consumes that latch, and the pending state follows the
// line from then on.
TEST(UserGicV3, AcknowledgingALevelInterruptConsumesItsSetPendingLatch) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  g.DistWrite(0, 0x84, 0xffffffff, 4);  // SPIs 32..63 group 1
  g.DistWrite(0, 0x400 + 40, 0x80, 1);
  g.DistWrite(0, 0x104, 1U << 8, 4);  // ISENABLER1: SPI 40 (level, routed to CPU 0)
  g.DistWrite(0, 0x204, 1U << 8, 4);  // ISPENDR1
  EXPECT_TRUE(g.IsPending(0, 40));
  EXPECT_EQ(Read(g, 0, kIar1), 40U);
  EXPECT_FALSE(g.IsPending(0, 40));  // line low: active only
  EXPECT_EQ(g.DistRead(0, 0x204, 4) & (1U << 8), 0U);
  Write(g, 0, kEoir1, 40);
  EXPECT_FALSE(g.IrqLine(0));
  // A PPI latched by GICR_ISPENDR0 with its line high: active and pending,
  // then idle once the line drops.
  EnablePpi(g, 0, 27);
  g.SetPpiLevel(0, 27, true);
  g.RedistWrite(kRedistSgi + 0x200, 1U << 27, 4);
  EXPECT_EQ(Read(g, 0, kIar1), 27U);
  EXPECT_TRUE(g.IsPending(0, 27));
  g.SetPpiLevel(0, 27, false);
  EXPECT_FALSE(g.IsPending(0, 27));
  Write(g, 0, kEoir1, 27);
  EXPECT_FALSE(g.IrqLine(0));
}

// INTIDs 1020..1023 are special: an EOIR or DIR write of one is ignored
// (no priority drop, no deactivation), physical and virtual alike.
TEST(UserGicV3, EoiAndDeactivationOfASpecialIntidAreIgnored) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  EnablePpi(g, 0, 27);
  g.SetPpiLevel(0, 27, true);
  EXPECT_EQ(Read(g, 0, kIar1), 27U);
  for (const std::uint64_t special : {1020U, 1021U, 1022U, 1023U}) {
    Write(g, 0, kEoir1, special);
    Write(g, 0, kIccEoir0, special);
    Write(g, 0, kDir, special);
  }
  EXPECT_EQ(Read(g, 0, kRpr), 0xa0U);
  EXPECT_TRUE(g.IsActive(0, 27));
  Write(g, 0, kEoir1, 27);
  EXPECT_EQ(Read(g, 0, kRpr), 0xffU);
  EXPECT_FALSE(g.IsActive(0, 27));

  Write(g, 0, kIchHcr, 1, kEl2);
  Write(g, 0, kIchVmcr, (0xffULL << 24) | 2, kEl2);
  Write(g, 0, Lr(0), kLrPending | kLrGroup1 | LrPrio(0xa0) | 30, kEl2);
  EXPECT_EQ(Read(g, 0, kIar1, kNested), 30U);
  for (const std::uint64_t special : {1020U, 1021U, 1022U, 1023U}) {
    Write(g, 0, kEoir1, special, kNested);
    Write(g, 0, kIccEoir0, special, kNested);
    Write(g, 0, kDir, special, kNested);
  }
  EXPECT_EQ(Read(g, 0, kRpr, kNested), 0xa0U);
  EXPECT_EQ(Read(g, 0, Lr(0), kEl2) >> 62, 2U);    // still active
  EXPECT_EQ(Read(g, 0, kIchHcr, kEl2) >> 27, 0U);  // EOIcount untouched
  Write(g, 0, kEoir1, 30, kNested);
  EXPECT_EQ(Read(g, 0, kRpr, kNested), 0xffU);
  EXPECT_EQ(Read(g, 0, Lr(0), kEl2) >> 62, 0U);
}

// ICH_HCR_EL2: En..VGrp1DIE [7:0], TC [10], TALL0 [11], TALL1 [12], TSEI
// [13], TDIR [14] and EOIcount [31:27] read back as written; vSGIEOICount
// [8] and DVIM [15] (GICv4.1) and the rest are RES0.
TEST(UserGicV3, IchHcrKeepsEveryControlBitItStores) {
  UserGicV3 g = Make(1);
  Write(g, 0, kIchHcr, 1U << 11, kEl2);
  EXPECT_EQ(Read(g, 0, kIchHcr, kEl2), 1U << 11);  // TALL0
  Write(g, 0, kIchHcr, ~0ULL, kEl2);
  EXPECT_EQ(Read(g, 0, kIchHcr, kEl2), 0xF8007CFFU);
  Write(g, 0, kIchHcr, 0, kEl2);
  EXPECT_EQ(Read(g, 0, kIchHcr, kEl2), 0U);
}

// ICC_AP1R0/AP0R0: one bit per priority level, saved and restored by
// software; the running priority is the highest of both groups. AP{0,1}R1..3
// are RAZ/WI (32 levels).
TEST(UserGicV3, ActivePriorityRegistersRestoreTheRunningPriority) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  EnablePpi(g, 0, 27);
  g.SetPpiLevel(0, 27, true);
  EXPECT_EQ(Read(g, 0, kIar1), 27U);
  EXPECT_EQ(Read(g, 0, kAp1r0), 1U << (0xa0 >> 3));
  Write(g, 0, kAp1r0, 0);  // as after a save
  EXPECT_EQ(Read(g, 0, kRpr), 0xffU);
  Write(g, 0, kAp1r0, 1U << (0x40 >> 3));  // a restore
  EXPECT_EQ(Read(g, 0, kRpr), 0x40U);
  Write(g, 0, IccAp0r(0), 1U << (0x20 >> 3));
  EXPECT_EQ(Read(g, 0, IccAp0r(0)), 1U << (0x20 >> 3));
  EXPECT_EQ(Read(g, 0, kRpr), 0x20U);
  for (std::uint8_t n = 1; n < 4; ++n) {
    Write(g, 0, IccAp1r(n), ~0ULL);
    Write(g, 0, IccAp0r(n), ~0ULL);
    EXPECT_EQ(Read(g, 0, IccAp1r(n)), 0U);
    EXPECT_EQ(Read(g, 0, IccAp0r(n)), 0U);
  }
  EnablePpi(g, 0, 26, 0xa0);
  g.SetPpiLevel(0, 26, true);
  EXPECT_FALSE(g.IrqLine(0));  // 0x20 is running
  Write(g, 0, IccAp0r(0), 0);
  Write(g, 0, kAp1r0, 0);
  EXPECT_TRUE(g.IrqLine(0));  // nothing is
  // Under IMO the nested guest's ICC_AP1R0 is ICH_AP1R0_EL2.
  Write(g, 0, kAp1r0, 1U << 4, kNested);
  EXPECT_EQ(Read(g, 0, arch::SysRegEncoding{3, 4, 12, 9, 0}, kEl2), 1U << 4);
  EXPECT_EQ(Read(g, 0, kRpr, kNested), 0x20U);
  EXPECT_EQ(Read(g, 0, kAp1r0, kEl1), 0U);
}

// One security state: ICC_SGI0R_EL1 makes group 0 SGIs, ICC_SGI1R_EL1 and
// ICC_ASGI1R_EL1 group 1 ones; an SGI of the other group is not made, nor
// one for another cluster (Aff1..3) or for a CPU that is not there.
TEST(UserGicV3, SgiRegistersMakeTheirGroupsSgisForTheirTargets) {
  UserGicV3 g = Make(2);
  GuestInit(g, 0);
  GuestInit(g, 1);
  const std::uint64_t rd1 = UserGicV3::kRedistStride;
  g.RedistWrite(rd1 + kRedistSgi + 0x80, ~(1U << 2), 4);  // SGI 2 group 0
  g.RedistWrite(rd1 + kRedistSgi + 0x100, 0x1c, 4);       // SGIs 2..4 enabled
  Write(g, 0, kSgi1r, (2ULL << 24) | (1U << 1));
  EXPECT_FALSE(g.IsPending(1, 2));
  Write(g, 0, kIccSgi0r, (2ULL << 24) | (1U << 1));
  EXPECT_TRUE(g.IsPending(1, 2));
  EXPECT_FALSE(g.IsPending(0, 2));
  Write(g, 0, kIccSgi0r, (3ULL << 24) | (1U << 1));
  EXPECT_FALSE(g.IsPending(1, 3));
  for (const std::uint64_t aff : {1ULL << 16, 1ULL << 32, 1ULL << 48}) {
    Write(g, 0, kIccAsgi1r, aff | (3ULL << 24) | (1U << 1));
    EXPECT_FALSE(g.IsPending(1, 3)) << std::hex << aff;
  }
  Write(g, 0, kIccAsgi1r, (3ULL << 24) | (1U << 1));
  EXPECT_TRUE(g.IsPending(1, 3));
  Write(g, 0, kSgi1r, (4ULL << 24) | (1U << 5));  // no CPU 5
  EXPECT_FALSE(g.IsPending(0, 4));
  EXPECT_FALSE(g.IsPending(1, 4));
  // The group 0 SGI is taken on FIQ and its edge consumed.
  g.DistWrite(0, 0, 0x13, 4);  // and EnableGrp0
  Write(g, 1, kIccIgrpen0, 1);
  EXPECT_TRUE(g.FiqLine(1));
  EXPECT_EQ(Read(g, 1, kIar0), 2U);
  EXPECT_FALSE(g.IsPending(1, 2));
  EXPECT_TRUE(g.IsActive(1, 2));
}

// The device lines are not the GIC's: a reset leaves them as driven, and a
// level interrupt whose line is high is pending again once re-enabled. The
// maintenance interrupt is the virtual interface's output, reset with it.
TEST(UserGicV3, ResetKeepsTheInputLines) {
  UserGicV3 g = Make(1);
  g.SetPpiLevel(0, 27, true);
  g.SetSpiLevel(33, true);
  Write(g, 0, kIchHcr, 1 | (1U << 3), kEl2);  // En, NPIE: no LR pending
  EXPECT_TRUE(g.IsPending(0, UserGicV3::kMaintenancePpi));
  g.Reset();
  EXPECT_TRUE(g.IsPending(0, 27));
  EXPECT_TRUE(g.IsPending(0, 33));
  EXPECT_FALSE(g.IsPending(0, UserGicV3::kMaintenancePpi));
  EXPECT_FALSE(g.IrqLine(0));
  GuestInit(g, 0);
  EnablePpi(g, 0, 27);
  EXPECT_EQ(Read(g, 0, kIar1), 27U);
}

TEST(UserGicV3, ResetClearsEverything) {
  UserGicV3 g = Make(1);
  GuestInit(g, 0);
  EnablePpi(g, 0, 27);
  g.SetPpiLevel(0, 27, true);
  Write(g, 0, kIchHcr, 1, kEl2);
  g.Reset();
  EXPECT_FALSE(g.IrqLine(0));
  EXPECT_EQ(Read(g, 0, kIchHcr, kEl2), 0U);
  EXPECT_EQ(g.RedistRead(0x14, 4), 0x6U);
}

}  // namespace
}  // namespace vtime::vmm
