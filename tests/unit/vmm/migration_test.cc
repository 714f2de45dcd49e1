// The migration stream (version 4, and the version 3 it still takes) and its hand-over, over a socketpair:
// what a source sends arrives whole, straight into guest memory; what a
// broken or hostile peer sends is refused with the reason before anything
// is allocated; each side of the hand-over ends as handover.h says for
// every failure of the other.
#include "vmm/migration.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "vmm/guest_memory.h"
#include "vmm/handover.h"
#include "vtime/wire.h"

namespace vtime::vmm {
namespace {

constexpr IncomingLimits kLimits{1 << 20, 4, 1 << 20};

struct Pair {
  std::unique_ptr<Link> a, b;
};
Pair MakePair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  return {PlainLink(Fd(fds[0])), PlainLink(Fd(fds[1]))};
}

// Receives into a vector the sink hands out.
struct Received {
  Result<IncomingMigration> in = Fail(ErrorCode::kBadState, "not run");
  std::vector<std::uint8_t> ram;
  bool sink_called = false;
};

// Runs `send` on one end of a socketpair (then closes it) and receives on
// the other.
template <class Send>
Received Exchange(Send send, const IncomingLimits& limits = kLimits,
                  const Progress& progress = {}) {
  Pair p = MakePair();
  std::thread writer([&] {
    send(*p.a);
    p.a.reset();
  });
  Received r;
  r.in = ReceiveMigration(
      *p.b, limits,
      [&r](const StreamHello& hello) -> Result<std::span<std::uint8_t>> {
        r.sink_called = true;
        r.ram.assign(hello.ram_size, 0);
        return std::span(r.ram);
      },
      progress);
  p.b.reset();  // a writer still sending gets an error, not a hang
  writer.join();
  return r;
}

Received Raw(std::vector<std::uint8_t> bytes, const IncomingLimits& limits = kLimits) {
  return Exchange([bytes = std::move(bytes)](Link& l) { (void)l.WriteAll(bytes); }, limits);
}

std::vector<std::uint8_t> Hello(std::uint8_t version, std::uint64_t ram, std::uint32_t cpus,
                                std::uint32_t flags = 0) {
  wire::Writer w;
  const std::uint8_t magic[8] = {'V', 'T', 'M', 'I', 'G', 'R', '\0', version};
  w.Bytes(magic);
  w.U64(ram);
  w.U32(cpus);
  w.U32(flags);
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

TEST(MigrationStream, PagesGoStraightIntoGuestMemoryAndLaterCopiesWin) {
  std::vector<std::uint8_t> ram(16 * kPageSize);
  for (std::size_t i = 0; i < ram.size(); ++i) ram[i] = static_cast<std::uint8_t>(i / kPageSize);
  const std::vector<std::uint8_t> snapshot = {1, 2, 3};
  std::vector<std::uint64_t> seen;
  auto r = Exchange(
      [&](Link& l) {
        ASSERT_TRUE(SendHello(l, StreamHello{ram.size(), 2, true}).has_value());
        const std::vector<std::uint64_t> all = {0xffff};
        auto first = SendPages(l, ram, all);
        ASSERT_TRUE(first.has_value());
        EXPECT_EQ(*first, 16U);
        // The guest dirtied pages 3, 4 and 9: they go again, newer.
        std::vector<std::uint8_t> newer = ram;
        for (int p : {3, 4, 9}) newer[static_cast<std::size_t>(p) * kPageSize] = 0xee;
        const std::vector<std::uint64_t> dirty = {(1U << 3) | (1U << 4) | (1U << 9)};
        auto again = SendPages(l, newer, dirty);
        ASSERT_TRUE(again.has_value());
        EXPECT_EQ(*again, 3U);
        ASSERT_TRUE(SendFinalSnapshot(l, snapshot).has_value());
      },
      kLimits, [&](std::uint64_t done, std::uint64_t total) {
        EXPECT_EQ(total, ram.size());
        seen.push_back(done);
      });
  ASSERT_TRUE(r.in.has_value()) << Why(r.in);
  EXPECT_EQ(r.in->hello, (StreamHello{ram.size(), 2, true}));
  EXPECT_EQ(r.in->snapshot, snapshot);
  EXPECT_EQ(r.in->pages_received, 19U);
  for (std::size_t p = 0; p < 16; ++p) {
    const bool dirtied = p == 3 || p == 4 || p == 9;
    EXPECT_EQ(r.ram[p * kPageSize], dirtied ? 0xee : p) << "page " << p;
    EXPECT_EQ(r.ram[p * kPageSize + 1], p) << "page " << p;
  }
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), ram.size());
}

