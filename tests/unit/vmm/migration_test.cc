// The migration stream, both versions, over a socketpair: what a source
// sends arrives whole, and what a broken or hostile peer sends is refused
// with the reason.
#include "vmm/migration.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "vtime/wire.h"

namespace vtime::vmm {
namespace {

constexpr std::uint64_t kMaxBytes = 1 << 20;
constexpr std::uint64_t kMaxRam = 1 << 20;

// Runs `send` on one end of a socketpair (then closes it) and receives on
// the other.
template <class Send>
Result<IncomingMigration> Exchange(Send send, const Progress& progress = {}) {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  kvm::Fd tx(fds[0]), rx(fds[1]);
  std::thread writer([&] {
    send(tx.get());
    tx = kvm::Fd();
  });
  auto in = ReceiveMigration(rx.get(), kMaxBytes, kMaxRam, progress);
  rx = kvm::Fd();  // a writer still sending gets an error, not a hang
  writer.join();
  return in;
}

Result<IncomingMigration> Raw(std::vector<std::uint8_t> bytes) {
  return Exchange([bytes = std::move(bytes)](int fd) {
    (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  });
}

std::vector<std::uint8_t> Header(std::uint8_t version, std::uint64_t size_or_length) {
  wire::Writer w;
  const std::uint8_t magic[8] = {'V', 'T', 'M', 'I', 'G', 'R', '\0', version};
  w.Bytes(magic);
  w.U64(size_or_length);
  return w.Take();
}

void Append(std::vector<std::uint8_t>& to, const std::vector<std::uint8_t>& more) {
  to.insert(to.end(), more.begin(), more.end());
}

std::vector<std::uint8_t> PagesRecord(std::uint64_t first, std::uint32_t count,
                                      std::uint64_t data_bytes) {
  wire::Writer w;
  w.U8(1);
  w.U64(first);
  w.U32(count);
  std::vector<std::uint8_t> out = w.Take();
  out.resize(out.size() + data_bytes, 0xab);
  return out;
}

std::string Why(const Result<IncomingMigration>& r) {
  return r ? std::string("(accepted)") : r.error().Message();
}

TEST(MigrationStream, Version1CarriesTheSnapshotWithProgress) {
  const std::vector<std::uint8_t> snapshot(300'000, 7);
  std::vector<std::uint64_t> seen;
  auto in = Exchange([&](int fd) { ASSERT_TRUE(SendSnapshot(fd, snapshot, {}).has_value()); },
                     [&](std::uint64_t done, std::uint64_t total) {
                       EXPECT_EQ(total, snapshot.size());
                       seen.push_back(done);
                     });
  ASSERT_TRUE(in.has_value()) << Why(in);
  EXPECT_EQ(in->snapshot, snapshot);
  EXPECT_FALSE(in->ram.has_value());
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), snapshot.size());
}

TEST(MigrationStream, PrecopyPagesThenSnapshotAndLaterCopiesWin) {
  std::vector<std::uint8_t> ram(16 * kPageSize);
  for (std::size_t i = 0; i < ram.size(); ++i) ram[i] = static_cast<std::uint8_t>(i / kPageSize);
  const std::vector<std::uint8_t> snapshot = {1, 2, 3};
  auto in = Exchange([&](int fd) {
    ASSERT_TRUE(SendPrecopyHeader(fd, ram.size()).has_value());
    const std::vector<std::uint64_t> all = {0xffff};
    auto first = SendPages(fd, ram, all);
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(*first, 16U);
    // The guest dirtied pages 3, 4 and 9: they go again, newer.
    std::vector<std::uint8_t> newer = ram;
    for (int p : {3, 4, 9}) newer[static_cast<std::size_t>(p) * kPageSize] = 0xee;
    const std::vector<std::uint64_t> dirty = {(1U << 3) | (1U << 4) | (1U << 9)};
    auto again = SendPages(fd, newer, dirty);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(*again, 3U);
    ASSERT_TRUE(SendFinalSnapshot(fd, snapshot).has_value());
  });
  ASSERT_TRUE(in.has_value()) << Why(in);
  ASSERT_TRUE(in->ram.has_value());
  EXPECT_EQ(in->snapshot, snapshot);
  EXPECT_EQ(in->pages_received, 19U);
  for (std::size_t p = 0; p < 16; ++p) {
    const bool dirtied = p == 3 || p == 4 || p == 9;
    EXPECT_EQ((*in->ram)[p * kPageSize], dirtied ? 0xee : p) << "page " << p;
    EXPECT_EQ((*in->ram)[p * kPageSize + 1], p) << "page " << p;
  }
}

TEST(MigrationStream, RefusesWhatABrokenOrHostilePeerSends) {
  struct Case {
    std::vector<std::uint8_t> bytes;
    std::string why;
  };
  std::vector<Case> cases;
  cases.push_back({{'N', 'O', 'T', 'A', 'M', 'I', 'G', 1}, "bad magic"});
  cases.push_back({Header(3, 0), "version 3, this vtvmm speaks 1 and 2"});
  cases.push_back({Header(1, kMaxBytes + 1), "more than the"});
  cases.push_back({Header(2, 0), "RAM of 0 bytes"});
  cases.push_back({Header(2, kPageSize + 1), "whole 4 KiB pages"});
  cases.push_back({Header(2, kMaxRam + kPageSize), "RAM of"});
  auto with = [](std::vector<std::uint8_t> head, const std::vector<std::uint8_t>& rest) {
    Append(head, rest);
    return head;
  };
  cases.push_back({with(Header(2, 4 * kPageSize), PagesRecord(3, 2, 0)), "outside 4 pages"});
  cases.push_back({with(Header(2, 4 * kPageSize), PagesRecord(0, 0, 0)), "outside"});
  cases.push_back({with(Header(2, 4 * kPageSize), PagesRecord(~std::uint64_t{0}, 1, 0)),
                   "outside"});
  cases.push_back({with(Header(2, 4 * kPageSize), {9}), "unknown record kind 9"});
  cases.push_back({with(Header(2, 4 * kPageSize), PagesRecord(0, 2, kPageSize)), "closed"});
  cases.push_back({Header(1, 100), "closed"});
  {
    // One page of RAM sent 33 times: a runaway stream.
    std::vector<std::uint8_t> runaway = Header(2, kPageSize);
    for (int i = 0; i < 33; ++i) Append(runaway, PagesRecord(0, 1, kPageSize));
    cases.push_back({runaway, "copies of RAM"});
  }
  {
    std::vector<std::uint8_t> big = Header(2, kPageSize);
    wire::Writer w;
    w.U8(2);
    w.U64(kMaxBytes + 1);
    Append(big, w.Take());
    cases.push_back({big, "more than the"});
  }
  for (const Case& c : cases) {
    auto in = Raw(c.bytes);
    ASSERT_FALSE(in.has_value()) << "accepted; wanted: " << c.why;
    EXPECT_NE(in.error().Message().find(c.why), std::string::npos)
        << in.error().Message() << " (wanted: " << c.why << ")";
  }
}

TEST(MigrationStream, TruncateFaultCutsTheStreamAndTheReceiverSaysSo) {
  const std::vector<std::uint8_t> ram(8 * kPageSize, 1);
  auto in = Exchange([&](int fd) {
    ASSERT_TRUE(SendPrecopyHeader(fd, ram.size()).has_value());
    const std::vector<std::uint64_t> all = {0xff};
    auto r = SendPages(fd, ram, all, StreamFault::kTruncate);
    EXPECT_FALSE(r.has_value());
  });
  ASSERT_FALSE(in.has_value());
  EXPECT_NE(in.error().Message().find("closed the link"), std::string::npos)
      << in.error().Message();
}

}  // namespace
}  // namespace vtime::vmm
