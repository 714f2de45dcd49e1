// Throughput of a Link over a TCP loopback connection on this host: plain
// TCP against TLS 1.3 with a pre-shared key (AES-128-GCM and AES-256-GCM),
// 1 MiB per WriteAll, a reader thread draining the other end. What a
// migration stream pays for encryption, at most: loopback costs nothing
// else. Run: build/bench/link_bench (bytes_per_second is the figure).
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "vmm/link.h"
#include "vmm/tls.h"

namespace vtime::vmm {
namespace {

constexpr std::size_t kChunk = 1 << 20;
constexpr unsigned kTimeoutMs = 10'000;

enum class Transport { kPlain, kTlsAes128, kTlsAes256 };

// A PSK file with a random key of `bytes` bytes, removed with the object.
struct PskFile {
  std::string path;
  explicit PskFile(std::size_t bytes) {
    path = (std::filesystem::temp_directory_path() / "vtime-link-bench-XXXXXX").string();
    const int fd = ::mkstemp(path.data());
    if (fd >= 0) ::close(fd);
    std::random_device random;
    std::string line = "bench:";
    for (std::size_t i = 0; i < bytes; ++i) {
      std::array<char, 3> hex{};
      std::snprintf(hex.data(), hex.size(), "%02x", static_cast<unsigned>(random() & 0xff));
      line += hex.data();
    }
    std::ofstream(path) << line << "\n";
  }
  ~PskFile() { std::filesystem::remove(path); }
  PskFile(const PskFile&) = delete;
  PskFile& operator=(const PskFile&) = delete;
};

struct Ends {
  std::unique_ptr<Link> writer;
  std::unique_ptr<Link> reader;
};

// A connected pair of loopback TCP sockets, as Links of `transport`.
Result<Ends> Connect(Transport transport) {
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::listen(listener.get(), 1) != 0 ||
      ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Fail(ErrorCode::kSystem, "loopback listener", errno);
  }
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return Fail(ErrorCode::kSystem, "connect", errno);
  }
  Fd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!server.valid()) return Fail(ErrorCode::kSystem, "accept", errno);
  if (transport == Transport::kPlain) {
    return Ends{PlainLink(std::move(client)), PlainLink(std::move(server))};
  }
  const PskFile psk(transport == Transport::kTlsAes256 ? 48 : 32);
  auto c = LoadTlsCredentials({TlsConfig::Kind::kPsk, psk.path}, TlsRole::kClient);
  auto s = LoadTlsCredentials({TlsConfig::Kind::kPsk, psk.path}, TlsRole::kServer);
  if (!c) return tl::unexpected(c.error());
  if (!s) return tl::unexpected(s.error());
  Result<std::unique_ptr<Link>> server_link = Fail(ErrorCode::kBadState, "not run");
  std::thread t([&] { server_link = TlsHandshake(std::move(server), **s, kTimeoutMs); });
  auto client_link = TlsHandshake(std::move(client), **c, kTimeoutMs);
  t.join();
  if (!client_link) return tl::unexpected(client_link.error());
  if (!server_link) return tl::unexpected(server_link.error());
  return Ends{std::move(*client_link), std::move(*server_link)};
}

void BM_LinkThroughput(benchmark::State& state, Transport transport) {
  auto ends = Connect(transport);
  if (!ends) {
    state.SkipWithError(ends.error().Message().c_str());
    return;
  }
  state.SetLabel(ends->writer->Describe());
  // The reader drains 1 MiB at a time until the writer's close.
  std::thread reader([&] {
    std::vector<std::uint8_t> sink(kChunk);
    while (ends->reader->ReadAll(sink, kTimeoutMs)) {
    }
  });
  const std::vector<std::uint8_t> chunk(kChunk, 0x5a);
  for (auto _ : state) {
    if (!ends->writer->WriteAll(chunk)) {
      state.SkipWithError("WriteAll failed");
      break;
    }
  }
  ends->writer->CloseWrite();
  reader.join();
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(kChunk));
}

BENCHMARK_CAPTURE(BM_LinkThroughput, plain_tcp, Transport::kPlain)->UseRealTime();
BENCHMARK_CAPTURE(BM_LinkThroughput, tls_psk_aes128, Transport::kTlsAes128)->UseRealTime();
BENCHMARK_CAPTURE(BM_LinkThroughput, tls_psk_aes256, Transport::kTlsAes256)->UseRealTime();

}  // namespace
}  // namespace vtime::vmm

BENCHMARK_MAIN();
