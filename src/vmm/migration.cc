#include "vmm/migration.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "vtime/wire.h"

namespace vtime::vmm {
namespace {

constexpr std::uint8_t kMagic[7] = {'V', 'T', 'M', 'I', 'G', 'R', '\0'};
constexpr std::uint32_t kFlagPrecopy = 1;
constexpr std::uint8_t kRecordPages = 1;
constexpr std::uint8_t kRecordSnapshot = 2;
constexpr std::uint8_t kRecordZeroPages = 3;  // version 4
constexpr std::uint32_t kMaxRunPages = 4096;  // 16 MiB per pages record
// A destination takes at most this many copies of RAM in pages records
// before it calls the stream runaway.
constexpr std::uint64_t kMaxRamCopies = 32;
constexpr std::size_t kChunk = 1 << 20;
// The peer's next byte of the stream must come within this.
constexpr unsigned kStreamTimeoutMs = 60'000;
constexpr std::uint32_t kMaxReason = 4096;

tl::unexpected<Error> SysFail(const std::string& what, int err = errno) {
  return Fail(ErrorCode::kSystem, what, err);
}

// Waits until fd is readable (or writable), or fails after timeout_ms.
Result<void> Wait(int fd, short events, unsigned timeout_ms, const std::string& what) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, static_cast<int>(timeout_ms));
    if (r > 0) return Ok();
    if (r == 0) {
      return Fail(ErrorCode::kSystem,
                  std::string(what) + ": timed out after " + std::to_string(timeout_ms) + " ms");
    }
    if (errno != EINTR) return SysFail(what);
  }
}

bool IsZeroPage(std::span<const std::uint8_t> page) {
  static const std::uint8_t kZeros[kPageSize] = {};
  return std::memcmp(page.data(), kZeros, kPageSize) == 0;
}

// The kCorrupt test fault: a copy with one byte in the middle flipped.
std::vector<std::uint8_t> Corrupted(std::span<const std::uint8_t> bytes) {
  std::vector<std::uint8_t> out(bytes.begin(), bytes.end());
  if (!out.empty()) out[out.size() / 2] ^= 0x40;
  return out;
}

void NoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

Result<Endpoint> ParseEndpoint(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Fail(ErrorCode::kInvalidArgument,
                "'" + std::string(text) + "': expected ADDRESS:PORT (numeric IPv4)");
  }
  Endpoint ep;
  ep.host = std::string(text.substr(0, colon));
  const std::string_view port = text.substr(colon + 1);
  unsigned value = 0;
  const auto r = std::from_chars(port.data(), port.data() + port.size(), value);
  if (r.ec != std::errc() || r.ptr != port.data() + port.size() || value == 0 || value > 65535) {
    return Fail(ErrorCode::kInvalidArgument, "'" + std::string(text) + "': bad port");
  }
  in_addr addr{};
  if (::inet_pton(AF_INET, ep.host.c_str(), &addr) != 1) {
    return Fail(ErrorCode::kInvalidArgument, "'" + ep.host + "' is not a numeric IPv4 address");
  }
  ep.port = static_cast<std::uint16_t>(value);
  return ep;
}

Progress PrintTenths(std::string verb) {
  return [verb = std::move(verb), last = -1](std::uint64_t done, std::uint64_t total) mutable {
    const int tenth = total == 0 ? 10 : static_cast<int>(done * 10 / total);
    if (tenth == last) return;
    last = tenth;
    std::fprintf(stderr, "vtvmm: migration: %s %.1f of %.1f MiB (%d%%)\n", verb.c_str(),
                 static_cast<double>(done) / (1 << 20), static_cast<double>(total) / (1 << 20),
                 tenth * 10);
  };
}

Result<Fd> ConnectTo(const Endpoint& to, unsigned timeout_ms) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(to.port);
  ::inet_pton(AF_INET, to.host.c_str(), &sa.sin_addr);
  const std::string where = to.host + ":" + std::to_string(to.port);
  // The destination may still be starting: retry refused connections.
  const unsigned step_ms = 100;
  for (unsigned waited = 0;; waited += step_ms) {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return SysFail("socket");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0) {
      NoDelay(fd.get());
      return fd;
    }
    const int err = errno;
    if ((err != ECONNREFUSED && err != EINTR) || waited >= timeout_ms) {
      return SysFail("connecting to the destination " + where, err);
    }
    ::usleep(step_ms * 1000);
  }
}

