// The PL011's receive side: the FIFO, its flags and interrupts as Linux's
// driver uses them, and that a byte the guest cannot take is refused (kept
// by the caller), never dropped.
#include "vmm/pl011.h"

#include <gtest/gtest.h>

#include <string>

namespace vtime::vmm {
namespace {

constexpr std::uint64_t kDr = 0x000, kFr = 0x018, kLcrH = 0x02c, kCr = 0x030, kIfls = 0x034,
                        kImsc = 0x038, kRis = 0x03c, kMis = 0x040, kIcr = 0x044;
constexpr std::uint32_t kRxfe = 1U << 4, kRxff = 1U << 6, kTxfe = 1U << 7;

struct Uart {
  std::string out;
  Pl011 uart{[this](char c) { out.push_back(c); }};
  // What Linux's driver does at start-up: FIFO on, enable, RX and RT
  // interrupts unmasked.
  void Open() {
    uart.Write(kLcrH, 1U << 4 | 3U << 5);
    uart.Write(kCr, 0x301);
    uart.Write(kImsc, Pl011::kRxBit | Pl011::kRtBit);
  }
};

TEST(Pl011, TransmitsEveryByteAndSaysTheFifoIsEmpty) {
  Uart u;
  for (char c : std::string("hi\n")) u.uart.Write(kDr, static_cast<std::uint8_t>(c));
  EXPECT_EQ(u.out, "hi\n");
  EXPECT_EQ(u.uart.Read(kFr) & kTxfe, kTxfe);
  EXPECT_EQ(u.uart.Read(kFr) & kRxfe, kRxfe);
}

TEST(Pl011, RefusesInputUntilTheGuestEnablesTheUart) {
  Uart u;
  EXPECT_FALSE(u.uart.CanReceive());  // UARTEN is clear at reset
  EXPECT_FALSE(u.uart.Receive('x'));
  EXPECT_EQ(u.uart.Read(kFr) & kRxfe, kRxfe);
  u.uart.Write(kCr, 0x101);  // UARTEN | TXE, receiver off
  EXPECT_FALSE(u.uart.Receive('x'));
  u.Open();
  EXPECT_TRUE(u.uart.Receive('x'));
}

TEST(Pl011, ReceivesInOrderThroughA32ByteFifoAndRefusesWhenFull) {
  Uart u;
  u.Open();
  for (int i = 0; i < 32; ++i) ASSERT_TRUE(u.uart.Receive(static_cast<std::uint8_t>('a' + i % 26)));
  EXPECT_EQ(u.uart.Read(kFr) & kRxff, kRxff);
  EXPECT_FALSE(u.uart.CanReceive());
  EXPECT_FALSE(u.uart.Receive('!'));  // kept by the caller, not lost
  for (int i = 0; i < 32; ++i) {
    ASSERT_EQ(u.uart.Read(kFr) & kRxfe, 0U) << i;
    EXPECT_EQ(u.uart.Read(kDr), static_cast<std::uint32_t>('a' + i % 26)) << i;
  }
  EXPECT_EQ(u.uart.Read(kFr) & kRxfe, kRxfe);
  EXPECT_TRUE(u.uart.Receive('!'));
  EXPECT_EQ(u.uart.Read(kDr), static_cast<std::uint32_t>('!'));
}

TEST(Pl011, WithoutTheFifoOneByteIsHeld) {
  Uart u;
  u.uart.Write(kCr, 0x301);
  EXPECT_TRUE(u.uart.Receive('1'));
  EXPECT_FALSE(u.uart.Receive('2'));
  EXPECT_EQ(u.uart.Read(kFr) & kRxff, kRxff);
  EXPECT_EQ(u.uart.Read(kDr), static_cast<std::uint32_t>('1'));
  EXPECT_TRUE(u.uart.Receive('2'));
}

TEST(Pl011, TimeoutInterruptOnAnyByteRxInterruptAtTheTriggerLevel) {
  Uart u;
  u.Open();
  EXPECT_FALSE(u.uart.Interrupt());
  ASSERT_TRUE(u.uart.Receive('a'));
  // One byte: below the half-full trigger, so only the receive timeout.
  EXPECT_EQ(u.uart.Read(kRis) & (Pl011::kRxBit | Pl011::kRtBit), Pl011::kRtBit);
  EXPECT_TRUE(u.uart.Interrupt());
  for (int i = 1; i < 16; ++i) ASSERT_TRUE(u.uart.Receive('b'));
  EXPECT_EQ(u.uart.Read(kRis) & Pl011::kRxBit, Pl011::kRxBit);
  // Reading below the trigger clears RX; emptying the FIFO clears RT.
  u.uart.Read(kDr);
  EXPECT_EQ(u.uart.Read(kRis) & Pl011::kRxBit, 0U);
  while ((u.uart.Read(kFr) & kRxfe) == 0) u.uart.Read(kDr);
  EXPECT_EQ(u.uart.Read(kRis) & Pl011::kRtBit, 0U);
  EXPECT_FALSE(u.uart.Interrupt());
}

TEST(Pl011, IcrClearsTheTimeoutAndImscMasksTheLine) {
  Uart u;
  u.Open();
  ASSERT_TRUE(u.uart.Receive('a'));
  EXPECT_TRUE(u.uart.Interrupt());
  u.uart.Write(kIcr, Pl011::kRtBit);
  EXPECT_FALSE(u.uart.Interrupt());
  EXPECT_EQ(u.uart.Read(kDr), static_cast<std::uint32_t>('a'));
  ASSERT_TRUE(u.uart.Receive('b'));
  u.uart.Write(kImsc, 0);
  EXPECT_EQ(u.uart.Read(kRis) & Pl011::kRtBit, Pl011::kRtBit);
  EXPECT_EQ(u.uart.Read(kMis), 0U);
  EXPECT_FALSE(u.uart.Interrupt());
}

TEST(Pl011, TheTriggerLevelFollowsIfls) {
  Uart u;
  u.Open();
  u.uart.Write(kIfls, 0 << 3);  // RX at 1/8 full: 4 bytes
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(u.uart.Receive('x'));
  EXPECT_EQ(u.uart.Read(kRis) & Pl011::kRxBit, 0U);
  ASSERT_TRUE(u.uart.Receive('x'));
  EXPECT_EQ(u.uart.Read(kRis) & Pl011::kRxBit, Pl011::kRxBit);
  EXPECT_EQ(u.uart.Read(kIfls), 0U);
}

TEST(Pl011, TransmitInterruptOncePerWriteUntilCleared) {
  Uart u;
  u.Open();
  u.uart.Write(kImsc, Pl011::kTxBit);
  EXPECT_FALSE(u.uart.Interrupt());
  u.uart.Write(kDr, 'z');
  EXPECT_TRUE(u.uart.Interrupt());
  u.uart.Write(kIcr, Pl011::kTxBit);
  EXPECT_FALSE(u.uart.Interrupt());
}

}  // namespace
}  // namespace vtime::vmm
