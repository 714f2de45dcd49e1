// The virtio console as a driver sees it: the transport's identification
// and feature negotiation, transmit and receive through split virtqueues,
// interrupts and their suppression, and that rings a guest corrupts put the
// device in DEVICE_NEEDS_RESET without reading or writing outside guest RAM
// and without losing a received byte.
#include "vmm/virtio_console.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace vtime::vmm {
namespace {

constexpr std::uint64_t kBase = 0x40000000;
constexpr std::uint32_t kNum = 8;
// Where the fake driver puts things, as offsets into its RAM.
constexpr std::uint64_t kDesc[2] = {0x1000, 0x2000};
constexpr std::uint64_t kAvail[2] = {0x1800, 0x2800};
constexpr std::uint64_t kUsed[2] = {0x1c00, 0x2c00};
constexpr std::uint64_t kBuffers = 0x4000;

// A driver doing what Linux's virtio-mmio and virtio-console drivers do.
struct Driver {
  std::vector<std::uint8_t> ram = std::vector<std::uint8_t>(0x10000);
  std::string out;
  // Every range of RAM the device said it wrote (offset, length).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> wrote;
  VirtioConsole dev{GuestRam{kBase, ram,
                             [this](std::uint64_t off, std::uint64_t len) {
                               wrote.emplace_back(off, len);
                             }},
                    [this](std::span<const std::uint8_t> b) { out.append(b.begin(), b.end()); }};
  // True when the device reported a write covering [off, off + len).
  bool Reported(std::uint64_t off, std::uint64_t len) const {
    for (const auto& [o, l] : wrote) {
      if (o <= off && off + len <= o + l) return true;
    }
    return false;
  }
  std::uint16_t avail_idx[2] = {0, 0};
  std::uint16_t next_desc[2] = {0, 0};

  std::uint32_t R(std::uint64_t off) { return dev.Read(off, 4); }
  void W(std::uint64_t off, std::uint32_t v) { dev.Write(off, v, 4); }
  template <typename T>
  void Put(std::uint64_t off, T v) {
    std::memcpy(ram.data() + off, &v, sizeof v);
  }
  template <typename T>
  T Get(std::uint64_t off) const {
    T v;
    std::memcpy(&v, ram.data() + off, sizeof v);
    return v;
  }

