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
#include <arpa/inet.h>
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

#include "vtime/result.h"

namespace {

using vtime::ErrorCode;
using vtime::Fail;
using vtime::Ok;
using vtime::Result;

constexpr const char* kHelp = R"(Usage: vtime-clocksync serve PORT [--timeout SECS]
       vtime-clocksync sync HOST PORT [--rounds N] [--apply]

serve  on the reference machine: accepts one connection on TCP port PORT (all
       addresses), answers its exchanges until the client closes it, exits.
       --timeout: how long to wait for the client (default 120 s).
sync   on the machine to set: connects to HOST (a numeric IPv4 or IPv6
       address) on PORT, does N (default 64) NTP-style exchanges, keeps the
       one with the smallest round trip and prints
         clocksync: offset_ns=<server - local> rtt_ns=<n> error_bound_ns=<rtt/2>
       --apply steps the local CLOCK_REALTIME by the offset
       (clock_adjtime ADJ_SETOFFSET, needs CAP_SYS_TIME), measures again and
       prints the same figures on a "clocksync: after" line.
       Then it prints the difference of the two counters (CNTVCT_EL0, read on
       arm64 only; 0 elsewhere), server minus local, estimated at the
       midpoint of the exchange with the smallest round trip of all:
         clocksync: counter_difference_ticks=<n>

Each exchange times out after 5 s. Exit status: 0 on success, 1 on any error.
)";

constexpr int64_t kNsPerSec = 1'000'000'000;
constexpr int kExchangeTimeoutMs = 5000;
constexpr int kIdleTimeoutMs = 60'000;  // Server: longest pause between requests.
constexpr int kDefaultRounds = 64;
constexpr int kMaxRounds = 1'000'000;
constexpr uint64_t kRequestMagic = 0x7674'636c'6f63'6b31;   // "vtclock1"
constexpr uint64_t kResponseMagic = 0x7674'636c'6f63'6b32;  // "vtclock2"
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

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Close(); }

  [[nodiscard]] int get() const { return fd_; }

 private:
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

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

Result<void> SendWords(int fd, const Words& words, int64_t deadline_ms) {
  const std::vector<uint8_t> bytes = Encode(words);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n >= 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return SysFail("send", errno);
    if (auto r = WaitFor(fd, POLLOUT, deadline_ms, "sending"); !r) return r;
  }
  return Ok();
}

// Receives `count` words. std::nullopt: the peer closed the connection
// cleanly before the first byte. Tries recv before waiting, so that a reply
// already there costs no poll.
Result<std::optional<Words>> ReceiveWords(int fd, size_t count, int64_t deadline_ms,
                                          std::string_view what) {
  std::vector<uint8_t> bytes(count * 8);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = recv(fd, bytes.data() + done, bytes.size() - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0) {
      if (done == 0) return std::optional<Words>{};
      return Fail(ErrorCode::kMalformed, "the peer closed the connection mid-message");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (auto r = WaitFor(fd, POLLIN, deadline_ms, what); !r) return tl::unexpected(r.error());
    } else if (errno != EINTR) {
      return Fail(ErrorCode::kSystem, "recv", errno);
    }
  }
  return std::optional<Words>{Decode(bytes)};
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

// ---------------------------------------------------------------- server