TEST(MigrationStream, ZeroPagesCrossWithoutTheirDataAndClearWhatWasThere) {
  // Pages 0-5 and 12-15 zero, 6-11 not: one data run between two zero runs.
  std::vector<std::uint8_t> ram(16 * kPageSize, 0);
  for (std::size_t p = 6; p < 12; ++p) ram[p * kPageSize + 7] = static_cast<std::uint8_t>(p);
  auto r = Exchange([&](Link& l) {
    ASSERT_TRUE(SendHello(l, StreamHello{ram.size(), 1, true}).has_value());
    const std::vector<std::uint64_t> all = {0xffff};
    ASSERT_TRUE(SendPages(l, ram, all).has_value());
    // Page 8 became zero, page 2 did not stay zero: the newer copies win.
    std::vector<std::uint8_t> newer = ram;
    newer[8 * kPageSize + 7] = 0;
    newer[2 * kPageSize] = 0x55;
    const std::vector<std::uint64_t> dirty = {(1U << 2) | (1U << 8)};
    auto again = SendPages(l, newer, dirty);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(*again, 2U);
    ASSERT_TRUE(SendFinalSnapshot(l, std::vector<std::uint8_t>{9}).has_value());
  });
  ASSERT_TRUE(r.in.has_value()) << Why(r.in);
  EXPECT_EQ(r.in->hello.version, kStreamVersion);
  EXPECT_EQ(r.in->pages_received, 18U);
  for (std::size_t p = 0; p < 16; ++p) {
    const std::uint8_t want = p >= 6 && p < 12 && p != 8 ? static_cast<std::uint8_t>(p) : 0;
    EXPECT_EQ(r.ram[p * kPageSize + 7], want) << "page " << p;
  }
  EXPECT_EQ(r.ram[2 * kPageSize], 0x55);
}

TEST(MigrationStream, AZeroPagesRecordIsForVersion4StreamsOnly) {
  wire::Writer w;
  w.U8(3);
  w.U64(0);
  w.U32(1);
  std::vector<std::uint8_t> v3 = Hello(3, 16 * kPageSize, 1);
  Append(v3, w.Take());
  EXPECT_NE(Why(Raw(v3).in).find("unknown record kind 3"), std::string::npos) << Why(Raw(v3).in);
  wire::Writer bad;
  bad.U8(3);
  bad.U64(15);
  bad.U32(2);  // one page past the end of RAM
  std::vector<std::uint8_t> v4 = Hello(4, 16 * kPageSize, 1);
  Append(v4, bad.Take());
  EXPECT_NE(Why(Raw(v4).in).find("outside 16 pages"), std::string::npos) << Why(Raw(v4).in);
}

