// vtime-clocksync: brings one machine's CLOCK_REALTIME to another's over TCP
// with NTP-style request/response exchanges, and measures the difference of
// the two machines' arm64 counters (CNTVCT_EL0). Built for the two-machine
// lab (lab/pair), where each machine's clock starts from its own RTC and
// each counter from its own VM start.
//
// Each exchange: the client reads t1 (CLOCK_REALTIME) and sends a request;
// the server reads t2 on receipt, its counter, and t3 before replying; the
// client reads t4 on receipt. offset = ((t2 - t1) + (t3 - t4)) / 2 is the
// server's clock minus the client's, delay = (t4 - t1) - (t3 - t2) the round
// trip on the wire. The exchange with the smallest delay wins: its offset is
// wrong by at most delay / 2, whatever the asymmetry of the two directions.
//
// The exchanges run over a Link (src/vmm/link.h): TLS 1.3 with a PSK or
// x509 credentials, or plain TCP only when asked for with --insecure. The
// server binds the address the operator gave and lets no exchange run
// before the peer is authenticated. TLS costs both directions alike, which
// the offset formula cancels; it only adds to the round trip, hence the
// bound.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vmm/link.h"
#include "vmm/tls.h"
#include "vtime/fd.h"
#include "vtime/result.h"

namespace {

using vtime::ErrorCode;
using vtime::Fail;
using vtime::Fd;
using vtime::Ok;
using vtime::Result;
using vtime::vmm::Link;
using vtime::vmm::TlsConfig;
using vtime::vmm::TlsCredentials;
using vtime::vmm::TlsRole;

constexpr const char* kHelp = R"(Usage: vtime-clocksync serve ADDRESS:PORT [--timeout SECS] AUTH
       vtime-clocksync sync HOST PORT [--rounds N] [--apply] AUTH
AUTH is one of:
       --tls-psk FILE   TLS 1.3 with a pre-shared key (QEMU's keys.psk format,
                        lines IDENTITY:HEXKEY, mode 0600; scripts/mkcreds psk)
       --tls-x509 DIR   TLS 1.3 with certificates (QEMU's layout: ca-cert.pem,
                        server-cert.pem/-key.pem, client-cert.pem/-key.pem;
                        scripts/mkcreds x509); both sides show one
       --insecure       plain TCP: anyone who can reach the port is answered
                        and anyone on the path can shift the result

serve  on the reference machine: listens on ADDRESS (a numeric IPv4 address,
       or an IPv6 one in brackets: [fd00::1]:5555) and TCP port PORT, and
       answers one authenticated client's exchanges until it says it is
       done, then exits. A connection that fails the TLS handshake is
       refused (said on stderr) and the next one awaited.
       --timeout: how long to wait for the client (default 120 s).
sync   on the machine to set: connects to HOST (a numeric IPv4 or IPv6
       address) on PORT, authenticates the server, does N (default 64)
       NTP-style exchanges, keeps the one with the smallest round trip and
       prints
         clocksync: link: <TLS version, cipher and peer, or plain TCP>
         clocksync: offset_ns=<server - local> rtt_ns=<n> error_bound_ns=<rtt/2>
       --apply steps the local CLOCK_REALTIME by the offset
       (clock_adjtime ADJ_SETOFFSET, needs CAP_SYS_TIME), measures again and
       prints the same figures on a "clocksync: after" line.
       Then it prints the difference of the two counters (CNTVCT_EL0, read on
       arm64 only; 0 elsewhere), server minus local, estimated at the
       midpoint of the exchange with the smallest round trip of all:
         clocksync: counter_difference_ticks=<n>

The connect, the handshake and each exchange time out after 5 s. Exit
status: 0 on success, 1 on any error, 2 for a bad command line.
)";