Result<void> Serve(uint16_t port, int accept_timeout_s) {
  Fd listener(socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  bool v6 = listener.get() >= 0;
  if (!v6) listener = Fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) return SysFail("socket", errno);
  const int one = 1;
  const int zero = 0;
  setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (v6) {
    // Dual-stack: IPv4 clients arrive as mapped addresses.
    setsockopt(listener.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_any;
    a->sin6_port = htons(port);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_ANY);
    a->sin_port = htons(port);
    len = sizeof *a;
  }
  const std::string where = "TCP port " + std::to_string(port);
  if (bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    return SysFail("bind " + where, errno);
  }
  if (listen(listener.get(), 1) != 0) return SysFail("listen on " + where, errno);
  std::printf("clocksync: serving on %s\n", where.c_str());
  std::fflush(stdout);

  const int64_t accept_deadline = MonotonicMs() + int64_t{accept_timeout_s} * 1000;
  Fd conn;
  while (conn.get() < 0) {
    if (auto r = WaitFor(listener.get(), POLLIN, accept_deadline, "waiting for a client"); !r) {
      return r;
    }
    conn = Fd(accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (conn.get() < 0 && errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
      return SysFail("accept on " + where, errno);
    }
  }
  if (auto r = SetNoDelay(conn.get()); !r) return r;

  const uint64_t frequency = CounterFrequency();
  uint64_t exchanges = 0;
  for (;;) {
    auto request = ReceiveWords(conn.get(), kRequestWords, MonotonicMs() + kIdleTimeoutMs,
                                "waiting for the next request");
    const int64_t t2 = RealtimeNs();
    if (!request) return tl::unexpected(request.error());
    if (!*request) break;  // The client is done.
    const Words& req = **request;
    if (req[0] != kRequestMagic) {
      return Fail(ErrorCode::kMalformed, "the client sent something that is not a request");
    }
    const uint64_t counter = ReadCounter();
    const int64_t t3 = RealtimeNs();
    const Words reply = {
        kResponseMagic, req[1],   static_cast<uint64_t>(t2), static_cast<uint64_t>(t3),
        counter,        frequency};
    if (auto r = SendWords(conn.get(), reply, MonotonicMs() + kExchangeTimeoutMs); !r) return r;
    ++exchanges;
  }
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

Result<Exchange> DoExchange(int fd, uint64_t sequence) {
  const int64_t deadline = MonotonicMs() + kExchangeTimeoutMs;
  const uint64_t c1 = ReadCounter();
  const int64_t t1 = RealtimeNs();
  if (auto r = SendWords(fd, {kRequestMagic, sequence}, deadline); !r) {
    return tl::unexpected(r.error());
  }
  auto reply = ReceiveWords(fd, kResponseWords, deadline, "waiting for the server's reply");
  const int64_t t4 = RealtimeNs();
  const uint64_t c4 = ReadCounter();
  if (!reply) return tl::unexpected(reply.error());
  if (!*reply) return Fail(ErrorCode::kBadState, "the server closed the connection");
  const Words& w = **reply;
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
Result<Exchange> Measure(int fd, int rounds, uint64_t& sequence) {
  std::optional<Exchange> best;
  for (int i = 0; i < rounds; ++i) {
    auto e = DoExchange(fd, ++sequence);
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

Result<void> Sync(const std::string& host, uint16_t port, int rounds, bool apply) {
  auto fd = Connect(host, port);
  if (!fd) return tl::unexpected(fd.error());
  uint64_t sequence = 0;
  auto before = Measure(fd->get(), rounds, sequence);
  if (!before) return tl::unexpected(before.error());
  PrintMeasurement("", *before);
  Exchange best = *before;
  if (apply) {
    if (auto r = StepClock(before->offset_ns); !r) return r;
    std::printf("clocksync: stepped CLOCK_REALTIME by %lld ns\n",
                static_cast<long long>(before->offset_ns));
    auto after = Measure(fd->get(), rounds, sequence);
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

Result<void> Run(const std::vector<std::string_view>& args) {
  if (args.empty()) return Fail(ErrorCode::kInvalidArgument, "no command (see --help)");
  const std::string_view command = args[0];
  if (command == "serve") {
    if (args.size() < 2) return Fail(ErrorCode::kInvalidArgument, "serve needs a PORT");
    auto port = ParsePort(args[1]);
    if (!port) return tl::unexpected(port.error());
    int timeout_s = 120;
    for (size_t i = 2; i < args.size(); ++i) {
      if (args[i] == "--timeout" && i + 1 < args.size()) {
        auto t = ParseNumber<int>(args[++i], 1, 86'400);
        if (!t) return Fail(ErrorCode::kInvalidArgument, "--timeout needs 1..86400 seconds");
        timeout_s = *t;
      } else {
        return Fail(ErrorCode::kInvalidArgument,
                    "serve: unexpected argument '" + std::string(args[i]) + "'");
      }
    }
    return Serve(*port, timeout_s);
  }
  if (command == "sync") {
    if (args.size() < 3) return Fail(ErrorCode::kInvalidArgument, "sync needs HOST and PORT");
    auto port = ParsePort(args[2]);
    if (!port) return tl::unexpected(port.error());
    int rounds = kDefaultRounds;
    bool apply = false;
    for (size_t i = 3; i < args.size(); ++i) {
      if (args[i] == "--rounds" && i + 1 < args.size()) {
        auto n = ParseNumber<int>(args[++i], 1, kMaxRounds);
        if (!n) {
          return Fail(ErrorCode::kInvalidArgument,
                      "--rounds needs 1.." + std::to_string(kMaxRounds));
        }
        rounds = *n;
      } else if (args[i] == "--apply") {
        apply = true;
      } else {
        return Fail(ErrorCode::kInvalidArgument,
                    "sync: unexpected argument '" + std::string(args[i]) + "'");
      }
    }
    return Sync(std::string(args[1]), *port, rounds, apply);
  }
  return Fail(ErrorCode::kInvalidArgument,
              "unknown command '" + std::string(command) + "' (serve or sync; see --help)");
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
  if (auto r = Run(args); !r) {
    std::fflush(stdout);
    std::fprintf(stderr, "vtime-clocksync: error: %s\n", r.error().Message().c_str());
    return 1;
  }
  return 0;
}