TEST(MigrationStream, RefusesWhatABrokenOrHostilePeerSendsBeforeAllocating) {
  struct Case {
    std::vector<std::uint8_t> bytes;
    std::string why;
    bool sink = false;  // whether guest memory may have been made
  };
  std::vector<Case> cases;
  cases.push_back({{'N', 'O', 'T', 'A', 'M', 'I', 'G', 3}, "bad magic"});
  cases.push_back({Hello(1, 0, 0), "without the hand-over protocol"});
  cases.push_back({Hello(2, 0, 0), "upgrade the source"});
  cases.push_back({Hello(5, 0, 0), "version 5, this vtvmm speaks versions 3 and 4"});
  cases.push_back({Hello(3, 0, 1), "RAM of 0 bytes"});
  cases.push_back({Hello(3, kPageSize + 1, 1), "4 KiB pages"});
  cases.push_back({Hello(3, kLimits.max_ram + kPageSize, 1), "--max-memory"});
  cases.push_back({Hello(3, 64ULL << 30, 1), "more than the 1 MiB"});
  cases.push_back({Hello(3, kPageSize, 0), "0 vCPUs"});
  cases.push_back({Hello(3, kPageSize, 5), "--max-cpus"});
  cases.push_back({Hello(3, kPageSize, 1, 6), "unknown flags 6"});
  auto with = [](std::vector<std::uint8_t> head, const std::vector<std::uint8_t>& rest) {
    Append(head, rest);
    return head;
  };
  const auto four = Hello(3, 4 * kPageSize, 1);
  cases.push_back({with(four, PagesRecord(3, 2, 0)), "outside 4 pages", true});
  cases.push_back({with(four, PagesRecord(0, 0, 0)), "outside", true});
  cases.push_back({with(four, PagesRecord(~std::uint64_t{0}, 1, 0)), "outside", true});
  cases.push_back({with(four, {9}), "unknown record kind 9", true});
  cases.push_back({with(four, PagesRecord(0, 2, kPageSize)), "closed", true});
  {
    // One page of RAM sent 33 times: a runaway stream.
    std::vector<std::uint8_t> runaway = Hello(3, kPageSize, 1);
    for (int i = 0; i < 33; ++i) Append(runaway, PagesRecord(0, 1, kPageSize));
    cases.push_back({runaway, "copies of RAM", true});
  }
  {
    std::vector<std::uint8_t> big = Hello(3, kPageSize, 1);
    wire::Writer w;
    w.U8(2);
    w.U64(kLimits.max_snapshot + 1);
    Append(big, w.Take());
    cases.push_back({big, "accepted for 1 vCPUs", true});
  }
  for (const Case& c : cases) {
    auto r = Raw(c.bytes);
    ASSERT_FALSE(r.in.has_value()) << "accepted; wanted: " << c.why;
    EXPECT_NE(r.in.error().Message().find(c.why), std::string::npos)
        << r.in.error().Message() << " (wanted: " << c.why << ")";
    if (!c.sink) {
      EXPECT_FALSE(r.sink_called) << c.why << ": guest memory made before refusing";
    }
  }
}

TEST(MigrationStream, TruncateFaultCutsTheStreamAndTheReceiverSaysSo) {
  const std::vector<std::uint8_t> ram(8 * kPageSize, 1);
  auto r = Exchange([&](Link& l) {
    ASSERT_TRUE(SendHello(l, StreamHello{ram.size(), 1, false}).has_value());
    const std::vector<std::uint64_t> all = {0xff};
    EXPECT_FALSE(SendPages(l, ram, all, StreamFault::kTruncate).has_value());
  });
  ASSERT_FALSE(r.in.has_value());
  EXPECT_NE(r.in.error().Message().find("closed the link"), std::string::npos)
      << r.in.error().Message();
}

// Peak RSS (KiB) of a child that receives a stream into real guest memory
// with the destination's limits: `head`, then pages records for the runs
// in `runs` (first page, count), their data written from one small buffer
// so that the parent's (shared) memory stays small.
struct ChildRun {
  long max_rss_kib = 0;
  int status = -1;  // 0 accepted, 1 refused
};
ChildRun ReceiveInChild(const std::vector<std::uint8_t>& head,
                        const std::vector<std::pair<std::uint64_t, std::uint32_t>>& runs,
                        const IncomingLimits& limits) {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    auto link = PlainLink(Fd(fds[1]));
    std::optional<GuestMemory> memory;
    auto in = ReceiveMigration(
        *link, limits,
        [&memory](const StreamHello& hello) -> Result<std::span<std::uint8_t>> {
          auto m = GuestMemory::Create(hello.ram_size, "test");
          if (!m) return tl::unexpected(m.error());
          memory.emplace(std::move(*m));
          return memory->writable();
        },
        {});
    ::_exit(in ? 0 : 1);
  }
  ::close(fds[1]);
  auto link = PlainLink(Fd(fds[0]));
  (void)link->WriteAll(head);
  const std::vector<std::uint8_t> page(kPageSize, 0x5a);
  for (const auto& [first, count] : runs) {
    if (!link->WriteAll(PagesRecord(first, count, 0))) break;
    for (std::uint32_t i = 0; i < count; ++i) {
      if (!link->WriteAll(page)) break;
    }
  }
  link->CloseWrite();
  ChildRun run;
  rusage ru{};
  int status = 0;
  EXPECT_EQ(::wait4(pid, &status, 0, &ru), pid);
  run.max_rss_kib = ru.ru_maxrss;
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

