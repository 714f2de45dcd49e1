#include "vmm/pl031.h"

#include <gtest/gtest.h>

namespace vtime::vmm {
namespace {

constexpr std::int64_t kNow = 1'764'600'000;  // a wall clock in 2025, in seconds

struct Rtc {
  std::uint32_t Read(std::uint64_t offset, std::int64_t now = kNow) {
    bool known = true;
    const std::uint32_t v = pl031.Read(offset, now, &known);
    EXPECT_TRUE(known) << offset;
    return v;
  }
  void Write(std::uint64_t offset, std::uint32_t value, std::int64_t now = kNow) {
    bool known = true;
    pl031.Write(offset, value, now, &known);
    EXPECT_TRUE(known) << offset;
  }
  Pl031 pl031;
};

TEST(Pl031, DataRegisterReadsTheWallClockItIsGiven) {
  Rtc rtc;
  EXPECT_EQ(rtc.Read(0x000), static_cast<std::uint32_t>(kNow));
  EXPECT_EQ(rtc.Read(0x000, kNow + 7), static_cast<std::uint32_t>(kNow + 7));
  EXPECT_EQ(rtc.Read(0x00C), 1U);  // started
}

TEST(Pl031, ALoadSetsTheCounterWhichThenRunsWithTheWallClock) {
  Rtc rtc;
  rtc.Write(0x008, 1000);
  EXPECT_EQ(rtc.Read(0x000), 1000U);
  EXPECT_EQ(rtc.Read(0x000, kNow + 60), 1060U);
  EXPECT_EQ(rtc.Read(0x008, kNow + 60), 1000U);  // RTCLR reads back what was written
  EXPECT_EQ(rtc.pl031.Save().offset_s, 1000 - kNow);
  // The data register and RTCCR ignore writes.
  rtc.Write(0x000, 5, kNow + 60);
  rtc.Write(0x00C, 0, kNow + 60);
  EXPECT_EQ(rtc.Read(0x000, kNow + 60), 1060U);
  EXPECT_EQ(rtc.Read(0x00C), 1U);
}

TEST(Pl031, CounterWrapsAt32Bits) {
  Rtc rtc;
  rtc.Write(0x008, 0xFFFFFFFE);
  EXPECT_EQ(rtc.Read(0x000, kNow + 3), 1U);
}

TEST(Pl031, MatchLatchesWhenTheCounterPassesItAndClearsOnIcr) {
  Rtc rtc;
  rtc.Write(0x004, static_cast<std::uint32_t>(kNow + 5));
  EXPECT_EQ(rtc.Read(0x004), static_cast<std::uint32_t>(kNow + 5));
  EXPECT_EQ(rtc.Read(0x014, kNow + 4), 0U);
  EXPECT_EQ(rtc.Read(0x014, kNow + 9), 1U);  // passed between two accesses
  EXPECT_EQ(rtc.Read(0x018, kNow + 9), 0U);  // masked
  EXPECT_FALSE(rtc.pl031.InterruptLine());
  rtc.Write(0x010, 1, kNow + 9);
  EXPECT_EQ(rtc.Read(0x010, kNow + 9), 1U);
  EXPECT_EQ(rtc.Read(0x018, kNow + 9), 1U);
  EXPECT_TRUE(rtc.pl031.InterruptLine());
  rtc.Write(0x01C, 1, kNow + 10);
  EXPECT_EQ(rtc.Read(0x014, kNow + 10), 0U);
  EXPECT_FALSE(rtc.pl031.InterruptLine());
  // It stays clear until the counter comes round to the match again.
  EXPECT_EQ(rtc.Read(0x014, kNow + 1000), 0U);
}

TEST(Pl031, NeitherALoadNorAWallClockSteppedBackFiresTheMatch) {
  Rtc rtc;
  rtc.Write(0x004, 500);
  rtc.Write(0x008, 600);  // jumps over 500: a load, not ticks
  EXPECT_EQ(rtc.Read(0x014), 0U);
  Rtc back;
  back.Write(0x004, static_cast<std::uint32_t>(kNow - 5));
  EXPECT_EQ(back.Read(0x014, kNow - 10), 0U);  // the host's clock went back
  EXPECT_EQ(back.Read(0x014, kNow - 5), 1U);   // and then forward onto the match
}

TEST(Pl031, IdRegistersSayPl031PrimeCell) {
  Rtc rtc;
  std::uint32_t periph = 0, cell = 0;
  for (int i = 0; i < 4; ++i) {
    periph |= rtc.Read(0xFE0 + 4 * static_cast<std::uint64_t>(i)) << (8 * i);
    cell |= rtc.Read(0xFF0 + 4 * static_cast<std::uint64_t>(i)) << (8 * i);
  }
  EXPECT_EQ(periph, 0x00041031U);
  EXPECT_EQ(cell, 0xB105F00DU);
  rtc.Write(0xFE0, 0);  // read only, but a register
  EXPECT_EQ(rtc.Read(0xFE0), 0x31U);
}

TEST(Pl031, AbsentRegistersReadAsZeroIgnoreWritesAndSaySo) {
  Pl031 rtc;
  bool known = true;
  EXPECT_EQ(rtc.Read(0x020, kNow, &known), 0U);
  EXPECT_FALSE(known);
  known = true;
  rtc.Write(0x800, 0xffffffff, kNow, &known);
  EXPECT_FALSE(known);
  known = true;
  EXPECT_EQ(rtc.Read(0xFE1, kNow, &known), 0U);  // unaligned
  EXPECT_FALSE(known);
  EXPECT_TRUE(rtc.Save().IsReset());
}

TEST(Pl031, SavedStateCarriesTheGuestsClockToAnotherHostsWallClock) {
  Rtc a;
  a.Write(0x008, 1000);
  a.Write(0x004, 2000);
  a.Write(0x010, 1);
  const Pl031State saved = a.pl031.Save();
  EXPECT_FALSE(saved.IsReset());
  Rtc b;
  b.pl031.Restore(saved);
  // 30 s later by the destination's wall clock: the guest's clock ran on.
  EXPECT_EQ(b.Read(0x000, kNow + 30), 1030U);
  EXPECT_EQ(b.Read(0x004, kNow + 30), 2000U);
  EXPECT_EQ(b.Read(0x010, kNow + 30), 1U);
}

}  // namespace
}  // namespace vtime::vmm