Result<Fd> Listen(const Endpoint& on) {
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener.valid()) return SysFail("socket");
  int one = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(on.port);
  if (::inet_pton(AF_INET, on.host.c_str(), &sa.sin_addr) != 1) {
    return Fail(ErrorCode::kInvalidArgument, "'" + on.host + "' is not a numeric IPv4 address");
  }
  const std::string where = on.host + ":" + std::to_string(on.port);
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    return SysFail("listening on " + where);
  }
  if (::listen(listener.get(), 4) != 0) return SysFail("listen on " + where);
  return listener;
}

Result<Fd> AcceptOne(int listener, unsigned timeout_ms, std::string* peer) {
  if (timeout_ms != 0) {
    if (auto w = Wait(listener, POLLIN, timeout_ms, "waiting for a migration"); !w) {
      return tl::unexpected(w.error());
    }
  }
  for (;;) {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    const int fd = ::accept4(listener, reinterpret_cast<sockaddr*>(&sa), &len, SOCK_CLOEXEC);
    if (fd >= 0) {
      NoDelay(fd);
      if (peer != nullptr) {
        char text[INET_ADDRSTRLEN] = "?";
        ::inet_ntop(AF_INET, &sa.sin_addr, text, sizeof text);
        *peer = std::string(text) + ":" + std::to_string(ntohs(sa.sin_port));
      }
      return Fd(fd);
    }
    if (errno != EINTR) return SysFail("accepting the source");
  }
}

Result<void> SendHello(Link& link, const StreamHello& hello) {
  wire::Writer w;
  w.Bytes(kMagic);
  w.U8(kStreamVersion);
  w.U64(hello.ram_size);
  w.U32(hello.cpus);
  w.U32(hello.precopy ? kFlagPrecopy : 0);
  return link.WriteAll(w.Take());
}

Result<std::uint64_t> SendPages(Link& link, std::span<const std::uint8_t> ram,
                                std::span<const std::uint64_t> pages, StreamFault fault,
                                const Progress& progress) {
  const std::uint64_t total = ram.size() / kPageSize;
  auto is_set = [&](std::uint64_t i) { return ((pages[i / 64] >> (i % 64)) & 1) != 0; };
  if (pages.size() * 64 < total) {
    return Fail(ErrorCode::kInvalidArgument, "migration: the page bitmap is too short");
  }
  std::uint64_t wanted = 0;
  if (progress) {
    for (std::uint64_t i = 0; i < total; ++i) if (is_set(i)) ++wanted;
  }
  std::uint64_t sent = 0;
  for (std::uint64_t i = 0; i < total;) {
    if (!is_set(i)) {
      ++i;
      continue;
    }
    // A run of set pages that are all zero, or all not.
    auto zero = [&](std::uint64_t p) { return IsZeroPage(ram.subspan(p * kPageSize, kPageSize)); };
    const bool zeros = zero(i);
    std::uint64_t n = 1;
    while (i + n < total && n < kMaxRunPages && is_set(i + n) && zero(i + n) == zeros) ++n;
    wire::Writer w;
    w.U8(zeros ? kRecordZeroPages : kRecordPages);
    w.U64(i);
    w.U32(static_cast<std::uint32_t>(n));
    if (auto r = link.WriteAll(w.Take()); !r) return tl::unexpected(r.error());
    if (zeros) {
      sent += n;
      i += n;
      if (progress) progress(sent * kPageSize, wanted * kPageSize);
      continue;
    }
    auto data = ram.subspan(i * kPageSize, n * kPageSize);
    if (fault == StreamFault::kTruncate) {
      (void)link.WriteAll(data.first(data.size() / 2));
      link.CloseWrite();
      return Fail(ErrorCode::kSystem, "migration stream: cut half way (test fault)");
    }
    if (auto r = link.WriteAll(data); !r) return tl::unexpected(r.error());
    sent += n;
    i += n;
    if (progress) progress(sent * kPageSize, wanted * kPageSize);
  }
  return sent;
}

Result<void> SendFinalSnapshot(Link& link, std::span<const std::uint8_t> snapshot,
                               StreamFault fault) {
  wire::Writer w;
  w.U8(kRecordSnapshot);
  w.U64(snapshot.size());
  if (auto r = link.WriteAll(w.Take()); !r) return r;
  if (fault == StreamFault::kCorrupt) return link.WriteAll(Corrupted(snapshot));
  return link.WriteAll(snapshot);
}

