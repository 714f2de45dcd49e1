// A byte stream between two vtvmm processes (or two vtime-clocksync ends):
// plain TCP, or TLS 1.3 over it (see tls.h). The migration stream and its
// hand-over talk through this, so the transport is chosen in one place.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "vtime/fd.h"
#include "vtime/result.h"

namespace vtime::vmm {

/// One connected stream. Not thread-safe: one reader and writer at a time.
class Link {
 public:
  virtual ~Link() = default;
  /// Sends every byte or fails (kSystem with errno).
  virtual Result<void> WriteAll(std::span<const std::uint8_t> bytes) = 0;
  /// Receives exactly `bytes.size()` bytes, waiting at most `timeout_ms` for
  /// each piece to arrive. The other side closing first is kMalformed:
  /// "... closed the link with N bytes still to come".
  virtual Result<void> ReadAll(std::span<std::uint8_t> bytes, unsigned timeout_ms) = 0;
  /// Ends our direction (TLS: close_notify first); the other side reads EOF.
  virtual void CloseWrite() = 0;
  /// The socket underneath (for poll and for tests).
  [[nodiscard]] virtual int fd() const = 0;
  /// "plain TCP" or the TLS version, cipher and how the peer was
  /// authenticated, for logs.
  [[nodiscard]] virtual std::string Describe() const = 0;
};

/// Plain TCP (or any stream socket): takes ownership of `fd`.
std::unique_ptr<Link> PlainLink(Fd fd);

}  // namespace vtime::vmm
