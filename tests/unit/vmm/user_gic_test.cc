#include "vtime/vmm/user_gic.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <iterator>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "vtime/wire.h"

namespace vtime::vmm {
namespace {

constexpr unsigned kVtimer = 27;  // the EL1 virtual timer's PPI
constexpr unsigned kPtimer = 30;  // the EL1 physical timer's PPI
constexpr std::uint32_t kSpurious = UserGic::kSpurious;

UserGic Make(unsigned cpus = 1, unsigned irqs = 64) {
  auto gic = UserGic::Create(UserGicConfig{.num_cpus = cpus, .num_irqs = irqs});
  EXPECT_TRUE(gic.has_value());
  return std::move(*gic);
}

// Word accessors that also insist the register is known.
std::uint32_t Dr(UserGic& gic, unsigned cpu, std::uint64_t offset) {
  bool known = false;
  const std::uint32_t v = gic.DistRead(cpu, offset, 4, &known);
  EXPECT_TRUE(known) << "GICD +0x" << std::hex << offset;
  return v;
}
void Dw(UserGic& gic, unsigned cpu, std::uint64_t offset, std::uint32_t value) {
  bool known = false;
  gic.DistWrite(cpu, offset, value, 4, &known);
  EXPECT_TRUE(known) << "GICD +0x" << std::hex << offset;
}
std::uint32_t Cr(UserGic& gic, unsigned cpu, std::uint64_t offset) {
  bool known = false;
  const std::uint32_t v = gic.CpuRead(cpu, offset, 4, &known);
  EXPECT_TRUE(known) << "GICC +0x" << std::hex << offset;
  return v;
}
void Cw(UserGic& gic, unsigned cpu, std::uint64_t offset, std::uint32_t value) {
  bool known = false;
  gic.CpuWrite(cpu, offset, value, 4, &known);
  EXPECT_TRUE(known) << "GICC +0x" << std::hex << offset;
}

std::uint32_t Bit(unsigned intid) { return 1U << (intid % 32); }
std::uint64_t Word(std::uint64_t base, unsigned intid) { return base + intid / 32 * 4; }

void EnableIrq(UserGic& gic, unsigned cpu, unsigned intid) {
  Dw(gic, cpu, Word(gicd::kIsenabler, intid), Bit(intid));
}
void SetPriority(UserGic& gic, unsigned cpu, unsigned intid, std::uint8_t priority) {
  bool known = false;
  gic.DistWrite(cpu, gicd::kIpriorityr + intid, priority, 1, &known);
  EXPECT_TRUE(known);
}
// What Linux's GICv2 driver does: distributor on, each CPU interface on,
// PMR 0xF0, every interrupt at priority 0xA0.
void Bringup(UserGic& gic) {
  Dw(gic, 0, gicd::kCtlr, 1);
  for (unsigned c = 0; c < gic.num_cpus(); ++c) {
    Cw(gic, c, gicc::kPmr, 0xF0);
    Cw(gic, c, gicc::kCtlr, 1);
    for (unsigned i = 0; i < 32; ++i) SetPriority(gic, c, i, 0xA0);
  }
  for (unsigned i = 32; i < gic.num_irqs(); ++i) SetPriority(gic, 0, i, 0xA0);
}
std::uint32_t Ack(UserGic& gic, unsigned cpu) { return Cr(gic, cpu, gicc::kIar); }
void Eoi(UserGic& gic, unsigned cpu, std::uint32_t iar) { Cw(gic, cpu, gicc::kEoir, iar); }

TEST(UserGic, CreateValidatesSizes) {
  for (const unsigned cpus : {0U, 9U, 100U}) {
    auto gic = UserGic::Create(UserGicConfig{.num_cpus = cpus, .num_irqs = 64});
    ASSERT_FALSE(gic.has_value()) << cpus;
    EXPECT_EQ(gic.error().code, ErrorCode::kInvalidArgument);
  }
  for (const unsigned irqs : {0U, 16U, 31U, 48U, 1000U, 1024U, 4096U}) {
    auto gic = UserGic::Create(UserGicConfig{.num_cpus = 1, .num_irqs = irqs});
    ASSERT_FALSE(gic.has_value()) << irqs;
    EXPECT_EQ(gic.error().code, ErrorCode::kInvalidArgument);
  }
  for (const unsigned irqs : {32U, 64U, 992U, 1020U}) {
    auto gic = UserGic::Create(UserGicConfig{.num_cpus = 8, .num_irqs = irqs});
    ASSERT_TRUE(gic.has_value()) << irqs;
    EXPECT_EQ(gic->num_irqs(), irqs);
    EXPECT_EQ(gic->num_cpus(), 8U);
  }
}

TEST(UserGic, TyperEncodesLinesAndCpus) {
  UserGic a = Make(1, 64);
  EXPECT_EQ(Dr(a, 0, gicd::kTyper), 0x1U);
  UserGic b = Make(4, 128);
  EXPECT_EQ(Dr(b, 0, gicd::kTyper), 0x3U | (3U << 5));
  UserGic c = Make(8, 1020);
  EXPECT_EQ(Dr(c, 7, gicd::kTyper), 31U | (7U << 5));
  UserGic d = Make(2, 32);
  EXPECT_EQ(Dr(d, 1, gicd::kTyper), 0U | (1U << 5));
}

TEST(UserGic, ResetValues) {
  UserGic gic = Make(2, 64);
  EXPECT_EQ(Dr(gic, 0, gicd::kCtlr), 0U);
  EXPECT_EQ(Dr(gic, 0, gicd::kIidr), 0x5600043BU);
  EXPECT_EQ(Dr(gic, 0, gicd::kIsenabler), 0U);
  EXPECT_EQ(Dr(gic, 0, gicd::kIspendr), 0U);
  EXPECT_EQ(Dr(gic, 0, gicd::kIsactiver), 0U);
  EXPECT_EQ(Dr(gic, 0, gicd::kIpriorityr), 0U);
  EXPECT_EQ(Dr(gic, 0, gicd::kIgroupr), 0U);
  EXPECT_EQ(Dr(gic, 0, gicd::kIcfgr), 0xAAAAAAAAU);  // SGIs edge
  EXPECT_EQ(Dr(gic, 0, gicd::kIcfgr + 4), 0U);       // PPIs level
  EXPECT_EQ(Dr(gic, 0, gicd::kIcfgr + 8), 0U);       // SPIs level at reset
  EXPECT_EQ(Dr(gic, 0, gicd::kItargetsr), 0x01010101U);
  EXPECT_EQ(Dr(gic, 1, gicd::kItargetsr + 28), 0x02020202U);
  EXPECT_EQ(Dr(gic, 0, gicd::kItargetsr + 32), 0U);      // SPIs target nobody
  EXPECT_EQ((Dr(gic, 0, gicd::kPidr2) >> 4) & 0xF, 2U);  // ArchRev: GICv2
  EXPECT_EQ(Dr(gic, 0, 0xFFC), 0xB1U);
  for (unsigned c = 0; c < 2; ++c) {
    EXPECT_EQ(Cr(gic, c, gicc::kCtlr), 0U);
    EXPECT_EQ(Cr(gic, c, gicc::kPmr), 0U);
    EXPECT_EQ(Cr(gic, c, gicc::kBpr), 2U);
    EXPECT_EQ(Cr(gic, c, gicc::kAbpr), 3U);
    EXPECT_EQ(Cr(gic, c, gicc::kRpr), 0xFFU);
    EXPECT_EQ(Cr(gic, c, gicc::kHppir), kSpurious);
    EXPECT_EQ(Cr(gic, c, gicc::kIar), kSpurious);
    EXPECT_EQ(Cr(gic, c, gicc::kApr), 0U);
    EXPECT_EQ(Cr(gic, c, gicc::kIidr), 0x0562043BU);
    EXPECT_EQ((Cr(gic, c, gicc::kIidr) >> 16) & 0xF, 2U);  // architecture: GICv2
    EXPECT_FALSE(gic.IrqLine(c));
  }
}

TEST(UserGic, DistributorEnableGatesIrqLine) {
  UserGic gic = Make();
  Bringup(gic);
  EnableIrq(gic, 0, kVtimer);
  gic.SetPpiLevel(0, kVtimer, true);
  EXPECT_TRUE(gic.IrqLine(0));
  Dw(gic, 0, gicd::kCtlr, 0);
  EXPECT_FALSE(gic.IrqLine(0));
  EXPECT_EQ(Cr(gic, 0, gicc::kHppir), kSpurious);
  EXPECT_EQ(Ack(gic, 0), kSpurious);
  EXPECT_TRUE(gic.IsPending(0, kVtimer));  // still pending, just not forwarded
  Dw(gic, 0, gicd::kCtlr, 1);
  EXPECT_EQ(Dr(gic, 0, gicd::kCtlr), 1U);
  EXPECT_TRUE(gic.IrqLine(0));
}

TEST(UserGic, CpuInterfaceEnableAndInterruptEnableGateIrqLine) {
  UserGic gic = Make();
  Bringup(gic);
  gic.SetPpiLevel(0, kVtimer, true);
  EXPECT_FALSE(gic.IrqLine(0));  // not enabled in the distributor yet
  EnableIrq(gic, 0, kVtimer);
  EXPECT_EQ(Dr(gic, 0, gicd::kIsenabler), Bit(kVtimer));
  EXPECT_TRUE(gic.IrqLine(0));
  Cw(gic, 0, gicc::kCtlr, 0);
  EXPECT_FALSE(gic.IrqLine(0));
  EXPECT_EQ(Ack(gic, 0), kSpurious);
  EXPECT_EQ(Cr(gic, 0, gicc::kHppir), kVtimer);  // HPPIR ignores the CPU interface enable
  Cw(gic, 0, gicc::kCtlr, 1);
  EXPECT_TRUE(gic.IrqLine(0));
  Dw(gic, 0, gicd::kIcenabler, Bit(kVtimer));
  EXPECT_EQ(Dr(gic, 0, gicd::kIcenabler), 0U);
  EXPECT_FALSE(gic.IrqLine(0));
}

TEST(UserGic, TimerPpiStaysQuietWhileActiveAndRepeatsAfterEoiIfStillHigh) {
  UserGic gic = Make();
  Bringup(gic);
  EnableIrq(gic, 0, kVtimer);
  gic.SetPpiLevel(0, kVtimer, true);
  ASSERT_TRUE(gic.IrqLine(0));
  EXPECT_EQ(Cr(gic, 0, gicc::kHppir), kVtimer);

  const std::uint32_t iar = Ack(gic, 0);
  EXPECT_EQ(iar, kVtimer);
  EXPECT_TRUE(gic.IsActive(0, kVtimer));
  EXPECT_TRUE(gic.IsPending(0, kVtimer));  // active and pending: the line is high
  EXPECT_EQ(Dr(gic, 0, gicd::kIsactiver), Bit(kVtimer));
  EXPECT_EQ(Cr(gic, 0, gicc::kRpr), 0xA0U);
  EXPECT_FALSE(gic.IrqLine(0));  // no storm while the handler runs
  EXPECT_EQ(Ack(gic, 0), kSpurious);
  gic.SetPpiLevel(0, kVtimer, true);  // the VMM re-syncing the same level
  EXPECT_FALSE(gic.IrqLine(0));

  Eoi(gic, 0, iar);
  EXPECT_FALSE(gic.IsActive(0, kVtimer));
  EXPECT_EQ(Cr(gic, 0, gicc::kRpr), 0xFFU);
  EXPECT_TRUE(gic.IsPending(0, kVtimer));  // line still high: pending again
  EXPECT_TRUE(gic.IrqLine(0));
  EXPECT_EQ(Ack(gic, 0), kVtimer);
}

TEST(UserGic, LineDroppingBeforeAckRemovesPending) {
  UserGic gic = Make();
  Bringup(gic);
  EnableIrq(gic, 0, kVtimer);
  gic.SetPpiLevel(0, kVtimer, true);
  EXPECT_TRUE(gic.IrqLine(0));
  gic.SetPpiLevel(0, kVtimer, false);
  EXPECT_FALSE(gic.IsPending(0, kVtimer));
  EXPECT_EQ(Dr(gic, 0, gicd::kIspendr), 0U);
  EXPECT_FALSE(gic.IrqLine(0));
  EXPECT_EQ(Ack(gic, 0), kSpurious);
}

TEST(UserGic, EoiAfterLineDroppedLeavesIrqLineLow) {
  UserGic gic = Make();
  Bringup(gic);
  EnableIrq(gic, 0, kVtimer);
  gic.SetPpiLevel(0, kVtimer, true);
  const std::uint32_t iar = Ack(gic, 0);
  ASSERT_EQ(iar, kVtimer);
  // The guest's handler reprograms the timer: the line drops before EOI.
  gic.SetPpiLevel(0, kVtimer, false);
  EXPECT_FALSE(gic.IsPending(0, kVtimer));
  EXPECT_TRUE(gic.IsActive(0, kVtimer));
  Eoi(gic, 0, iar);
  EXPECT_FALSE(gic.IsActive(0, kVtimer));
  EXPECT_FALSE(gic.IsPending(0, kVtimer));
  EXPECT_FALSE(gic.IrqLine(0));
  EXPECT_EQ(Ack(gic, 0), kSpurious);
  // The next expiry is a fresh rising level and is not lost.
  gic.SetPpiLevel(0, kVtimer, true);
  EXPECT_TRUE(gic.IrqLine(0));
}

TEST(UserGic, SoftwarePendingLatchOutlivesTheLine) {
  UserGic gic = Make();
  Bringup(gic);
  EnableIrq(gic, 0, kPtimer);
  Dw(gic, 0, gicd::kIspendr, Bit(kPtimer));
  EXPECT_TRUE(gic.IsPending(0, kPtimer));
  gic.SetPpiLevel(0, kPtimer, true);
  gic.SetPpiLevel(0, kPtimer, false);
  EXPECT_TRUE(gic.IsPending(0, kPtimer));  // latched by the ISPENDR write
  EXPECT_TRUE(gic.IrqLine(0));
  // ICPENDR clears the latch but not a level that is high.
  gic.SetPpiLevel(0, kPtimer, true);
  Dw(gic, 0, gicd::kIcpendr, Bit(kPtimer));
  EXPECT_TRUE(gic.IsPending(0, kPtimer));
  gic.SetPpiLevel(0, kPtimer, false);
  EXPECT_FALSE(gic.IsPending(0, kPtimer));
  // Acknowledging consumes the latch.
  Dw(gic, 0, gicd::kIspendr, Bit(kPtimer));
  const std::uint32_t iar = Ack(gic, 0);
  EXPECT_EQ(iar, kPtimer);
  EXPECT_FALSE(gic.IsPending(0, kPtimer));
  Eoi(gic, 0, iar);
  EXPECT_FALSE(gic.IrqLine(0));
}

TEST(UserGic, PmrMasksLowerPriorities) {
  UserGic gic = Make();
  Bringup(gic);
  EnableIrq(gic, 0, kVtimer);
  SetPriority(gic, 0, kVtimer, 0x80);
  gic.SetPpiLevel(0, kVtimer, true);
  Cw(gic, 0, gicc::kPmr, 0x80);  // equal priority is masked
  EXPECT_FALSE(gic.IrqLine(0));
  EXPECT_EQ(Ack(gic, 0), kSpurious);
  EXPECT_EQ(Cr(gic, 0, gicc::kHppir), kVtimer);  // HPPIR ignores the PMR
  Cw(gic, 0, gicc::kPmr, 0x88);
  EXPECT_TRUE(gic.IrqLine(0));
  Cw(gic, 0, gicc::kPmr, 0);
  EXPECT_FALSE(gic.IrqLine(0));
  Cw(gic, 0, gicc::kPmr, 0xFF);
  EXPECT_EQ(Cr(gic, 0, gicc::kPmr), 0xF8U);  // 5 priority bits
  EXPECT_TRUE(gic.IrqLine(0));
}

TEST(UserGic, HigherPriorityPreemptsRunningPriority) {
  UserGic gic = Make();
  Bringup(gic);
  EnableIrq(gic, 0, kVtimer);
  EnableIrq(gic, 0, kPtimer);
  SetPriority(gic, 0, kVtimer, 0x80);
  SetPriority(gic, 0, kPtimer, 0x40);

  gic.SetPpiLevel(0, kVtimer, true);
  const std::uint32_t low = Ack(gic, 0);
  ASSERT_EQ(low, kVtimer);
  EXPECT_EQ(Cr(gic, 0, gicc::kRpr), 0x80U);

  // Same priority as the running one: not signalled.
  SetPriority(gic, 0, kPtimer, 0x80);
  gic.SetPpiLevel(0, kPtimer, true);
  EXPECT_FALSE(gic.IrqLine(0));
  EXPECT_EQ(Ack(gic, 0), kSpurious);
  // Higher: preempts.
  SetPriority(gic, 0, kPtimer, 0x40);
  EXPECT_TRUE(gic.IrqLine(0));
  const std::uint32_t high = Ack(gic, 0);
  ASSERT_EQ(high, kPtimer);
  EXPECT_EQ(Cr(gic, 0, gicc::kRpr), 0x40U);
  EXPECT_EQ(Cr(gic, 0, gicc::kApr), (1U << (0x80 >> 3)) | (1U << (0x40 >> 3)));
  EXPECT_FALSE(gic.IrqLine(0));

  gic.SetPpiLevel(0, kPtimer, false);
  Eoi(gic, 0, high);
  EXPECT_EQ(Cr(gic, 0, gicc::kRpr), 0x80U);  // back to the preempted handler
  gic.SetPpiLevel(0, kVtimer, false);
  Eoi(gic, 0, low);
  EXPECT_EQ(Cr(gic, 0, gicc::kRpr), 0xFFU);
  EXPECT_EQ(Cr(gic, 0, gicc::kApr), 0U);
  EXPECT_FALSE(gic.IrqLine(0));
}

TEST(UserGic, BinaryPointLimitsPreemptionToGroupPriority) {
  UserGic gic = Make();
  Bringup(gic);
  Cw(gic, 0, gicc::kBpr, 0);
  EXPECT_EQ(Cr(gic, 0, gicc::kBpr), 2U);  // the minimum for 5 priority bits
  Cw(gic, 0, gicc::kBpr, 4);              // group priority [7:5]
  EXPECT_EQ(Cr(gic, 0, gicc::kBpr), 4U);
  EnableIrq(gic, 0, kVtimer);
  EnableIrq(gic, 0, kPtimer);
  SetPriority(gic, 0, kVtimer, 0x90);
  SetPriority(gic, 0, kPtimer, 0x80);  // higher, but the same group (0x80)
  gic.SetPpiLevel(0, kVtimer, true);
  ASSERT_EQ(Ack(gic, 0), kVtimer);
  EXPECT_EQ(Cr(gic, 0, gicc::kRpr), 0x80U);  // the group priority
  gic.SetPpiLevel(0, kPtimer, true);
  EXPECT_FALSE(gic.IrqLine(0));
  SetPriority(gic, 0, kPtimer, 0x60);  // group 0x60: preempts
  EXPECT_TRUE(gic.IrqLine(0));
}

TEST(UserGic, PpisAreBankedPerCpu) {
  UserGic gic = Make(2);
  Bringup(gic);
  EnableIrq(gic, 0, kVtimer);
  EnableIrq(gic, 1, kVtimer);
  gic.SetPpiLevel(1, kVtimer, true);
  EXPECT_FALSE(gic.IrqLine(0));
  EXPECT_TRUE(gic.IrqLine(1));
  EXPECT_EQ(gic.IrqLines(), 0x2U);
  EXPECT_EQ(Dr(gic, 0, gicd::kIspendr), 0U);
  EXPECT_EQ(Dr(gic, 1, gicd::kIspendr), Bit(kVtimer));
  EXPECT_EQ(Ack(gic, 0), kSpurious);
  EXPECT_EQ(Ack(gic, 1), kVtimer);
  EXPECT_FALSE(gic.IsActive(0, kVtimer));
  EXPECT_TRUE(gic.IsActive(1, kVtimer));
  // Enables and priorities are banked too.
  Dw(gic, 0, gicd::kIcenabler, Bit(kVtimer));
  EXPECT_EQ(Dr(gic, 0, gicd::kIsenabler), 0U);
  EXPECT_EQ(Dr(gic, 1, gicd::kIsenabler), Bit(kVtimer));
  SetPriority(gic, 1, kVtimer, 0x10);
  EXPECT_EQ(gic.DistRead(0, gicd::kIpriorityr + kVtimer, 1), 0xA0U);
  EXPECT_EQ(gic.DistRead(1, gicd::kIpriorityr + kVtimer, 1), 0x10U);
}

TEST(UserGic, SpisGoToTheCpusInItargetsr) {
  UserGic gic = Make(4, 64);
  Bringup(gic);
  constexpr unsigned kSpi = 40;
  EnableIrq(gic, 0, kSpi);
  EXPECT_EQ(Dr(gic, 3, gicd::kIsenabler + 4), Bit(kSpi));  // SPI enables are global
  gic.SetSpiLevel(kSpi, true);
  EXPECT_EQ(gic.IrqLines(), 0U);  // no target yet
  bool known = false;
  gic.DistWrite(0, gicd::kItargetsr + kSpi, 0xF4, 1, &known);  // CPU 2, plus absent 4..7
  EXPECT_TRUE(known);
  EXPECT_EQ(gic.DistRead(1, gicd::kItargetsr + kSpi, 1), 0x04U);
  EXPECT_EQ(gic.IrqLines(), 0x4U);
  gic.DistWrite(0, gicd::kItargetsr + kSpi, 0x0A, 1);  // CPUs 1 and 3
  EXPECT_EQ(gic.IrqLines(), 0xAU);
  // 1-of-N: once CPU 3 takes it, CPU 1 no longer sees it.
  const std::uint32_t iar = Ack(gic, 3);
  EXPECT_EQ(iar, kSpi);
  EXPECT_EQ(gic.IrqLines(), 0U);
  gic.SetSpiLevel(kSpi, false);
  Eoi(gic, 3, iar);
  EXPECT_EQ(gic.IrqLines(), 0U);
  // SGI/PPI target bytes are read-only.
  gic.DistWrite(2, gicd::kItargetsr + kVtimer, 0xFF, 1);
  EXPECT_EQ(gic.DistRead(2, gicd::kItargetsr + kVtimer, 1), 0x04U);
}

TEST(UserGic, UniprocessorSpisAlwaysTargetCpu0) {
  UserGic gic = Make(1, 64);
  Bringup(gic);
  constexpr unsigned kSpi = 33;
  EnableIrq(gic, 0, kSpi);
  gic.DistWrite(0, gicd::kItargetsr + kSpi, 0x00, 1);
  EXPECT_EQ(gic.DistRead(0, gicd::kItargetsr + kSpi, 1), 0x01U);
  gic.SetSpiLevel(kSpi, true);
  EXPECT_TRUE(gic.IrqLine(0));
  EXPECT_EQ(Ack(gic, 0), kSpi);
}

TEST(UserGic, SgirDeliversToTargetListWithSourceInIar) {
  UserGic gic = Make(4, 64);
  Bringup(gic);
  for (unsigned c = 0; c < 4; ++c) EnableIrq(gic, c, 5);
  // CPU 2 sends SGI 5 to CPUs 0 and 3.
  Dw(gic, 2, gicd::kSgir, (0U << 24) | (0x09U << 16) | 5);
  EXPECT_EQ(gic.IrqLines(), 0x9U);
  EXPECT_EQ(Dr(gic, 0, gicd::kIspendr), Bit(5));
  EXPECT_EQ(gic.DistRead(0, gicd::kSpendsgir + 5, 1), 0x04U);  // source CPU 2
  EXPECT_EQ(Cr(gic, 3, gicc::kHppir), 5U | (2U << 10));
  const std::uint32_t iar = Ack(gic, 3);
  EXPECT_EQ(iar, 5U | (2U << 10));
  EXPECT_EQ(iar & 0x3FF, 5U);
  EXPECT_EQ((iar >> 10) & 0x7, 2U);
  EXPECT_TRUE(gic.IsActive(3, 5));
  EXPECT_FALSE(gic.IsPending(3, 5));
  Eoi(gic, 3, iar);
  EXPECT_FALSE(gic.IsActive(3, 5));
  EXPECT_EQ(gic.IrqLines(), 0x1U);
  EXPECT_EQ(Dr(gic, 2, gicd::kSgir), 0U);  // write-only
}

TEST(UserGic, SgirFiltersOthersAndSelf) {
  UserGic gic = Make(3, 64);
  Bringup(gic);
  for (unsigned c = 0; c < 3; ++c) EnableIrq(gic, c, 1);
  Dw(gic, 1, gicd::kSgir, (1U << 24) | (0xFFU << 16) | 1);  // all but self; list ignored
  EXPECT_EQ(gic.IrqLines(), 0x5U);
  UserGic self = Make(3, 64);
  Bringup(self);
  for (unsigned c = 0; c < 3; ++c) EnableIrq(self, c, 1);
  Dw(self, 2, gicd::kSgir, (2U << 24) | 1);
  EXPECT_EQ(self.IrqLines(), 0x4U);
  EXPECT_EQ(Ack(self, 2), 1U | (2U << 10));
  UserGic reserved = Make(3, 64);
  Bringup(reserved);
  for (unsigned c = 0; c < 3; ++c) EnableIrq(reserved, c, 1);
  Dw(reserved, 0, gicd::kSgir, (3U << 24) | (0x7U << 16) | 1);
  EXPECT_EQ(reserved.IrqLines(), 0U);
}

TEST(UserGic, SgiFromTwoSourcesIsTakenOneSourceAtATime) {
  UserGic gic = Make(3, 64);
  Bringup(gic);
  EnableIrq(gic, 0, 3);
  Dw(gic, 2, gicd::kSgir, (1U << 16) | 3);
  Dw(gic, 1, gicd::kSgir, (1U << 16) | 3);
  EXPECT_EQ(gic.DistRead(0, gicd::kSpendsgir + 3, 1), 0x06U);
  const std::uint32_t first = Ack(gic, 0);
  EXPECT_EQ(first, 3U | (1U << 10));  // lowest source first
  EXPECT_TRUE(gic.IsPending(0, 3));   // CPU 2's request is still pending
  EXPECT_FALSE(gic.IrqLine(0));       // but the SGI is active
  Eoi(gic, 0, first);
  EXPECT_TRUE(gic.IrqLine(0));
  const std::uint32_t second = Ack(gic, 0);
  EXPECT_EQ(second, 3U | (2U << 10));
  Eoi(gic, 0, second);
  EXPECT_FALSE(gic.IrqLine(0));
  EXPECT_FALSE(gic.IsPending(0, 3));
}

TEST(UserGic, SgiPendingSetAndClearRegisters) {
  UserGic gic = Make(2, 64);
  Bringup(gic);
  EnableIrq(gic, 1, 7);
  bool known = false;
  gic.DistWrite(1, gicd::kSpendsgir + 7, 0xFF, 1, &known);  // absent sources are WI
  EXPECT_TRUE(known);
  EXPECT_EQ(gic.DistRead(1, gicd::kSpendsgir + 4, 4), 0x03U << 24);
  EXPECT_EQ(gic.DistRead(1, gicd::kCpendsgir + 4, 4), 0x03U << 24);
  EXPECT_EQ(gic.DistRead(0, gicd::kSpendsgir + 4, 4), 0U);  // banked per target
  EXPECT_TRUE(gic.IrqLine(1));
  // GICD_ICPENDR0 ignores SGI bits; CPENDSGIR clears them per source.
  Dw(gic, 1, gicd::kIcpendr, 0xFFFF);
  EXPECT_TRUE(gic.IsPending(1, 7));
  gic.DistWrite(1, gicd::kCpendsgir + 7, 0x01, 1);
  EXPECT_EQ(gic.DistRead(1, gicd::kSpendsgir + 7, 1), 0x02U);
  gic.DistWrite(1, gicd::kCpendsgir + 4, 0xFF000000U, 4);
  EXPECT_FALSE(gic.IsPending(1, 7));
  EXPECT_FALSE(gic.IrqLine(1));
  // ... and GICD_ISPENDR0 cannot set them either.
  Dw(gic, 1, gicd::kIspendr, Bit(7));
  EXPECT_FALSE(gic.IsPending(1, 7));
}

TEST(UserGic, IpriorityrByteHalfwordAndWordAccess) {
  UserGic gic = Make(1, 64);
  bool known = false;
  gic.DistWrite(0, gicd::kIpriorityr + 40, 0x12345678, 4, &known);
  EXPECT_TRUE(known);
  // 5 implemented bits: the low 3 bits of every byte read as zero.
  EXPECT_EQ(gic.DistRead(0, gicd::kIpriorityr + 40, 4, &known), 0x10305078U);
  EXPECT_TRUE(known);
  EXPECT_EQ(gic.DistRead(0, gicd::kIpriorityr + 41, 1, &known), 0x50U);
  EXPECT_TRUE(known);
  EXPECT_EQ(gic.DistRead(0, gicd::kIpriorityr + 42, 2, &known), 0x1030U);
  EXPECT_TRUE(known);
  gic.DistWrite(0, gicd::kIpriorityr + 43, 0xFF, 1, &known);
  EXPECT_TRUE(known);
  EXPECT_EQ(gic.DistRead(0, gicd::kIpriorityr + 40, 4), 0xF8305078U);
  gic.DistWrite(0, gicd::kIpriorityr + 40, 0xA8C0, 2, &known);
  EXPECT_TRUE(known);
  EXPECT_EQ(gic.DistRead(0, gicd::kIpriorityr + 40, 4), 0xF830A8C0U);
  // Misaligned accesses are refused.
  gic.DistWrite(0, gicd::kIpriorityr + 41, 0xFFFFFFFF, 4, &known);
  EXPECT_FALSE(known);
  EXPECT_EQ(gic.DistRead(0, gicd::kIpriorityr + 41, 2, &known), 0U);
  EXPECT_FALSE(known);
  EXPECT_EQ(gic.DistRead(0, gicd::kIpriorityr + 40, 4), 0xF830A8C0U);
  // Beyond num_irqs: RAZ/WI, but still an architected register.
  gic.DistWrite(0, gicd::kIpriorityr + 100, 0xFFFFFFFF, 4, &known);
  EXPECT_TRUE(known);
  EXPECT_EQ(gic.DistRead(0, gicd::kIpriorityr + 100, 4), 0U);
}

TEST(UserGic, SpuriousWhenNothingPendingAndSpuriousEoiIgnored) {
  UserGic gic = Make();
  Bringup(gic);
  EXPECT_EQ(Ack(gic, 0), kSpurious);
  EXPECT_EQ(Cr(gic, 0, gicc::kHppir), kSpurious);
  Eoi(gic, 0, kSpurious);
  EXPECT_EQ(Cr(gic, 0, gicc::kRpr), 0xFFU);
  EXPECT_EQ(Cr(gic, 0, gicc::kAiar), kSpurious);  // no group 1
  EXPECT_EQ(Cr(gic, 0, gicc::kAhppir), kSpurious);
  EXPECT_FALSE(gic.IrqLine(0));
}

TEST(UserGic, OutOfRangeAccessesAreRazWiAndUnknown) {
  UserGic gic = Make(2, 64);
  Bringup(gic);
  EnableIrq(gic, 0, kVtimer);
  gic.SetPpiLevel(0, kVtimer, true);
  bool known = true;
  struct Access {
    unsigned cpu;
    std::uint64_t offset;
    unsigned size;
  };
  const Access dist_bad[] = {
      {0, 0x00C, 4},                      // reserved
      {0, 0xD00, 4},                      // IMPLEMENTATION DEFINED, not modelled
      {0, 0xF04, 4},                      // reserved
      {0, 0x1000, 4},                     // beyond the region
      {0, ~std::uint64_t{0}, 4},          // far beyond, no overflow
      {0, gicd::kCtlr, 1},                // word-only register, byte access
      {0, gicd::kIsenabler, 2},           // word-only register, halfword access
      {0, gicd::kCtlr, 8},                // no such size
      {0, gicd::kCtlr, 0},                // no such size
      {0, gicd::kCtlr, 3},                // no such size
      {0, gicd::kTyper + 1, 4},           // misaligned
      {0, gicd::kIpriorityr + 0x3FC, 4},  // the reserved word after IPRIORITYR
      {2, gicd::kCtlr, 4},                // no such CPU
      {1000, gicd::kIsenabler, 4},        // no such CPU
  };
  for (const Access& a : dist_bad) {
    EXPECT_EQ(gic.DistRead(a.cpu, a.offset, a.size, &known), 0U) << std::hex << a.offset;
    EXPECT_FALSE(known) << std::hex << a.offset;
    known = true;
    gic.DistWrite(a.cpu, a.offset, 0xFFFFFFFF, a.size, &known);
    EXPECT_FALSE(known) << std::hex << a.offset;
    known = true;
  }
  EXPECT_EQ(Dr(gic, 0, gicd::kCtlr), 1U);  // nothing above changed it
  EXPECT_EQ(Dr(gic, 0, gicd::kIsenabler), Bit(kVtimer));
  const Access cpu_bad[] = {
      {0, 0x002C, 4},     {0, 0x00F8, 4},     {0, 0x1004, 4},
      {0, 0x2000, 4},     {0, gicc::kPmr, 1}, {0, 0x0006, 2},
      {0, gicc::kIar, 8}, {2, gicc::kIar, 4}, {7, gicc::kCtlr, 4},
  };
  for (const Access& a : cpu_bad) {
    EXPECT_EQ(gic.CpuRead(a.cpu, a.offset, a.size, &known), 0U) << std::hex << a.offset;
    EXPECT_FALSE(known) << std::hex << a.offset;
    known = true;
    gic.CpuWrite(a.cpu, a.offset, 0xFFFFFFFF, a.size, &known);
    EXPECT_FALSE(known) << std::hex << a.offset;
    known = true;
  }
  EXPECT_EQ(Cr(gic, 0, gicc::kPmr), 0xF0U);
  EXPECT_TRUE(gic.IrqLine(0));  // a refused 1-byte IAR read did not acknowledge
  EXPECT_FALSE(gic.IrqLine(2));
  EXPECT_FALSE(gic.IsPending(5, kVtimer));
  EXPECT_EQ(gic.RunningPriority(9), 0xFFU);
  // Calls without `known` are fine too.
  EXPECT_EQ(gic.DistRead(0, 0x00C, 4), 0U);
  gic.CpuWrite(0, 0x3000, 1, 4);
}

TEST(UserGic, InputsOutOfRangeAreIgnored) {
  UserGic gic = Make(1, 64);
  Bringup(gic);
  Dw(gic, 0, gicd::kIsenabler, 0xFFFFFFFF);
  Dw(gic, 0, gicd::kIsenabler + 4, 0xFFFFFFFF);
  Dw(gic, 0, gicd::kIsenabler + 8, 0xFFFFFFFF);  // INTIDs 64..95 do not exist
  EXPECT_EQ(Dr(gic, 0, gicd::kIsenabler + 8), 0U);
  EXPECT_EQ(Dr(gic, 0, gicd::kIsenabler + 124), 0U);
  gic.SetPpiLevel(1, kVtimer, true);  // no CPU 1
  gic.SetPpiLevel(0, 5, true);        // an SGI has no line
  gic.SetPpiLevel(0, 32, true);       // not a PPI
  gic.SetSpiLevel(kVtimer, true);     // not an SPI
  gic.SetSpiLevel(64, true);          // beyond num_irqs
  gic.SetSpiLevel(5000, true);
  EXPECT_FALSE(gic.IrqLine(0));
  EXPECT_FALSE(gic.IsPending(0, 32));
  EXPECT_FALSE(gic.IsPending(0, 64));
  // ICFGR for SGIs and PPIs is read-only, and reserved bits of SPIs are zero.
  Dw(gic, 0, gicd::kIcfgr, 0);
  Dw(gic, 0, gicd::kIcfgr + 4, 0xFFFFFFFF);
  Dw(gic, 0, gicd::kIcfgr + 8, 0xFFFFFFFF);
  Dw(gic, 0, gicd::kIcfgr + 16, 0xFFFFFFFF);  // INTIDs 64..79 do not exist
  EXPECT_EQ(Dr(gic, 0, gicd::kIcfgr), 0xAAAAAAAAU);
  EXPECT_EQ(Dr(gic, 0, gicd::kIcfgr + 4), 0U);
  EXPECT_EQ(Dr(gic, 0, gicd::kIcfgr + 8), 0xAAAAAAAAU);
  EXPECT_EQ(Dr(gic, 0, gicd::kIcfgr + 16), 0U);
  // Read-only registers accept and ignore writes.
  Dw(gic, 0, gicd::kTyper, 0);
  Dw(gic, 0, gicd::kIidr, 0);
  Cw(gic, 0, gicc::kIidr, 0);
  Cw(gic, 0, gicc::kRpr, 0);
  Dw(gic, 0, gicd::kIgroupr, 0xFFFFFFFF);
  EXPECT_EQ(Dr(gic, 0, gicd::kTyper), 1U);
  EXPECT_EQ(Dr(gic, 0, gicd::kIidr), UserGic::kDistIidr);
  EXPECT_EQ(Cr(gic, 0, gicc::kIidr), UserGic::kCpuIidr);
  EXPECT_EQ(Dr(gic, 0, gicd::kIgroupr), 0U);
}

TEST(UserGic, EdgeTriggeredSpiLatchesRisingEdges) {
  UserGic gic = Make(1, 64);
  Bringup(gic);
  constexpr unsigned kSpi = 48;
  EnableIrq(gic, 0, kSpi);
  Dw(gic, 0, Word(gicd::kIcfgr, kSpi * 2), 2U << ((kSpi % 16) * 2));
  EXPECT_EQ(Dr(gic, 0, gicd::kIcfgr + 12), 2U);
  gic.SetSpiLevel(kSpi, true);
  gic.SetSpiLevel(kSpi, false);
  EXPECT_TRUE(gic.IsPending(0, kSpi));  // the edge is remembered
  const std::uint32_t iar = Ack(gic, 0);
  EXPECT_EQ(iar, kSpi);
  EXPECT_FALSE(gic.IsPending(0, kSpi));
  gic.SetSpiLevel(kSpi, true);  // a new edge while active
  EXPECT_TRUE(gic.IsPending(0, kSpi));
  EXPECT_FALSE(gic.IrqLine(0));
  Eoi(gic, 0, iar);
  EXPECT_TRUE(gic.IrqLine(0));
  EXPECT_EQ(Ack(gic, 0), kSpi);
  Eoi(gic, 0, kSpi);
  // Holding the line high is not a new edge.
  gic.SetSpiLevel(kSpi, true);
  EXPECT_FALSE(gic.IrqLine(0));
}

TEST(UserGic, LevelSpiFollowsItsLine) {
  UserGic gic = Make(1, 96);
  Bringup(gic);
  constexpr unsigned kSpi = 95;
  EnableIrq(gic, 0, kSpi);
  gic.SetSpiLevel(kSpi, true);
  EXPECT_EQ(Dr(gic, 0, gicd::kIspendr + 8), Bit(kSpi));
  const std::uint32_t iar = Ack(gic, 0);
  EXPECT_EQ(iar, kSpi);
  Eoi(gic, 0, iar);
  EXPECT_TRUE(gic.IrqLine(0));  // still high
  gic.SetSpiLevel(kSpi, false);
  EXPECT_FALSE(gic.IrqLine(0));
}

TEST(UserGic, EoiModeSplitsPriorityDropAndDeactivation) {
  UserGic gic = Make();
  Bringup(gic);
  Cw(gic, 0, gicc::kCtlr, 1U | (1U << 9));
  EXPECT_EQ(Cr(gic, 0, gicc::kCtlr), 1U | (1U << 9));
  EnableIrq(gic, 0, kVtimer);
  gic.SetPpiLevel(0, kVtimer, true);
  const std::uint32_t iar = Ack(gic, 0);
  ASSERT_EQ(iar, kVtimer);
  Eoi(gic, 0, iar);
  EXPECT_EQ(Cr(gic, 0, gicc::kRpr), 0xFFU);  // priority dropped
  EXPECT_TRUE(gic.IsActive(0, kVtimer));     // still active
  EXPECT_FALSE(gic.IrqLine(0));
  Cw(gic, 0, gicc::kDir, iar);
  EXPECT_FALSE(gic.IsActive(0, kVtimer));
  EXPECT_TRUE(gic.IrqLine(0));
  // With EOImode 0, GICC_DIR does nothing.
  Cw(gic, 0, gicc::kCtlr, 1);
  ASSERT_EQ(Ack(gic, 0), kVtimer);
  Cw(gic, 0, gicc::kDir, kVtimer);
  EXPECT_TRUE(gic.IsActive(0, kVtimer));
  // FIQEn is RAZ/WI: there is only an IRQ line.
  Cw(gic, 0, gicc::kCtlr, 0xFFFFFFFF);
  EXPECT_EQ(Cr(gic, 0, gicc::kCtlr), 0x7F7U);
}

TEST(UserGic, ActiveRegistersGateSignalling) {
  UserGic gic = Make();
  Bringup(gic);
  EnableIrq(gic, 0, kVtimer);
  Dw(gic, 0, gicd::kIsactiver, Bit(kVtimer));
  EXPECT_TRUE(gic.IsActive(0, kVtimer));
  gic.SetPpiLevel(0, kVtimer, true);
  EXPECT_FALSE(gic.IrqLine(0));
  Dw(gic, 0, gicd::kIcactiver, Bit(kVtimer));
  EXPECT_EQ(Dr(gic, 0, gicd::kIsactiver), 0U);
  EXPECT_TRUE(gic.IrqLine(0));
}

TEST(UserGic, ResetKeepsInputLinesAndClearsTheRest) {
  UserGic gic = Make(2, 64);
  Bringup(gic);
  EnableIrq(gic, 1, kVtimer);
  gic.SetPpiLevel(1, kVtimer, true);
  ASSERT_EQ(Ack(gic, 1), kVtimer);
  gic.Reset();
  EXPECT_FALSE(gic.IsActive(1, kVtimer));
  EXPECT_EQ(gic.RunningPriority(1), 0xFFU);
  EXPECT_EQ(Dr(gic, 1, gicd::kIsenabler), 0U);
  EXPECT_EQ(Cr(gic, 1, gicc::kPmr), 0U);
  EXPECT_TRUE(gic.IsPending(1, kVtimer));  // the timer still drives its line
  EXPECT_FALSE(gic.IrqLine(1));
  Bringup(gic);
  EnableIrq(gic, 1, kVtimer);
  EXPECT_TRUE(gic.IrqLine(1));
}

TEST(UserGic, GuestLoopAckReprogramEoiNeverStormsOrLosesAnExpiry) {
  // A guest handling a periodic timer: every expiry is taken exactly once.
  UserGic gic = Make();
  Bringup(gic);
  EnableIrq(gic, 0, kVtimer);
  int taken = 0;
  for (int expiry = 0; expiry < 100; ++expiry) {
    gic.SetPpiLevel(0, kVtimer, true);
    ASSERT_TRUE(gic.IrqLine(0));
    const std::uint32_t iar = Ack(gic, 0);
    ASSERT_EQ(iar, kVtimer);
    ++taken;
    ASSERT_FALSE(gic.IrqLine(0));
    gic.SetPpiLevel(0, kVtimer, false);  // the handler reprograms CVAL
    Eoi(gic, 0, iar);
    ASSERT_FALSE(gic.IrqLine(0));
  }
  EXPECT_EQ(taken, 100);
}

// Checks that hold in every state: the IRQ line predicts GICC_IAR, the
// running priority matches the active priorities, and no CPU beyond
// num_cpus is ever signalled.
void CheckInvariants(UserGic& gic) {
  for (unsigned c = 0; c < gic.num_cpus(); ++c) {
    const std::uint32_t apr = gic.CpuRead(c, gicc::kApr, 4);
    const std::uint8_t rpr = gic.RunningPriority(c);
    ASSERT_EQ(apr == 0, rpr == 0xFF);
    if (apr != 0) {
      ASSERT_EQ(static_cast<unsigned>(std::countr_zero(apr)), rpr >> 3U);
    }
  }
  ASSERT_EQ(gic.IrqLines() >> gic.num_cpus(), 0U);
}

TEST(UserGic, RandomGuestAccessesNeverCrashAndStayConsistent) {
  std::mt19937_64 rng(0x76'74'69'6d'65);  // fixed seed: deterministic
  const auto pick = [&](std::uint64_t n) { return rng() % n; };
  const std::uint64_t dist_hot[] = {
      gicd::kCtlr,      gicd::kIsenabler, gicd::kIcenabler,  gicd::kIspendr,   gicd::kIcpendr,
      gicd::kIsactiver, gicd::kIcactiver, gicd::kIpriorityr, gicd::kItargetsr, gicd::kIcfgr,
      gicd::kSgir,      gicd::kCpendsgir, gicd::kSpendsgir,  gicd::kIgroupr,   gicd::kPidr4};
  const std::uint64_t cpu_hot[] = {gicc::kCtlr, gicc::kPmr,  gicc::kBpr,   gicc::kIar,
                                   gicc::kEoir, gicc::kRpr,  gicc::kHppir, gicc::kDir,
                                   gicc::kApr,  gicc::kAiar, gicc::kAeoir, gicc::kIidr};
  const unsigned sizes[] = {0, 1, 2, 3, 4, 4, 4, 4, 4, 4, 8};
  for (const auto& [cpus, irqs] : {std::pair{1U, 32U}, {2U, 64U}, {8U, 1020U}, {3U, 96U}}) {
    UserGic gic = Make(cpus, irqs);
    // Start from a running system so that the signalling paths are reached;
    // the random writes then disable and reconfigure it at will.
    Bringup(gic);
    for (unsigned c = 0; c < cpus; ++c) Dw(gic, c, gicd::kIsenabler, 0xFFFFFFFF);
    for (unsigned w = 1; w < irqs / 32; ++w) Dw(gic, 0, gicd::kIsenabler + 4 * w, 0xFFFFFFFF);
    for (unsigned i = 32; i < irqs; ++i) gic.DistWrite(0, gicd::kItargetsr + i, 0xFF, 1);
    int acks = 0;
    std::vector<std::uint32_t> acked[8];
    for (int step = 0; step < 20000; ++step) {
      if (step % 1000 == 0) {
        // The guest re-initialises now and then, which undoes random
        // disables and masks; what is active stays active.
        Bringup(gic);
        for (unsigned c = 0; c < cpus; ++c) Cw(gic, c, gicc::kPmr, 0xF8);
      }
      const auto cpu = static_cast<unsigned>(pick(cpus + 1));  // sometimes no such CPU
      const unsigned size = sizes[pick(std::size(sizes))];
      const auto value = static_cast<std::uint32_t>(rng());
      bool known = false;
      switch (pick(8)) {
        case 0: {  // distributor, mostly at architected registers
          const std::uint64_t r = pick(10);
          std::uint64_t offset = 0;
          if (r < 7) {
            offset = dist_hot[pick(std::size(dist_hot))] + 4 * pick(32);
          } else if (r < 9) {
            offset = pick(2 * UserGic::kDistSize);
          } else {
            offset = rng();
          }
          if ((value & 1) != 0) {
            (void)gic.DistRead(cpu, offset, size, &known);
          } else {
            gic.DistWrite(cpu, offset, static_cast<std::uint32_t>(rng()), size, &known);
          }
          break;
        }
        case 1: {  // CPU interface
          const std::uint64_t offset = pick(4) != 0
                                           ? cpu_hot[pick(std::size(cpu_hot))]
                                           : (pick(2) != 0 ? pick(2 * UserGic::kCpuSize) : rng());
          if ((value & 1) != 0) {
            (void)gic.CpuRead(cpu, offset, size, &known);
          } else {
            gic.CpuWrite(cpu, offset, static_cast<std::uint32_t>(rng()), size, &known);
          }
          break;
        }
        case 2:
          gic.SetPpiLevel(cpu, static_cast<unsigned>(pick(40)), (value & 1) != 0);
          break;
        case 3:
          gic.SetSpiLevel(static_cast<unsigned>(pick(irqs + 64)), (value & 1) != 0);
          break;
        case 4:  // an SGI from a random CPU
          gic.DistWrite(cpu, gicd::kSgir, value & 0x03FF000F, 4, &known);
          break;
        case 5: {  // the guest's IRQ handler: acknowledge ...
          const bool line = gic.IrqLine(cpu);
          const std::uint32_t iar = gic.CpuRead(cpu, gicc::kIar, 4, &known);
          if (!known) {  // no such CPU: RAZ
            ASSERT_EQ(iar, 0U);
            ASSERT_FALSE(line);
            break;
          }
          // The IRQ line predicts exactly whether an acknowledge succeeds.
          ASSERT_EQ(iar != UserGic::kSpurious, line) << "step " << step;
          if (iar != UserGic::kSpurious) {
            ++acks;
            ASSERT_LT(iar & 0x3FF, irqs);
            ASSERT_TRUE(gic.IsActive(cpu, iar & 0x3FF));
            ASSERT_FALSE(gic.IrqLine(cpu) && gic.CpuRead(cpu, gicc::kHppir, 4) == iar);
            acked[cpu].push_back(iar);
          }
          break;
        }
        case 6:  // ... and end it, mostly in order
          if (cpu < cpus && !acked[cpu].empty()) {
            gic.CpuWrite(cpu, gicc::kEoir, acked[cpu].back(), 4, &known);
            gic.CpuWrite(cpu, gicc::kDir, acked[cpu].back(), 4, &known);
            acked[cpu].pop_back();
          }
          break;
        default:
          CheckInvariants(gic);
          break;
      }
      if (cpu >= cpus) {
        ASSERT_FALSE(known);
      }
    }
    CheckInvariants(gic);
    EXPECT_GT(acks, 100) << cpus << " CPUs, " << irqs << " IRQs";  // the loop reached them
  }
}

}  // namespace
}  // namespace vtime::vmm

