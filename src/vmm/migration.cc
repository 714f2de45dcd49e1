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

constexpr std::uint8_t kMagic[8] = {'V', 'T', 'M', 'I', 'G', 'R', '\0', 1};
constexpr std::uint8_t kPrecopyVersion = 2;
constexpr std::uint8_t kRecordPages = 1;
constexpr std::uint8_t kRecordSnapshot = 2;
constexpr std::uint32_t kMaxRunPages = 4096;  // 16 MiB per pages record
// A destination takes at most this many copies of RAM in pages records
// before it calls the stream runaway.
constexpr std::uint64_t kMaxRamCopies = 32;
constexpr std::size_t kChunk = 1 << 20;

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

// The kCorrupt test fault: a copy with one byte in the middle flipped.
std::vector<std::uint8_t> Corrupted(std::span<const std::uint8_t> bytes) {
  std::vector<std::uint8_t> out(bytes.begin(), bytes.end());
  if (!out.empty()) out[out.size() / 2] ^= 0x40;
  return out;
}

Result<void> WriteAll(int fd, std::span<const std::uint8_t> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysFail("migration stream: send");
    }
    bytes = bytes.subspan(static_cast<std::size_t>(n));
  }
  return Ok();
}

Result<void> ReadAll(int fd, std::span<std::uint8_t> bytes, unsigned timeout_ms) {
  while (!bytes.empty()) {
    if (auto w = Wait(fd, POLLIN, timeout_ms, "migration stream: receive"); !w) return w;
    const ssize_t n = ::recv(fd, bytes.data(), bytes.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return SysFail("migration stream: receive");
    }
    if (n == 0) {
      return Fail(ErrorCode::kMalformed, "migration stream: the other side closed the link with " +
                                             std::to_string(bytes.size()) + " bytes still to come");
    }
    bytes = bytes.subspan(static_cast<std::size_t>(n));
  }
  return Ok();
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

Result<kvm::Fd> ConnectTo(const Endpoint& to, unsigned timeout_ms) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(to.port);
  ::inet_pton(AF_INET, to.host.c_str(), &sa.sin_addr);
  const std::string where = to.host + ":" + std::to_string(to.port);
  // The destination may still be starting: retry refused connections.
  const unsigned step_ms = 100;
  for (unsigned waited = 0;; waited += step_ms) {
    kvm::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
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

Result<kvm::Fd> AcceptOne(std::uint16_t port, unsigned timeout_ms) {
  kvm::Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener.valid()) return SysFail("socket");
  int one = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    return SysFail("listening on port " + std::to_string(port));
  }
  if (::listen(listener.get(), 1) != 0) return SysFail("listen");
  if (timeout_ms != 0) {
    if (auto w = Wait(listener.get(), POLLIN, timeout_ms,
                      "waiting for a migration on port " + std::to_string(port));
        !w) {
      return tl::unexpected(w.error());
    }
  }
  for (;;) {
    const int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      NoDelay(fd);
      return kvm::Fd(fd);
    }
    if (errno != EINTR) return SysFail("accepting the source");
  }
}

Result<void> SendSnapshot(int fd, std::span<const std::uint8_t> snapshot, const Progress& progress,
                          StreamFault fault) {
  wire::Writer header;
  header.Bytes(kMagic);
  header.U64(snapshot.size());
  if (auto r = WriteAll(fd, header.Take()); !r) return r;
  std::vector<std::uint8_t> corrupted;
  if (fault == StreamFault::kCorrupt) {
    corrupted = Corrupted(snapshot);
    snapshot = corrupted;
  }
  const std::size_t limit = fault == StreamFault::kTruncate ? snapshot.size() / 2 : snapshot.size();
  for (std::size_t done = 0; done < limit;) {
    const std::size_t n = std::min(kChunk, limit - done);
    if (auto r = WriteAll(fd, snapshot.subspan(done, n)); !r) return r;
    done += n;
    if (progress) progress(done, snapshot.size());
  }
  if (fault == StreamFault::kTruncate) {
    ::shutdown(fd, SHUT_WR);
    return Fail(ErrorCode::kSystem, "migration stream: cut half way (test fault)");
  }
  return Ok();
}