TEST(MigrationStream, APeerAnnouncing64GiBToA64MiBDestinationCostsItNoMemory) {
  constexpr IncomingLimits k64MiB{64ULL << 20, 1, 1 << 20};
  // The baseline: a child refusing a stream with a bad magic.
  const ChildRun base = ReceiveInChild({'N', 'O', 'P', 'E', 0, 0, 0, 0}, {}, k64MiB);
  ASSERT_EQ(base.status, 1);
  // 64 GiB announced, and pages sent: refused before any guest memory exists.
  const ChildRun refused = ReceiveInChild(Hello(3, 64ULL << 30, 1), {{0, 4096}}, k64MiB);
  EXPECT_EQ(refused.status, 1);
  // 64 MiB announced and only the header sent: guest memory is reserved,
  // not filled.
  const ChildRun idle = ReceiveInChild(Hello(3, 64ULL << 20, 1), {}, k64MiB);
  EXPECT_EQ(idle.status, 1);
  // The positive control shows the measure sees memory: 48 MiB of pages
  // really sent into 64 MiB of guest memory.
  const ChildRun filled =
      ReceiveInChild(Hello(3, 64ULL << 20, 1), {{0, 4096}, {4096, 4096}, {8192, 4096}}, k64MiB);
  EXPECT_EQ(filled.status, 1);  // no snapshot record follows: refused at the end
  std::printf(
      "peak RSS of the destination: baseline %ld KiB; 64 GiB announced %ld KiB; 64 MiB "
      "announced, nothing sent %ld KiB; 48 MiB sent %ld KiB\n",
      base.max_rss_kib, refused.max_rss_kib, idle.max_rss_kib, filled.max_rss_kib);
  EXPECT_LT(refused.max_rss_kib - base.max_rss_kib, 2 * 1024)
      << "refusing the 64 GiB stream grew the destination";
  EXPECT_LT(idle.max_rss_kib - base.max_rss_kib, 2 * 1024)
      << "guest memory was filled before any page came";
  EXPECT_GT(filled.max_rss_kib - base.max_rss_kib, 46 * 1024)
      << "the measure does not see guest memory being filled";
  EXPECT_LT(filled.max_rss_kib - base.max_rss_kib, 52 * 1024)
      << "more than one copy of the pages sent";
}

// ---------------------------------------------------------------- hand-over

// Two ends of a TCP connection over loopback, as between two vtvmm (a
// socketpair behaves differently after a shutdown).
Pair TcpPair() {
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&sa), len), 0);
  EXPECT_EQ(::listen(listener.get(), 1), 0);
  EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&sa), &len), 0);
  auto to = ConnectTo(Endpoint{"127.0.0.1", ntohs(sa.sin_port)}, 1000);
  EXPECT_TRUE(to.has_value());
  auto from = AcceptOne(listener.get(), 1000);
  EXPECT_TRUE(from.has_value());
  return {PlainLink(std::move(*to)), PlainLink(std::move(*from))};
}

TEST(Handover, RestoredGoRunningHandsTheVmOver) {
  Pair p = MakePair();
  Result<void> go = Fail(ErrorCode::kBadState, "");
  std::thread dst([&] {
    DestinationHandover d(*p.b);
    go = d.OfferAndAwaitGo(5000);
    if (go) {
      EXPECT_TRUE(d.Running().has_value());
    }
  });
  const SourceHandover s = HandOverAsSource(*p.a);
  dst.join();
  EXPECT_TRUE(go.has_value());
  EXPECT_EQ(s.outcome, SourceOutcome::kHandedOver) << s.why;
}

TEST(Handover, ARefusalOrADestinationThatFailsToStartLeavesTheSourceToResume) {
  {
    Pair p = MakePair();
    std::thread dst([&] { DestinationHandover(*p.b).Refuse("bad checksum"); });
    const SourceHandover s = HandOverAsSource(*p.a);
    dst.join();
    EXPECT_EQ(s.outcome, SourceOutcome::kResume);
    EXPECT_NE(s.why.find("refused: bad checksum"), std::string::npos) << s.why;
  }
  {
    Pair p = MakePair();
    std::thread dst([&] {
      DestinationHandover d(*p.b);
      ASSERT_TRUE(d.OfferAndAwaitGo(5000).has_value());
      d.FailedToStart("monitor socket: No such file or directory");
    });
    const SourceHandover s = HandOverAsSource(*p.a);
    dst.join();
    EXPECT_EQ(s.outcome, SourceOutcome::kResume);
    EXPECT_NE(s.why.find("could not start the guest: monitor socket"), std::string::npos)
        << s.why;
  }
}