  void Open(std::uint64_t features_high = 1) {
    W(0x070, 0);
    W(0x070, 1);
    W(0x070, 3);
    W(0x024, 1);
    W(0x020, static_cast<std::uint32_t>(features_high));
    W(0x024, 0);
    W(0x020, 0);
    W(0x070, 3 | 8);
    for (unsigned q = 0; q < 2; ++q) {
      W(0x030, q);
      W(0x038, kNum);
      W(0x080, static_cast<std::uint32_t>(kBase + kDesc[q]));
      W(0x084, 0);
      W(0x090, static_cast<std::uint32_t>(kBase + kAvail[q]));
      W(0x094, 0);
      W(0x0a0, static_cast<std::uint32_t>(kBase + kUsed[q]));
      W(0x0a4, 0);
      W(0x044, 1);
    }
    W(0x070, 3 | 8 | 4);
  }
  // One descriptor per buffer, chained; returns the head.
  std::uint16_t Chain(unsigned q, const std::vector<std::pair<std::uint64_t, std::uint32_t>>& bufs,
                      bool writable) {
    const std::uint16_t head = next_desc[q];
    for (std::size_t i = 0; i < bufs.size(); ++i) {
      const std::uint16_t d = next_desc[q]++ % kNum;
      const std::uint64_t at = kDesc[q] + 16ULL * d;
      Put<std::uint64_t>(at, kBase + bufs[i].first);
      Put<std::uint32_t>(at + 8, bufs[i].second);
      const bool more = i + 1 < bufs.size();
      Put<std::uint16_t>(at + 12, static_cast<std::uint16_t>((more ? 1 : 0) | (writable ? 2 : 0)));
      Put<std::uint16_t>(at + 14, static_cast<std::uint16_t>((d + 1) % kNum));
    }
    return static_cast<std::uint16_t>(head % kNum);
  }
  void Offer(unsigned q, std::uint16_t head) {
    Put<std::uint16_t>(kAvail[q] + 4 + 2 * (avail_idx[q] % kNum), head);
    Put<std::uint16_t>(kAvail[q] + 2, ++avail_idx[q]);
  }
  void Send(const std::string& text) {
    std::memcpy(ram.data() + kBuffers, text.data(), text.size());
    Offer(1, Chain(1, {{kBuffers, static_cast<std::uint32_t>(text.size())}}, false));
    W(0x050, 1);
  }
  std::uint16_t UsedIdx(unsigned q) const { return Get<std::uint16_t>(kUsed[q] + 2); }
};

TEST(VirtioConsole, IdentifiesAsAVersion2ConsoleOfferingVersion1Only) {
  Driver d;
  EXPECT_EQ(d.R(0x000), 0x74726976U);
  EXPECT_EQ(d.R(0x004), 2U);
  EXPECT_EQ(d.R(0x008), 3U);
  d.W(0x014, 0);
  EXPECT_EQ(d.R(0x010), 0U);
  d.W(0x014, 1);
  EXPECT_EQ(d.R(0x010), 1U);  // bit 32: VIRTIO_F_VERSION_1
  d.W(0x030, 0);
  EXPECT_EQ(d.R(0x034), VirtioConsole::kQueueNumMax);
  d.W(0x030, 2);
  EXPECT_EQ(d.R(0x034), 0U);  // no third queue
}

TEST(VirtioConsole, FeaturesOkOnlySticksForOfferedFeaturesWithVersion1) {
  Driver legacy;
  legacy.Open(/*features_high=*/0);
  EXPECT_EQ(legacy.R(0x070) & VirtioConsole::kFeaturesOk, 0U);
  Driver greedy;
  greedy.Open(/*features_high=*/1 | 2);  // bit 33 is not offered
  EXPECT_EQ(greedy.R(0x070) & VirtioConsole::kFeaturesOk, 0U);
  Driver good;
  good.Open();
  EXPECT_NE(good.R(0x070) & VirtioConsole::kFeaturesOk, 0U);
  EXPECT_TRUE(good.dev.DriverReady());
}

TEST(VirtioConsole, TransmitsEachChainInOrderAndReturnsItUsed) {
  Driver d;
  d.Open();
  d.Send("Booting Linux");
  std::memcpy(d.ram.data() + kBuffers + 0x100, "ab", 2);
  std::memcpy(d.ram.data() + kBuffers + 0x200, "cd", 2);
  d.Offer(1, d.Chain(1, {{kBuffers + 0x100, 2}, {kBuffers + 0x200, 2}}, false));
  d.W(0x050, 1);
  EXPECT_EQ(d.out, "Booting Linuxabcd");
  EXPECT_EQ(d.UsedIdx(1), 2);
  EXPECT_EQ(d.Get<std::uint32_t>(kUsed[1] + 4), 0U);  // id of the first chain's head
  EXPECT_EQ(d.Get<std::uint32_t>(kUsed[1] + 12), 1U);
  EXPECT_TRUE(d.dev.Interrupt());
  EXPECT_EQ(d.R(0x060), 1U);
  d.W(0x064, 1);
  EXPECT_FALSE(d.dev.Interrupt());
}

TEST(VirtioConsole, HonoursTheDriversRequestForNoInterrupt) {
  Driver d;
  d.Open();
  d.Put<std::uint16_t>(kAvail[1], 1);  // VIRTQ_AVAIL_F_NO_INTERRUPT
  d.Send("quiet");
  EXPECT_EQ(d.out, "quiet");
  EXPECT_EQ(d.UsedIdx(1), 1);
  EXPECT_FALSE(d.dev.Interrupt());
}

TEST(VirtioConsole, NothingMovesBeforeDriverOk) {
  Driver d;
  EXPECT_FALSE(d.dev.CanReceive());
  EXPECT_EQ(d.dev.Receive(std::vector<std::uint8_t>{'x'}), 0U);
  d.W(0x070, 1 | 2 | 8);
  d.Send("early");
  EXPECT_EQ(d.out, "");
}

TEST(VirtioConsole, ReceivesIntoPostedBuffersAndKeepsWhatDoesNotFit) {
  Driver d;
  d.Open();
  EXPECT_FALSE(d.dev.CanReceive());  // no buffer posted yet
  d.Offer(0, d.Chain(0, {{kBuffers, 4}}, true));
  d.Offer(0, d.Chain(0, {{kBuffers + 0x10, 2}, {kBuffers + 0x20, 2}}, true));
  d.W(0x050, 0);
  EXPECT_TRUE(d.dev.CanReceive());
  const std::string typed = "echo hi\n";
  const std::vector<std::uint8_t> bytes(typed.begin(), typed.end());
  EXPECT_EQ(d.dev.Receive(bytes), 8U);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(d.ram.data() + kBuffers), 4), "echo");
  EXPECT_EQ(std::string(reinterpret_cast<char*>(d.ram.data() + kBuffers + 0x10), 2), " h");
  EXPECT_EQ(std::string(reinterpret_cast<char*>(d.ram.data() + kBuffers + 0x20), 2), "i\n");
  EXPECT_EQ(d.UsedIdx(0), 2);
  EXPECT_EQ(d.Get<std::uint32_t>(kUsed[0] + 8), 4U);   // len of the first
  EXPECT_EQ(d.Get<std::uint32_t>(kUsed[0] + 16), 4U);  // len of the second
  EXPECT_TRUE(d.dev.Interrupt());
  EXPECT_FALSE(d.dev.CanReceive());
  EXPECT_EQ(d.dev.Receive(bytes), 0U);  // no buffer left: the caller keeps them
}

