// The migration stream between two vtvmm processes, and its hand-over.
//
// Stream (version 4), source -> destination, over a Link (link.h):
//   "VTMIGR\0" + u8 version 4 (a destination also takes version 3, which
//   is the same without zero-pages records);
//   hello: u64 RAM size (whole 4 KiB pages), u32 vCPUs, u32 flags (bit 0:
//     pre-copy: pages come while the guest still runs on the source);
//   records, each a u8 kind:
//     1 pages:    u64 first page, u32 count (1..4096), count x 4 KiB;
//     2 snapshot: u64 length, a snapshot without RAM
//                 (RamContents::kSentSeparately); the last record;
//     3 zero pages (version 4): u64 first page, u32 count (1..4096), no
//                 data: those pages hold only zeros (most of a Linux
//                 guest's RAM, never written, costs the link nothing).
//   Pages may come more than once (a later copy wins). Pre-copy sends all of
//   RAM while the guest runs, then what it dirtied, round by round, then
//   pauses it and sends the last dirty pages and the snapshot; stop-and-copy
//   pauses first and sends every page once.
// The destination checks the hello against its own limits before it
// allocates anything, and pages go straight into guest memory.
//
// Hand-over (messages both ways: u8 kind, u32 length <= 4096, a one-line
// reason), after the snapshot:
//   destination: kRestored (the VM is built, not running) or kRefused;
//   source:      kGo (from here the source never resumes the guest on its
//                own: the destination may run it);
//   destination: kRunning (every vCPU is entering the guest) or kFailed (it
//                could not start it and never will: the source resumes).
// What each side does when the other fails, or the link does, at each step
// is in handover.h.
//
// Streams of versions 1 and 2 (vtvmm before the hand-over) are refused with
// a message: with them a failure after the verdict could lose the VM.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/link.h"
#include "vtime/fd.h"
#include "vtime/result.h"

namespace vtime::vmm {

struct Endpoint {
  std::string host;  ///< numeric IPv4 address
  std::uint16_t port = 0;
};

/// "ADDRESS:PORT" (numeric IPv4).
Result<Endpoint> ParseEndpoint(std::string_view text);

/// Called as bytes move: (done, total).
using Progress = std::function<void(std::uint64_t, std::uint64_t)>;

/// A Progress that prints one stderr line per tenth of the transfer:
/// "vtvmm: migration: <verb> X of Y MiB (Z%)".
Progress PrintTenths(std::string verb);

/// Connects to a waiting destination (gives up after `timeout_ms`).
Result<Fd> ConnectTo(const Endpoint& to, unsigned timeout_ms);
/// Listens on exactly `on` (0.0.0.0 for every address, only if the operator
/// says so).
Result<Fd> Listen(const Endpoint& on);
/// Accepts one connection on `listener`, giving up after `timeout_ms` (0:
/// wait for ever); `peer` gets "ADDRESS:PORT" of the other side.
Result<Fd> AcceptOne(int listener, unsigned timeout_ms, std::string* peer = nullptr);

enum class StreamFault : std::uint8_t { kNone, kCorrupt, kTruncate };

inline constexpr std::uint64_t kPageSize = 4096;
inline constexpr std::uint8_t kStreamVersion = 4;

/// What the source announces before any page.
struct StreamHello {
  std::uint64_t ram_size = 0;
  std::uint32_t cpus = 0;
  bool precopy = false;
  /// The stream's version as received (SendHello sends kStreamVersion).
  std::uint8_t version = kStreamVersion;
  friend bool operator==(const StreamHello&, const StreamHello&) = default;
};

Result<void> SendHello(Link& link, const StreamHello& hello);
/// Sends the pages of `ram` whose bits are set in `pages` (bit i: page i),
/// in runs of contiguous pages, and returns how many it sent. kTruncate
/// stops half way and closes. `progress` sees pages sent of all pages set.
Result<std::uint64_t> SendPages(Link& link, std::span<const std::uint8_t> ram,
                                std::span<const std::uint64_t> pages,
                                StreamFault fault = StreamFault::kNone,
                                const Progress& progress = {});
/// The last record: the RAM-less snapshot. kCorrupt flips one byte.
Result<void> SendFinalSnapshot(Link& link, std::span<const std::uint8_t> snapshot,
                               StreamFault fault = StreamFault::kNone);

/// What a destination takes, from its own configuration: the peer's hello
/// is refused beyond these before anything is allocated.
struct IncomingLimits {
  std::uint64_t max_ram = 0;
  std::uint32_t max_cpus = 0;
  std::uint64_t max_snapshot = 0;  ///< the RAM-less snapshot's bytes
};

/// Where pages go: called once, after the hello passed the limits, with the
/// announced RAM size; returns guest memory of exactly that many bytes.
using RamSink = std::function<Result<std::span<std::uint8_t>>(const StreamHello&)>;

struct IncomingMigration {
  StreamHello hello;
  std::vector<std::uint8_t> snapshot;  ///< the RAM-less snapshot's bytes
  std::uint64_t pages_received = 0;    ///< resends too
};
/// Receives a version-3 stream. Progress covers the first copy of RAM.
Result<IncomingMigration> ReceiveMigration(Link& link, const IncomingLimits& limits,
                                           const RamSink& ram, const Progress& progress);

/// The hand-over messages (see the top of this file).
enum class Handover : std::uint8_t {
  kRestored = 0,
  kRefused = 1,
  kRunning = 2,
  kFailed = 3,
  kGo = 4,
};
std::string_view NameOf(Handover kind);

struct HandoverMessage {
  Handover kind = Handover::kRefused;
  std::string reason;
};
Result<void> SendHandover(Link& link, Handover kind, std::string_view reason = {});
/// Waits up to `timeout_ms` for the peer's next hand-over message.
Result<HandoverMessage> ReceiveHandover(Link& link, unsigned timeout_ms);

}  // namespace vtime::vmm
