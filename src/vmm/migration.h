// The migration stream between two vtvmm processes: a snapshot (see
// snapshot.h) sent over TCP, then the destination's verdict. The source only
// gives up its VM once the destination has restored it and said so; a refused
// or broken migration leaves the source running.
//
// Stream: source -> destination: "VTMIGR\0" + u8 version (1), u64 length,
// then the snapshot bytes; destination -> source: u8 verdict (0 accepted,
// 1 refused), u32 length, a one-line reason.
#pragma once

#include <cstdint>
#include <functional>
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
/// Receives a snapshot of at most `max_bytes`.
Result<std::vector<std::uint8_t>> ReceiveSnapshot(int fd, std::uint64_t max_bytes,
                                                  const Progress& progress);

Result<void> SendVerdict(int fd, bool accepted, const std::string& reason);
struct Verdict {
  bool accepted = false;
  std::string reason;
};
/// Waits up to `timeout_ms` for the destination's verdict.
Result<Verdict> ReceiveVerdict(int fd, unsigned timeout_ms);

}  // namespace vtime::vmm