// Each failure at each step, as handover.h's table says. "die": that side
// closes its end without a word (a killed process); "cut": shutdown of the
// link at the step.
enum class Fault { kDie, kCut };
struct Outcome {
  SourceOutcome source;
  bool destination_runs;
};

Outcome RunHandover(bool fault_at_destination, HandoverStep at, Fault how) {
  Pair p = TcpPair();
  auto hook_for = [&](bool mine) -> HandoverHook {
    if (!mine) return {};
    return [at](HandoverStep step, Link& link) {
      // Both faults end this side's traffic (as vtvmm's --handover-fault
      // cut does: the socket is swapped for a dead one); a dead process
      // also stops acting, which the destination below models with `dead`.
      if (step != at) return;
      const int dead = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      ::dup2(dead, link.fd());
      ::close(dead);
    };
  };
  bool runs = false;
  std::thread dst([&] {
    DestinationHandover d(*p.b, hook_for(fault_at_destination));
    auto go = d.OfferAndAwaitGo(2000);
    // A destination that died at or before kAfterGo runs nothing.
    const bool dead = fault_at_destination && how == Fault::kDie && at <= HandoverStep::kAfterGo;
    if (!go || dead) return;
    runs = true;
    (void)d.Running();
  });
  const SourceHandover s = HandOverAsSource(*p.a, hook_for(!fault_at_destination),
                                            SourceHandoverTimeouts{2000, 2000});
  dst.join();
  return {s.outcome, runs};
}

TEST(Handover, EveryFailureAtEveryStepLeavesOneCopyOrAnOperatorsDecision) {
  using S = SourceOutcome;
  using H = HandoverStep;
  struct Case {
    bool at_destination;
    H step;
    Fault how;
    Outcome want;
  };
  const Case cases[] = {
      // The destination fails.
      {true, H::kBeforeVerdict, Fault::kDie, {S::kResume, false}},
      {true, H::kAfterRestored, Fault::kDie, {S::kInDoubt, false}},
      {true, H::kAfterRestored, Fault::kCut, {S::kInDoubt, false}},
      {true, H::kAfterGo, Fault::kDie, {S::kInDoubt, false}},
      {true, H::kAfterGo, Fault::kCut, {S::kInDoubt, true}},
      {true, H::kAfterRunning, Fault::kCut, {S::kHandedOver, true}},
      // The source fails (a dead source's outcome is moot: it runs nothing).
      {false, H::kBeforeVerdict, Fault::kCut, {S::kResume, false}},
      {false, H::kAfterRestored, Fault::kCut, {S::kResume, false}},
      {false, H::kAfterGo, Fault::kCut, {S::kInDoubt, true}},
      {false, H::kAfterRunning, Fault::kCut, {S::kHandedOver, true}},
  };
  for (const Case& c : cases) {
    const Outcome got = RunHandover(c.at_destination, c.step, c.how);
    const std::string what = std::string(c.at_destination ? "destination" : "source") + " " +
                             (c.how == Fault::kDie ? "dies" : "cuts") + " at " +
                             std::string(NameOf(c.step));
    EXPECT_EQ(got.source, c.want.source) << what;
    EXPECT_EQ(got.destination_runs, c.want.destination_runs) << what;
    // Never both, and never neither unless an operator is asked.
    const bool source_runs = got.source == S::kResume;
    EXPECT_FALSE(source_runs && got.destination_runs) << what << ": both run the guest";
    if (got.source != S::kInDoubt) {
      EXPECT_TRUE(source_runs || got.destination_runs) << what << ": nobody runs the guest";
    }
  }
}

TEST(Handover, GarbledMessagesAreRefused) {
  Pair p = MakePair();
  const std::uint8_t junk[5] = {9, 0, 0, 0, 0};
  ASSERT_TRUE(p.a->WriteAll(junk).has_value());
  auto m = ReceiveHandover(*p.b, 1000);
  ASSERT_FALSE(m.has_value());
  EXPECT_NE(m.error().Message().find("garbled"), std::string::npos);
  const std::uint8_t long_reason[5] = {0, 0xff, 0xff, 0, 0};
  ASSERT_TRUE(p.a->WriteAll(long_reason).has_value());
  EXPECT_FALSE(ReceiveHandover(*p.b, 1000).has_value());
}

}  // namespace
}  // namespace vtime::vmm
