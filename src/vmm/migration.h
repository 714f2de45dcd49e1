// The migration stream between two vtvmm processes: a snapshot (see
// snapshot.h) sent over TCP, then the destination's verdict. The source only
// gives up its VM once the destination has restored it and said so; a refused
// or broken migration leaves the source running.
//
// Stream: source -> destination: "VTMIGR\0" + u8 version, then
//   version 1 (stop-and-copy): u64 length, the snapshot bytes;
//   version 2 (pre-copy): u64 RAM size, then records, each a u8 kind:
//     1 pages:    u64 first page, u32 count (1..4096), count x 4 KiB;
//     2 snapshot: u64 length, a snapshot whose RAM is the pages sent
//                 before it (RamContents::kSentSeparately); the last record.
//   Pages may come more than once (a later copy wins): the source sends all
//   of RAM while the guest runs, then what it dirtied, round by round, then
//   pauses it and sends the last dirty pages and the snapshot.
// destination -> source: u8 verdict (0 accepted, 1 refused), u32 length, a
// one-line reason.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vtime/backend/kvm.h"
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
Result<kvm::Fd> ConnectTo(const Endpoint& to, unsigned timeout_ms);
/// Listens on PORT on every address and accepts one source, giving up after
/// `timeout_ms` (0: wait for ever).
Result<kvm::Fd> AcceptOne(std::uint16_t port, unsigned timeout_ms = 0);

enum class StreamFault : std::uint8_t { kNone, kCorrupt, kTruncate };

/// Sends a snapshot. kCorrupt flips one byte in the middle, kTruncate stops
/// half way and closes: test faults for the refusal paths.
Result<void> SendSnapshot(int fd, std::span<const std::uint8_t> snapshot, const Progress& progress,
                          StreamFault fault = StreamFault::kNone);

inline constexpr std::uint64_t kPageSize = 4096;

/// Pre-copy (version 2): the stream header, for `ram_size` bytes of RAM.
Result<void> SendPrecopyHeader(int fd, std::uint64_t ram_size);
/// Sends the pages of `ram` whose bits are set in `pages` (bit i: page i),
/// in runs of contiguous pages, and returns how many it sent. kTruncate
/// stops half way and closes.
Result<std::uint64_t> SendPages(int fd, std::span<const std::uint8_t> ram,
                                std::span<const std::uint64_t> pages,
                                StreamFault fault = StreamFault::kNone);
/// The last record: the RAM-less snapshot. kCorrupt flips one byte.
Result<void> SendFinalSnapshot(int fd, std::span<const std::uint8_t> snapshot,
                               StreamFault fault = StreamFault::kNone);

/// What a destination received, either version.
struct IncomingMigration {
  std::vector<std::uint8_t> snapshot;            ///< the snapshot's bytes
  std::optional<std::vector<std::uint8_t>> ram;  ///< pre-copy: RAM, sent apart
  std::uint64_t pages_received = 0;              ///< pre-copy: pages, resends too
};
/// Receives a migration of either version: snapshots of at most
/// `max_bytes`, RAM of at most `max_ram` bytes. Progress covers the
/// snapshot (version 1) or the first copy of RAM (version 2).
Result<IncomingMigration> ReceiveMigration(int fd, std::uint64_t max_bytes, std::uint64_t max_ram,
                                           const Progress& progress);

Result<void> SendVerdict(int fd, bool accepted, const std::string& reason);
struct Verdict {
  bool accepted = false;
  std::string reason;
};
/// Waits up to `timeout_ms` for the destination's verdict.
Result<Verdict> ReceiveVerdict(int fd, unsigned timeout_ms);

}  // namespace vtime::vmm