Result<void> SendPrecopyHeader(int fd, std::uint64_t ram_size) {
  wire::Writer w;
  std::uint8_t magic[8];
  std::memcpy(magic, kMagic, 8);
  magic[7] = kPrecopyVersion;
  w.Bytes(magic);
  w.U64(ram_size);
  return WriteAll(fd, w.Take());
}

Result<std::uint64_t> SendPages(int fd, std::span<const std::uint8_t> ram,
                                std::span<const std::uint64_t> pages, StreamFault fault) {
  const std::uint64_t total = ram.size() / kPageSize;
  auto is_set = [&](std::uint64_t i) { return ((pages[i / 64] >> (i % 64)) & 1) != 0; };
  if (pages.size() * 64 < total) {
    return Fail(ErrorCode::kInvalidArgument, "migration: the page bitmap is too short");
  }
  std::uint64_t sent = 0;
  for (std::uint64_t i = 0; i < total;) {
    if (!is_set(i)) {
      ++i;
      continue;
    }
    std::uint64_t n = 1;
    while (i + n < total && n < kMaxRunPages && is_set(i + n)) ++n;
    wire::Writer w;
    w.U8(kRecordPages);
    w.U64(i);
    w.U32(static_cast<std::uint32_t>(n));
    if (auto r = WriteAll(fd, w.Take()); !r) return tl::unexpected(r.error());
    auto data = ram.subspan(i * kPageSize, n * kPageSize);
    if (fault == StreamFault::kTruncate) {
      (void)WriteAll(fd, data.first(data.size() / 2));
      ::shutdown(fd, SHUT_WR);
      return Fail(ErrorCode::kSystem, "migration stream: cut half way (test fault)");
    }
    if (auto r = WriteAll(fd, data); !r) return tl::unexpected(r.error());
    sent += n;
    i += n;
  }
  return sent;
}

Result<void> SendFinalSnapshot(int fd, std::span<const std::uint8_t> snapshot, StreamFault fault) {
  wire::Writer w;
  w.U8(kRecordSnapshot);
  w.U64(snapshot.size());
  if (auto r = WriteAll(fd, w.Take()); !r) return r;
  if (fault == StreamFault::kCorrupt) return WriteAll(fd, Corrupted(snapshot));
  return WriteAll(fd, snapshot);
}