namespace {

Result<StreamHello> ReceiveHello(Link& link, const IncomingLimits& limits) {
  std::uint8_t magic[8];
  if (auto r = link.ReadAll(magic, kStreamTimeoutMs); !r) return tl::unexpected(r.error());
  if (std::memcmp(magic, kMagic, sizeof kMagic) != 0) {
    return Fail(ErrorCode::kMalformed, "migration stream: not a vtvmm migration (bad magic)");
  }
  if (magic[7] == 1 || magic[7] == 2) {
    return Fail(ErrorCode::kUnsupported,
                "migration stream: version " + std::to_string(magic[7]) +
                    " comes from a vtvmm without the hand-over protocol, with which a failure "
                    "after the verdict could lose the VM: upgrade the source (this vtvmm "
                    "speaks versions 3 and 4)");
  }
  if (magic[7] != 3 && magic[7] != kStreamVersion) {
    return Fail(ErrorCode::kUnsupported, "migration stream: version " + std::to_string(magic[7]) +
                                             ", this vtvmm speaks versions 3 and 4");
  }
  std::uint8_t body[16];
  if (auto r = link.ReadAll(body, kStreamTimeoutMs); !r) return tl::unexpected(r.error());
  wire::Reader rd(body, "migration stream");
  StreamHello hello;
  hello.version = magic[7];
  hello.ram_size = *rd.U64();
  hello.cpus = *rd.U32();
  const std::uint32_t flags = *rd.U32();
  hello.precopy = (flags & kFlagPrecopy) != 0;
  if ((flags & ~kFlagPrecopy) != 0) {
    return Fail(ErrorCode::kUnsupported,
                "migration stream: unknown flags " + std::to_string(flags & ~kFlagPrecopy));
  }
  if (hello.ram_size == 0 || hello.ram_size % kPageSize != 0) {
    return Fail(ErrorCode::kMalformed, "migration stream: RAM of " +
                                           std::to_string(hello.ram_size) +
                                           " bytes is not a whole number of 4 KiB pages");
  }
  if (hello.ram_size > limits.max_ram) {
    return Fail(ErrorCode::kOutOfRange,
                "migration stream: the source's VM has " + std::to_string(hello.ram_size >> 20) +
                    " MiB of RAM, more than the " + std::to_string(limits.max_ram >> 20) +
                    " MiB this destination takes (--max-memory)");
  }
  if (hello.cpus == 0 || hello.cpus > limits.max_cpus) {
    return Fail(ErrorCode::kOutOfRange,
                "migration stream: the source's VM has " + std::to_string(hello.cpus) +
                    " vCPUs; this destination takes 1 to " + std::to_string(limits.max_cpus) +
                    " (--max-cpus)");
  }
  return hello;
}

}  // namespace