namespace vtime::vmm {
namespace {

// A busy controller: two CPUs, an SGI pending from CPU 1, the virtual timer
// acknowledged and still active on CPU 0 (a nested, higher-priority SPI
// acknowledged on top of it), an SPI pending by its line, a level PPI line
// high.
UserGic BusyGic() {
  UserGic gic = Make(2, 64);
  Bringup(gic);
  SetPriority(gic, 0, 40, 0x80);
  for (unsigned spi : {40U, 41U}) {
    bool known = false;
    gic.DistWrite(0, gicd::kItargetsr + spi, 1, 1, &known);  // to CPU 0
    EXPECT_TRUE(known);
  }
  for (unsigned i : {kVtimer, kPtimer, 40U, 41U}) EnableIrq(gic, 0, i);
  EnableIrq(gic, 0, 3);
  EnableIrq(gic, 1, 3);
  gic.SetPpiLevel(0, kVtimer, true);
  EXPECT_EQ(Ack(gic, 0), kVtimer);
  gic.SetSpiLevel(40, true);
  EXPECT_EQ(Ack(gic, 0), 40U);
  gic.SetSpiLevel(41, true);
  gic.SetPpiLevel(1, kPtimer, true);
  Dw(gic, 1, gicd::kSgir, (1U << 16) | 3);  // SGI 3 from CPU 1 to CPU 0
  return gic;
}

TEST(UserGicState, SaveRestoreGivesTheSameControllerAndBehaviour) {
  UserGic a = BusyGic();
  const std::vector<std::uint8_t> bytes = a.Save();
  auto restored = UserGic::Restore(bytes);
  ASSERT_TRUE(restored.has_value()) << restored.error().Message();
  UserGic& b = *restored;
  EXPECT_EQ(b.Save(), bytes);
  for (unsigned cpu = 0; cpu < 2; ++cpu) {
    EXPECT_EQ(b.IrqLine(cpu), a.IrqLine(cpu));
    EXPECT_EQ(b.RunningPriority(cpu), a.RunningPriority(cpu));
    for (unsigned i = 0; i < 64; ++i) {
      EXPECT_EQ(b.IsPending(cpu, i), a.IsPending(cpu, i)) << cpu << "/" << i;
      EXPECT_EQ(b.IsActive(cpu, i), a.IsActive(cpu, i)) << cpu << "/" << i;
    }
  }
  // Both then behave alike: finish the nested SPI, then the timer, and take
  // what is pending next, on each CPU.
  for (UserGic* g : {&a, &b}) {
    Eoi(*g, 0, 40);
    Eoi(*g, 0, kVtimer);
  }
  for (unsigned cpu = 0; cpu < 2; ++cpu) EXPECT_EQ(Ack(b, cpu), Ack(a, cpu));
  EXPECT_EQ(b.Save(), a.Save());
}

TEST(UserGicState, RefusesDamagedOrImpossibleStates) {
  const std::vector<std::uint8_t> good = BusyGic().Save();
  // Every truncation and a flipped byte anywhere: the frame's checksum.
  for (std::size_t n = 0; n < good.size(); n += 7) {
    EXPECT_FALSE(UserGic::Restore(std::span(good).first(n)).has_value()) << n;
  }
  for (std::size_t at = 0; at < good.size(); at += 5) {
    std::vector<std::uint8_t> bad = good;
    bad[at] ^= 0x10;
    EXPECT_FALSE(UserGic::Restore(bad).has_value()) << at;
  }
  // Well-framed but impossible contents.
  const wire::Magic magic = {'V', 'T', 'U', 'G', 'I', 'C', '\0', '\0'};
  auto framed = [&magic](std::uint32_t cpus, std::uint32_t irqs, bool with_acked_out_of_range) {
    wire::Writer w;
    w.U32(cpus);
    w.U32(irqs);
    w.U32(1);
    for (std::uint32_t c = 0; c < cpus; ++c) {
      for (int i = 0; i < 32; ++i) {
        w.U8(0);
        w.U8(0);
        w.U8(0);
      }
      w.Bytes(std::vector<std::uint8_t>(16, 0));
      w.U32(1);
      w.U8(0xF0);
      w.U8(2);
      w.U8(3);
      w.U32(with_acked_out_of_range ? 1 : 0);
      if (with_acked_out_of_range) {
        w.U32(irqs + 5);
        w.U32(0);
        w.U8(0xA0);
      }
    }
    for (std::uint32_t i = 32; i < irqs; ++i) {
      w.U8(0);
      w.U8(0);
      w.U8(0);
    }
    return wire::Frame(magic, 1, w.Take());
  };
  EXPECT_TRUE(UserGic::Restore(framed(1, 64, false)).has_value());
  for (const auto& [bytes, why] : std::vector<std::pair<std::vector<std::uint8_t>, std::string>>{
           {framed(9, 64, false), "num_cpus 9"},
           {framed(1, 40, false), "num_irqs 40"},
           {framed(1, 64, true), "acknowledged INTID 69"}}) {
    auto r = UserGic::Restore(bytes);
    ASSERT_FALSE(r.has_value()) << why;
    EXPECT_NE(r.error().Message().find(why), std::string::npos) << r.error().Message();
  }
}

}  // namespace
}  // namespace vtime::vmm