constexpr int64_t kNsPerSec = 1'000'000'000;
constexpr int kExchangeTimeoutMs = 5000;
constexpr int kIdleTimeoutMs = 60'000;  // Server: longest pause between requests.
constexpr int kDefaultRounds = 64;
constexpr int kMaxRounds = 1'000'000;
constexpr uint64_t kRequestMagic = 0x7674'636c'6f63'6b31;   // "vtclock1"
constexpr uint64_t kResponseMagic = 0x7674'636c'6f63'6b32;  // "vtclock2"
// The client's last request: the server stops answering and exits. Over TLS
// an end said inside the link, which no one on the path can forge.
constexpr uint64_t kDoneMagic = 0x7674'636c'646f'6e65;  // "vtcldone"
// Message sizes in 64-bit words. A request: magic, sequence number. A
// response: magic, sequence number, t2, t3, counter, counter frequency.
constexpr size_t kRequestWords = 2;
constexpr size_t kResponseWords = 6;

// ---------------------------------------------------------------- clocks

int64_t RealtimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * kNsPerSec + ts.tv_nsec;
}

int64_t MonotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

// The virtual counter (CNTVCT_EL0); 0 on other architectures.
uint64_t ReadCounter() {
#if defined(__aarch64__)
  uint64_t value;
  asm volatile("isb\n\tmrs %0, cntvct_el0" : "=r"(value) : : "memory");
  return value;
#else
  return 0;
#endif
}

// The counter's frequency (CNTFRQ_EL0); 0 on other architectures.
uint64_t CounterFrequency() {
#if defined(__aarch64__)
  uint64_t value;
  asm volatile("mrs %0, cntfrq_el0" : "=r"(value));
  return value;
#else
  return 0;
#endif
}

// ---------------------------------------------------------------- sockets

// A failed system call, with its errno.
Result<void> SysFail(std::string context, int err) {
  return Fail(ErrorCode::kSystem, std::move(context), err);
}

// Waits until fd is ready for `events` or the deadline (CLOCK_MONOTONIC ms)
// passes; `what` names the wait in the error.
Result<void> WaitFor(int fd, short events, int64_t deadline_ms, std::string_view what) {
  for (;;) {
    const int64_t left = deadline_ms - MonotonicMs();
    if (left <= 0) {
      return Fail(ErrorCode::kBadState, "timed out " + std::string(what));
    }
    pollfd pfd{fd, events, 0};
    const int n = poll(&pfd, 1, static_cast<int>(left));
    if (n > 0) return Ok();
    if (n < 0 && errno != EINTR) return SysFail("poll " + std::string(what), errno);
  }
}

using Words = std::vector<uint64_t>;

// Messages are 64-bit words, little-endian on the wire.
std::vector<uint8_t> Encode(const Words& words) {
  std::vector<uint8_t> bytes;
  bytes.reserve(words.size() * 8);
  for (uint64_t w : words) {
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(w >> (8 * i)));
  }
  return bytes;
}

Words Decode(const std::vector<uint8_t>& bytes) {
  Words words(bytes.size() / 8, 0);
  for (size_t i = 0; i < words.size(); ++i) {
    for (std::size_t b = 0; b < 8; ++b) words[i] |= uint64_t{bytes[i * 8 + b]} << (8 * b);
  }
  return words;
}

Result<void> SendWords(Link& link, const Words& words) {
  const std::vector<uint8_t> bytes = Encode(words);
  return link.WriteAll(bytes);
}

Result<Words> ReceiveWords(Link& link, size_t count, int timeout_ms, std::string_view what) {
  std::vector<uint8_t> bytes(count * 8);
  if (auto r = link.ReadAll(bytes, static_cast<unsigned>(timeout_ms)); !r) {
    auto error = r.error();
    error.context = std::string(what) + ": " + error.context;
    return tl::unexpected(error);
  }
  return Decode(bytes);
}

Result<void> SetNoDelay(int fd) {
  const int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    return SysFail("setsockopt TCP_NODELAY", errno);
  }
  return Ok();
}

// A numeric IPv4 or IPv6 address and a port.
struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

Result<Endpoint> ParseEndpoint(const std::string& host, uint16_t port) {
  Endpoint ep;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ep.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    ep.len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    ep.len = sizeof *v6;
  } else {
    return Fail(ErrorCode::kInvalidArgument,
                "HOST '" + host + "' is not a numeric IPv4 or IPv6 address");
  }
  return ep;
}