// A VMM migrating with pre-copy learns the guest's writes from KVM's dirty
// log, which never sees the device's: the device reports each one, the
// used rings' entries and indices and the received bytes.
TEST(VirtioConsole, ReportsEveryWriteItMakesToGuestRam) {
  Driver d;
  d.Open();
  d.Send("out");
  EXPECT_TRUE(d.Reported(kUsed[1] + 2, 2));  // the transmit queue's used index
  EXPECT_TRUE(d.Reported(kUsed[1] + 4, 8));  // its first used entry
  d.Offer(0, d.Chain(0, {{kBuffers + 0x40, 4}}, true));
  d.W(0x050, 0);
  const std::vector<std::uint8_t> typed = {'l', 's', '\n'};
  d.wrote.clear();
  EXPECT_EQ(d.dev.Receive(typed), 3U);
  EXPECT_TRUE(d.Reported(kBuffers + 0x40, 3));  // the bytes
  EXPECT_TRUE(d.Reported(kUsed[0] + 2, 2));
  EXPECT_TRUE(d.Reported(kUsed[0] + 4, 8));
  for (const auto& [off, len] : d.wrote) {  // and nothing outside RAM
    EXPECT_LE(off + len, d.ram.size());
  }
}

TEST(VirtioConsole, RoomIsWhatThePostedBuffersTake) {
  Driver d;
  d.Open();
  EXPECT_EQ(d.dev.Room(), 0U);
  d.Offer(0, d.Chain(0, {{kBuffers, 3}}, true));
  d.Offer(0, d.Chain(0, {{kBuffers + 0x10, 5}, {kBuffers + 0x20, 1}}, true));
  EXPECT_EQ(d.dev.Room(), 9U);
  const std::vector<std::uint8_t> bytes(d.dev.Room(), 'q');
  EXPECT_EQ(d.dev.Receive(bytes), 9U);
  EXPECT_EQ(d.dev.Room(), 0U);
  // A chain that is not device-writable offers no room (and Receive, not
  // Room, reports it).
  d.Offer(0, d.Chain(0, {{kBuffers, 8}}, false));
  EXPECT_EQ(d.dev.Room(), 0U);
  EXPECT_TRUE(d.dev.DriverReady());
}

TEST(VirtioConsole, ABufferOutsideRamNeedsResetAndWritesNothing) {
  Driver d;
  d.Open();
  // A receive buffer that runs past the end of RAM.
  d.Offer(0, d.Chain(0, {{d.ram.size() - 2, 16}}, true));
  const std::vector<std::uint8_t> bytes(8, 'z');
  EXPECT_EQ(d.dev.Receive(bytes), 0U);
  EXPECT_NE(d.R(0x070) & VirtioConsole::kNeedsReset, 0U);
  EXPECT_EQ(d.R(0x060) & 2, 2U);  // configuration change
  EXPECT_FALSE(d.dev.Fault().empty());
  EXPECT_EQ(d.UsedIdx(0), 0);
  EXPECT_FALSE(d.dev.DriverReady());
  // A reset brings it back.
  d.Open();
  EXPECT_TRUE(d.dev.DriverReady());
  EXPECT_TRUE(d.dev.Fault().empty());
}