namespace {

Result<std::vector<std::uint8_t>> ReadSized(int fd, std::uint64_t length, std::uint64_t max_bytes,
                                            const Progress& progress) {
  if (length > max_bytes) {
    return Fail(ErrorCode::kOutOfRange, "migration stream: announces " + std::to_string(length) +
                                            " bytes, more than the " + std::to_string(max_bytes) +
                                            " accepted");
  }
  std::vector<std::uint8_t> data(static_cast<std::size_t>(length));
  for (std::size_t done = 0; done < data.size();) {
    const std::size_t n = std::min(kChunk, data.size() - done);
    if (auto rr = ReadAll(fd, std::span(data).subspan(done, n), 60'000); !rr) {
      return tl::unexpected(rr.error());
    }
    done += n;
    if (progress) progress(done, data.size());
  }
  return data;
}

Result<IncomingMigration> ReceivePrecopy(int fd, std::uint64_t max_bytes, std::uint64_t max_ram,
                                         const Progress& progress) {
  std::uint8_t size_bytes[8];
  if (auto r = ReadAll(fd, size_bytes, 60'000); !r) return tl::unexpected(r.error());
  const std::uint64_t ram_size = *wire::Reader(size_bytes, "migration stream").U64();
  if (ram_size == 0 || ram_size % kPageSize != 0 || ram_size > max_ram) {
    return Fail(ErrorCode::kOutOfRange, "migration stream: RAM of " + std::to_string(ram_size) +
                                            " bytes (whole 4 KiB pages, at most " +
                                            std::to_string(max_ram) + ")");
  }
  IncomingMigration in;
  in.ram.emplace(static_cast<std::size_t>(ram_size), 0);
  const std::uint64_t total = ram_size / kPageSize;
  std::uint64_t first_copy = 0;  // bytes of the first pass, for progress
  for (;;) {
    std::uint8_t kind = 0;
    if (auto r = ReadAll(fd, std::span(&kind, 1), 60'000); !r) return tl::unexpected(r.error());
    if (kind == kRecordSnapshot) {
      std::uint8_t len[8];
      if (auto r = ReadAll(fd, len, 60'000); !r) return tl::unexpected(r.error());
      auto snap = ReadSized(fd, *wire::Reader(len, "migration stream").U64(), max_bytes, {});
      if (!snap) return tl::unexpected(snap.error());
      in.snapshot = std::move(*snap);
      return in;
    }
    if (kind != kRecordPages) {
      return Fail(ErrorCode::kMalformed,
                  "migration stream: unknown record kind " + std::to_string(kind));
    }
    std::uint8_t head[12];
    if (auto r = ReadAll(fd, head, 60'000); !r) return tl::unexpected(r.error());
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
    auto dest = std::span(*in.ram).subspan(first * kPageSize, std::uint64_t{count} * kPageSize);
    if (auto r = ReadAll(fd, dest, 60'000); !r) return tl::unexpected(r.error());
    if (progress && first_copy < ram_size) {
      first_copy = std::min(ram_size, first_copy + dest.size());
      progress(first_copy, ram_size);
    }
  }
}

}  // namespace

Result<IncomingMigration> ReceiveMigration(int fd, std::uint64_t max_bytes, std::uint64_t max_ram,
                                           const Progress& progress) {
  std::uint8_t magic[8];
  if (auto r = ReadAll(fd, magic, 60'000); !r) return tl::unexpected(r.error());
  if (std::memcmp(magic, kMagic, 7) != 0) {
    return Fail(ErrorCode::kMalformed, "migration stream: not a vtvmm migration (bad magic)");
  }
  if (magic[7] == kPrecopyVersion) return ReceivePrecopy(fd, max_bytes, max_ram, progress);
  if (magic[7] != kMagic[7]) {
    return Fail(ErrorCode::kUnsupported, "migration stream: version " + std::to_string(magic[7]) +
                                             ", this vtvmm speaks 1 and 2");
  }
  std::uint8_t len[8];
  if (auto r = ReadAll(fd, len, 60'000); !r) return tl::unexpected(r.error());
  auto snap = ReadSized(fd, *wire::Reader(len, "migration stream").U64(), max_bytes, progress);
  if (!snap) return tl::unexpected(snap.error());
  IncomingMigration in;
  in.snapshot = std::move(*snap);
  return in;
}

Result<void> SendVerdict(int fd, bool accepted, const std::string& reason) {
  wire::Writer w;
  w.U8(accepted ? 0 : 1);
  const std::string line = reason.substr(0, 4096);
  w.U32(static_cast<std::uint32_t>(line.size()));
  w.Bytes(std::span(reinterpret_cast<const std::uint8_t*>(line.data()), line.size()));
  return WriteAll(fd, w.Take());
}

Result<Verdict> ReceiveVerdict(int fd, unsigned timeout_ms) {
  std::uint8_t head[5];
  if (auto r = ReadAll(fd, head, timeout_ms); !r) return tl::unexpected(r.error());
  wire::Reader r(std::span<const std::uint8_t>(head + 1, 4), "verdict");
  const std::uint32_t n = *r.U32();
  if (head[0] > 1 || n > 4096) return Fail(ErrorCode::kMalformed, "migration: garbled verdict");
  std::string reason(n, '\0');
  if (n != 0) {
    if (auto rr =
            ReadAll(fd, std::span(reinterpret_cast<std::uint8_t*>(reason.data()), n), timeout_ms);
        !rr) {
      return tl::unexpected(rr.error());
    }
  }
  return Verdict{head[0] == 0, reason};
}

}  // namespace vtime::vmm