// Connects with a timeout; the socket stays non-blocking.
Result<Fd> Connect(const std::string& host, uint16_t port) {
  auto ep = ParseEndpoint(host, port);
  if (!ep) return tl::unexpected(ep.error());
  const std::string where = host + " port " + std::to_string(port);
  Fd fd(socket(ep->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Fail(ErrorCode::kSystem, "socket", errno);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&ep->addr), ep->len) != 0) {
    if (errno != EINPROGRESS) {
      return Fail(ErrorCode::kSystem, "cannot connect to " + where, errno);
    }
    const std::string what = "connecting to " + where;
    if (auto r = WaitFor(fd.get(), POLLOUT, MonotonicMs() + kExchangeTimeoutMs, what); !r) {
      return tl::unexpected(r.error());
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return Fail(ErrorCode::kSystem, "cannot connect to " + where, err);
  }
  if (auto r = SetNoDelay(fd.get()); !r) return tl::unexpected(r.error());
  return fd;
}

// ---------------------------------------------------------------- links

// How the two ends authenticate each other: loaded credentials, or none
// (--insecure).
struct Auth {
  std::shared_ptr<const TlsCredentials> tls;
};

Result<Auth> LoadAuth(const std::optional<TlsConfig>& config, TlsRole role) {
  Auth auth;
  if (!config) return auth;
  auto creds = vtime::vmm::LoadTlsCredentials(*config, role);
  if (!creds) return tl::unexpected(creds.error());
  auth.tls = *creds;
  return auth;
}

std::string DescribeAuth(const Auth& auth) {
  return auth.tls ? "TLS, " + vtime::vmm::DescribeTlsCredentials(*auth.tls)
                  : "plain TCP, --insecure";
}

// Makes a Link of a connected socket: the TLS handshake, or plain TCP (on
// a blocking socket, as PlainLink expects).
Result<std::unique_ptr<Link>> OpenLink(Fd fd, const Auth& auth) {
  if (auth.tls) return vtime::vmm::TlsHandshake(std::move(fd), *auth.tls, kExchangeTimeoutMs);
  const int flags = fcntl(fd.get(), F_GETFL);
  if (flags < 0 || fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) < 0) {
    return Fail(ErrorCode::kSystem, "fcntl O_NONBLOCK", errno);
  }
  return vtime::vmm::PlainLink(std::move(fd));
}

// "10.0.0.2 port 41234" for a connected peer.
std::string PeerOf(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  std::array<char, INET6_ADDRSTRLEN> text{};
  uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, text.data(), text.size());
    port = ntohs(a->sin_port);
  } else {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, text.data(), text.size());
    port = ntohs(a->sin6_port);
  }
  return std::string(text.data()) + " port " + std::to_string(port);
}

// ---------------------------------------------------------------- server