TEST(VirtioConsole, ALoopingChainNeedsResetInsteadOfSpinning) {
  Driver d;
  d.Open();
  const std::uint64_t at = kDesc[1];
  d.Put<std::uint64_t>(at, kBase + kBuffers);
  d.Put<std::uint32_t>(at + 8, 1);
  d.Put<std::uint16_t>(at + 12, 1);  // NEXT, to itself
  d.Put<std::uint16_t>(at + 14, 0);
  d.ram[kBuffers] = 'x';
  d.Offer(1, 0);
  d.W(0x050, 1);
  EXPECT_NE(d.R(0x070) & VirtioConsole::kNeedsReset, 0U);
  EXPECT_LE(d.out.size(), kNum);  // followed at most queue-size descriptors
}

TEST(VirtioConsole, AnAvailableIndexFarAheadNeedsReset) {
  Driver d;
  d.Open();
  d.Put<std::uint16_t>(kAvail[1] + 2, 1000);
  d.W(0x050, 1);
  EXPECT_NE(d.R(0x070) & VirtioConsole::kNeedsReset, 0U);
  EXPECT_EQ(d.out, "");
}

TEST(VirtioConsole, RingsOutsideRamAreNeverUsed) {
  Driver d;
  d.Open();
  d.W(0x030, 1);
  d.W(0x0a0, 0xfffffff0);  // the used ring past the end of RAM
  d.Send("x");
  EXPECT_EQ(d.out, "");
}

TEST(VirtioConsole, NarrowRegisterAccessesAreUnknown) {
  Driver d;
  bool known = true;
  EXPECT_EQ(d.dev.Read(0x000, 2, &known), 0U);
  EXPECT_FALSE(known);
  known = true;
  d.dev.Write(0x070, 1, 1, &known);
  EXPECT_FALSE(known);
  EXPECT_EQ(d.R(0x070), 0U);
  known = true;
  EXPECT_EQ(d.dev.Read(0x100, 2, &known), 0U);  // configuration: any width
  EXPECT_TRUE(known);
}

TEST(VirtioConsole, SaveAndRestoreCarryTheQueuesAcrossAFreshDevice) {
  Driver a;
  a.Open();
  a.Send("before ");
  const auto saved = a.dev.Save();
  // A new device over the same RAM (the snapshot's), restored.
  std::string out;
  VirtioConsole b(GuestRam{kBase, a.ram, {}},
                  [&out](std::span<const std::uint8_t> s) { out.append(s.begin(), s.end()); });
  ASSERT_TRUE(b.Restore(saved).has_value());
  EXPECT_EQ(b.Save(), saved);
  EXPECT_TRUE(b.DriverReady());
  std::memcpy(a.ram.data() + kBuffers, "after", 5);
  a.Offer(1, a.Chain(1, {{kBuffers, 5}}, false));
  b.Write(0x050, 1, 4);
  EXPECT_EQ(out, "after");  // only the new chain: the old one was used already
  EXPECT_EQ(a.UsedIdx(1), 2);
}

TEST(VirtioConsole, RestoreRefusesMalformedStatesAndKeepsItsOwn) {
  Driver d;
  d.Open();
  const auto good = d.dev.Save();
  auto truncated = good;
  truncated.pop_back();
  EXPECT_FALSE(d.dev.Restore(truncated).has_value());
  auto version = good;
  version[0] = 9;
  EXPECT_FALSE(d.dev.Restore(version).has_value());
  auto bad_status = good;
  bad_status[2] = 1;  // status 0x100 and more: no such bits
  EXPECT_FALSE(d.dev.Restore(bad_status).has_value());
  auto bad_interrupt = good;
  bad_interrupt[1 + 4 + 8 + 4 * 3] = 4;  // interrupt status: only bits 0 and 1 exist
  EXPECT_FALSE(d.dev.Restore(bad_interrupt).has_value());
  EXPECT_EQ(d.dev.Save(), good);
}

}  // namespace
}  // namespace vtime::vmm