Result<IncomingMigration> ReceiveMigration(Link& link, const IncomingLimits& limits,
                                           const RamSink& sink, const Progress& progress) {
  auto hello = ReceiveHello(link, limits);
  if (!hello) return tl::unexpected(hello.error());
  // Only now, with the size checked against this side's own limits, is
  // guest memory made (and pages land in it directly: one copy).
  auto ram = sink(*hello);
  if (!ram) return tl::unexpected(ram.error());
  if (ram->size() != hello->ram_size) {
    return Fail(ErrorCode::kBadState, "migration: guest memory of the wrong size");
  }
  IncomingMigration in;
  in.hello = *hello;
  const std::uint64_t total = hello->ram_size / kPageSize;
  std::uint64_t first_copy = 0;  // bytes of the first pass, for progress
  for (;;) {
    std::uint8_t kind = 0;
    if (auto r = link.ReadAll(std::span(&kind, 1), kStreamTimeoutMs); !r) {
      return tl::unexpected(r.error());
    }
    if (kind == kRecordSnapshot) {
      std::uint8_t len[8];
      if (auto r = link.ReadAll(len, kStreamTimeoutMs); !r) return tl::unexpected(r.error());
      const std::uint64_t length = *wire::Reader(len, "migration stream").U64();
      if (length > limits.max_snapshot) {
        return Fail(ErrorCode::kOutOfRange, "migration stream: a snapshot of " +
                                                std::to_string(length) + " bytes, more than the " +
                                                std::to_string(limits.max_snapshot) +
                                                " accepted for " + std::to_string(hello->cpus) +
                                                " vCPUs");
      }
      in.snapshot.resize(static_cast<std::size_t>(length));
      for (std::size_t done = 0; done < in.snapshot.size();) {
        const std::size_t n = std::min(kChunk, in.snapshot.size() - done);
        if (auto r = link.ReadAll(std::span(in.snapshot).subspan(done, n), kStreamTimeoutMs); !r) {
          return tl::unexpected(r.error());
        }
        done += n;
      }
      return in;
    }
    const bool zeros = kind == kRecordZeroPages && hello->version >= 4;
    if (kind != kRecordPages && !zeros) {
      return Fail(ErrorCode::kMalformed,
                  "migration stream: unknown record kind " + std::to_string(kind));
    }
    std::uint8_t head[12];
    if (auto r = link.ReadAll(head, kStreamTimeoutMs); !r) return tl::unexpected(r.error());
    wire::Reader hr(head, "migration stream");
    const std::uint64_t first = *hr.U64();
    const std::uint32_t count = *hr.U32();
    if (count == 0 || count > kMaxRunPages || first >= total || count > total - first) {
      return Fail(ErrorCode::kMalformed, "migration stream: pages " + std::to_string(first) +
                                             " + " + std::to_string(count) + " outside " +
                                             std::to_string(total) + " pages of RAM");
    }
    in.pages_received += count;
    if (in.pages_received > kMaxRamCopies * total) {
      return Fail(ErrorCode::kOutOfRange, "migration stream: more than " +
                                              std::to_string(kMaxRamCopies) +
                                              " copies of RAM: refusing a runaway stream");
    }
    auto dest = ram->subspan(first * kPageSize, std::uint64_t{count} * kPageSize);
    if (zeros) {
      // Only a page that holds something is written: reading one never
      // touched costs no memory, writing it would.
      for (std::uint64_t p = 0; p < count; ++p) {
        auto page = dest.subspan(p * kPageSize, kPageSize);
        if (!IsZeroPage(page)) std::memset(page.data(), 0, page.size());
      }
    } else if (auto r = link.ReadAll(dest, kStreamTimeoutMs); !r) {
      return tl::unexpected(r.error());
    }
    if (progress && first_copy < hello->ram_size) {
      first_copy = std::min(hello->ram_size, first_copy + dest.size());
      progress(first_copy, hello->ram_size);
    }
  }
}

std::string_view NameOf(Handover kind) {
  switch (kind) {
    case Handover::kRestored:
      return "restored";
    case Handover::kRefused:
      return "refused";
    case Handover::kRunning:
      return "running";
    case Handover::kFailed:
      return "failed";
    case Handover::kGo:
      return "go";
  }
  return "?";
}

Result<void> SendHandover(Link& link, Handover kind, std::string_view reason) {
  wire::Writer w;
  w.U8(static_cast<std::uint8_t>(kind));
  const std::string_view line = reason.substr(0, kMaxReason);
  w.U32(static_cast<std::uint32_t>(line.size()));
  w.Bytes(std::span(reinterpret_cast<const std::uint8_t*>(line.data()), line.size()));
  return link.WriteAll(w.Take());
}

Result<HandoverMessage> ReceiveHandover(Link& link, unsigned timeout_ms) {
  std::uint8_t head[5];
  if (auto r = link.ReadAll(head, timeout_ms); !r) return tl::unexpected(r.error());
  wire::Reader r(std::span<const std::uint8_t>(head + 1, 4), "hand-over");
  const std::uint32_t n = *r.U32();
  if (head[0] > static_cast<std::uint8_t>(Handover::kGo) || n > kMaxReason) {
    return Fail(ErrorCode::kMalformed, "migration: garbled hand-over message (kind " +
                                           std::to_string(head[0]) + ", " + std::to_string(n) +
                                           " bytes)");
  }
  HandoverMessage m{static_cast<Handover>(head[0]), std::string(n, '\0')};
  if (n != 0) {
    if (auto rr = link.ReadAll(std::span(reinterpret_cast<std::uint8_t*>(m.reason.data()), n),
                               timeout_ms);
        !rr) {
      return tl::unexpected(rr.error());
    }
  }
  return m;
}

}  // namespace vtime::vmm