Result<void> Serve(const Endpoint& where_to, const std::string& where, int accept_timeout_s,
                   const Auth& auth) {
  Fd listener(socket(where_to.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) return SysFail("socket", errno);
  const int one = 1;
  setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (where_to.addr.ss_family == AF_INET6) {
    setsockopt(listener.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (bind(listener.get(), reinterpret_cast<const sockaddr*>(&where_to.addr), where_to.len) != 0) {
    return SysFail("bind " + where, errno);
  }
  if (listen(listener.get(), 4) != 0) return SysFail("listen on " + where, errno);
  std::printf("clocksync: serving on %s (%s)\n", where.c_str(), DescribeAuth(auth).c_str());
  std::fflush(stdout);

  // The first connection that authenticates is the client; others are
  // refused and said so.
  const int64_t accept_deadline = MonotonicMs() + int64_t{accept_timeout_s} * 1000;
  std::unique_ptr<Link> link;
  while (link == nullptr) {
    if (auto r = WaitFor(listener.get(), POLLIN, accept_deadline, "waiting for a client"); !r) {
      return r;
    }
    Fd conn(accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (conn.get() < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      return SysFail("accept on " + where, errno);
    }
    if (auto r = SetNoDelay(conn.get()); !r) return r;
    const std::string peer = PeerOf(conn.get());
    auto opened = OpenLink(std::move(conn), auth);
    if (!opened) {
      std::fflush(stdout);
      std::fprintf(stderr, "vtime-clocksync: refused %s: %s\n", peer.c_str(),
                   opened.error().Message().c_str());
      continue;
    }
    link = std::move(*opened);
    std::printf("clocksync: client %s: %s\n", peer.c_str(), link->Describe().c_str());
    std::fflush(stdout);
  }

  const uint64_t frequency = CounterFrequency();
  uint64_t exchanges = 0;
  for (;;) {
    auto request =
        ReceiveWords(*link, kRequestWords, kIdleTimeoutMs, "waiting for the next request");
    const int64_t t2 = RealtimeNs();
    if (!request) return tl::unexpected(request.error());
    const Words& req = *request;
    if (req[0] == kDoneMagic) break;
    if (req[0] != kRequestMagic) {
      return Fail(ErrorCode::kMalformed, "the client sent something that is not a request");
    }
    const uint64_t counter = ReadCounter();
    const int64_t t3 = RealtimeNs();
    const Words reply = {
        kResponseMagic, req[1],   static_cast<uint64_t>(t2), static_cast<uint64_t>(t3),
        counter,        frequency};
    if (auto r = SendWords(*link, reply); !r) return r;
    ++exchanges;
  }
  link->CloseWrite();
  std::printf("clocksync: served %llu exchanges\n", static_cast<unsigned long long>(exchanges));
  return Ok();
}

// ---------------------------------------------------------------- client

// One exchange, as seen by the client.
struct Exchange {
  int64_t offset_ns = 0;           // Server clock minus local clock.
  int64_t rtt_ns = 0;              // Round trip on the wire (server time excluded).
  int64_t counter_difference = 0;  // Server counter minus local, at the midpoint.
  uint64_t remote_frequency = 0;
};

Result<Exchange> DoExchange(Link& link, uint64_t sequence) {
  const uint64_t c1 = ReadCounter();
  const int64_t t1 = RealtimeNs();
  if (auto r = SendWords(link, {kRequestMagic, sequence}); !r) return tl::unexpected(r.error());
  auto reply =
      ReceiveWords(link, kResponseWords, kExchangeTimeoutMs, "waiting for the server's reply");
  const int64_t t4 = RealtimeNs();
  const uint64_t c4 = ReadCounter();
  if (!reply) return tl::unexpected(reply.error());
  const Words& w = *reply;
  if (w[0] != kResponseMagic || w[1] != sequence) {
    return Fail(ErrorCode::kMalformed, "the server's reply is not the answer to this request");
  }
  const auto t2 = static_cast<int64_t>(w[2]);
  const auto t3 = static_cast<int64_t>(w[3]);
  Exchange e;
  e.offset_ns = ((t2 - t1) + (t3 - t4)) / 2;
  e.rtt_ns = (t4 - t1) - (t3 - t2);
  e.counter_difference = static_cast<int64_t>(w[4] - (c1 + (c4 - c1) / 2));
  e.remote_frequency = w[5];
  return e;
}

// Runs `rounds` exchanges; returns the one with the smallest round trip.
Result<Exchange> Measure(Link& link, int rounds, uint64_t& sequence) {
  std::optional<Exchange> best;
  for (int i = 0; i < rounds; ++i) {
    auto e = DoExchange(link, ++sequence);
    if (!e) {
      auto error = e.error();
      error.context = "exchange " + std::to_string(i + 1) + ": " + error.context;
      return tl::unexpected(error);
    }
    if (!best || e->rtt_ns < best->rtt_ns) best = *e;
  }
  return *best;
}

void PrintMeasurement(const char* label, const Exchange& e) {
  std::printf("clocksync: %soffset_ns=%lld rtt_ns=%lld error_bound_ns=%lld\n", label,
              static_cast<long long>(e.offset_ns), static_cast<long long>(e.rtt_ns),
              static_cast<long long>(e.rtt_ns / 2));
  std::fflush(stdout);
}

// Adds offset_ns to CLOCK_REALTIME in the kernel, in one step.
Result<void> StepClock(int64_t offset_ns) {
  timex tx{};
  tx.modes = ADJ_SETOFFSET | ADJ_NANO;
  // The kernel wants tv_usec (nanoseconds here) in [0, 1e9).
  int64_t sec = offset_ns / kNsPerSec;
  int64_t nsec = offset_ns % kNsPerSec;
  if (nsec < 0) {
    nsec += kNsPerSec;
    sec -= 1;
  }
  tx.time.tv_sec = static_cast<time_t>(sec);
  tx.time.tv_usec = static_cast<suseconds_t>(nsec);
  if (clock_adjtime(CLOCK_REALTIME, &tx) < 0) {
    return SysFail("clock_adjtime(CLOCK_REALTIME, ADJ_SETOFFSET)", errno);
  }
  return Ok();
}

Result<void> Sync(const std::string& host, uint16_t port, int rounds, bool apply,
                  const Auth& auth) {
  auto fd = Connect(host, port);
  if (!fd) return tl::unexpected(fd.error());
  auto opened = OpenLink(std::move(*fd), auth);
  if (!opened) return tl::unexpected(opened.error());
  Link& link = **opened;
  std::printf("clocksync: link: %s\n", link.Describe().c_str());
  uint64_t sequence = 0;
  auto before = Measure(link, rounds, sequence);
  if (!before) return tl::unexpected(before.error());
  PrintMeasurement("", *before);
  Exchange best = *before;
  if (apply) {
    if (auto r = StepClock(before->offset_ns); !r) return r;
    std::printf("clocksync: stepped CLOCK_REALTIME by %lld ns\n",
                static_cast<long long>(before->offset_ns));
    auto after = Measure(link, rounds, sequence);
    if (!after) return tl::unexpected(after.error());
    PrintMeasurement("after ", *after);
    if (after->rtt_ns < best.rtt_ns) best = *after;
  }
  const uint64_t frequency = CounterFrequency();
  std::printf("clocksync: counter_difference_ticks=%lld\n",
              static_cast<long long>(best.counter_difference));
  // The counter difference is as uncertain as the clock offset: half the
  // exchange's round trip, in ticks.
  const long double bound_ticks = static_cast<long double>(best.rtt_ns) / 2 * frequency / kNsPerSec;
  std::printf(
      "clocksync: counter_frequency_hz=%llu remote_counter_frequency_hz=%llu "
      "counter_error_bound_ticks=%lld\n",
      static_cast<unsigned long long>(frequency),
      static_cast<unsigned long long>(best.remote_frequency), static_cast<long long>(bound_ticks));
  // Said inside the link, so that the server ends on our word alone.
  if (auto r = SendWords(link, {kDoneMagic, ++sequence}); !r) return r;
  link.CloseWrite();
  return Ok();
}

// ---------------------------------------------------------------- arguments

template <class T>
std::optional<T> ParseNumber(std::string_view text, T min, T max) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    return std::nullopt;
  }
  return value;
}

Result<uint16_t> ParsePort(std::string_view text) {
  auto port = ParseNumber<uint16_t>(text, 1, std::numeric_limits<uint16_t>::max());
  if (!port) return Fail(ErrorCode::kInvalidArgument, "bad PORT '" + std::string(text) + "'");
  return *port;
}

// ADDRESS:PORT, ADDRESS a numeric IPv4 address or an IPv6 one in brackets.
Result<std::pair<std::string, uint16_t>> ParseAddressPort(std::string_view text) {
  const std::string given(text);
  if (text.find(':') == std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "serve needs ADDRESS:PORT, the address to listen on too (e.g. serve 10.0.0.1:" +
                    given + "); listening on every address is no longer offered");
  }
  std::string_view host;
  std::string_view port;
  if (text.front() == '[') {
    const std::size_t close = text.find("]:");
    if (close == std::string_view::npos) {
      return Fail(ErrorCode::kInvalidArgument, "bad ADDRESS:PORT '" + given + "' ([IPv6]:PORT)");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Fail(ErrorCode::kInvalidArgument,
                  "bad ADDRESS:PORT '" + given + "': put an IPv6 address in brackets");
    }
  }
  auto p = ParsePort(port);
  if (!p) return tl::unexpected(p.error());
  return std::make_pair(std::string(host), *p);
}

// What the command line asks for.
struct Command {
  bool serve = false;
  std::string host;
  uint16_t port = 0;
  int timeout_s = 120;
  int rounds = kDefaultRounds;
  bool apply = false;
  std::optional<TlsConfig> tls;  // Empty with --insecure.
};

// Parses the command line; every failure here is a usage error.
Result<Command> Parse(const std::vector<std::string_view>& args) {
  if (args.empty()) return Fail(ErrorCode::kInvalidArgument, "no command (see --help)");
  Command c;
  const std::string_view command = args[0];
  size_t i = 1;
  if (command == "serve") {
    c.serve = true;
    if (args.size() < 2) return Fail(ErrorCode::kInvalidArgument, "serve needs ADDRESS:PORT");
    auto where = ParseAddressPort(args[1]);
    if (!where) return tl::unexpected(where.error());
    c.host = where->first;
    c.port = where->second;
    i = 2;
  } else if (command == "sync") {
    if (args.size() < 3) return Fail(ErrorCode::kInvalidArgument, "sync needs HOST and PORT");
    auto port = ParsePort(args[2]);
    if (!port) return tl::unexpected(port.error());
    c.host = std::string(args[1]);
    c.port = *port;
    i = 3;
  } else {
    return Fail(ErrorCode::kInvalidArgument,
                "unknown command '" + std::string(command) + "' (serve or sync; see --help)");
  }
  int auth_options = 0;
  for (; i < args.size(); ++i) {
    const std::string_view a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "--tls-psk" || a == "--tls-x509") {
      if (!has_value) return Fail(ErrorCode::kInvalidArgument, std::string(a) + " needs a path");
      c.tls = TlsConfig{a == "--tls-psk" ? TlsConfig::Kind::kPsk : TlsConfig::Kind::kX509,
                        std::string(args[++i])};
      ++auth_options;
    } else if (a == "--insecure") {
      ++auth_options;
    } else if (c.serve && a == "--timeout" && has_value) {
      auto t = ParseNumber<int>(args[++i], 1, 86'400);
      if (!t) return Fail(ErrorCode::kInvalidArgument, "--timeout needs 1..86400 seconds");
      c.timeout_s = *t;
    } else if (!c.serve && a == "--rounds" && has_value) {
      auto n = ParseNumber<int>(args[++i], 1, kMaxRounds);
      if (!n) {
        return Fail(ErrorCode::kInvalidArgument, "--rounds needs 1.." + std::to_string(kMaxRounds));
      }
      c.rounds = *n;
    } else if (!c.serve && a == "--apply") {
      c.apply = true;
    } else {
      return Fail(ErrorCode::kInvalidArgument,
                  std::string(command) + ": unexpected argument '" + std::string(a) + "'");
    }
  }
  if (auth_options == 0) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string(command) +
                    " needs to know how to authenticate the peer: --tls-psk FILE, --tls-x509 DIR, "
                    "or --insecure for plain TCP");
  }
  if (auth_options > 1) {
    return Fail(ErrorCode::kInvalidArgument,
                "give one of --tls-psk, --tls-x509 and --insecure, not several");
  }
  return c;
}

Result<void> Run(const Command& c) {
  auto auth = LoadAuth(c.tls, c.serve ? TlsRole::kServer : TlsRole::kClient);
  if (!auth) return tl::unexpected(auth.error());
  if (c.serve) {
    auto ep = ParseEndpoint(c.host, c.port);
    if (!ep) return tl::unexpected(ep.error());
    const std::string where = (ep->addr.ss_family == AF_INET6 ? "[" + c.host + "]" : c.host) +
                              " port " + std::to_string(c.port);
    return Serve(*ep, where, c.timeout_s, *auth);
  }
  return Sync(c.host, c.port, c.rounds, c.apply, *auth);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::string_view a : args) {
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
  }
  auto command = Parse(args);
  if (!command) {
    std::fprintf(stderr, "vtime-clocksync: %s (see --help)\n", command.error().context.c_str());
    return 2;
  }
  if (auto r = Run(*command); !r) {
    std::fflush(stdout);
    std::fprintf(stderr, "vtime-clocksync: error: %s\n", r.error().Message().c_str());
    return 1;
  }
  return 0;
}
