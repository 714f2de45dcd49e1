#include "vtime/trace/timeline.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "vtime/wire.h"

namespace vtime::trace {

namespace {

constexpr wire::Magic kMagic = {'V', 'T', 'T', 'L', 'I', 'N', 'E', 0};
constexpr std::uint32_t kMaxVcpus = 4096;
constexpr std::size_t kMaxHostName = 256;
constexpr std::size_t kEventBytes = 48;
constexpr std::size_t kMinHostBytes = 16;  // an empty name's length, the frequency
constexpr std::uint64_t kOpen = std::numeric_limits<std::uint64_t>::max();

std::string At(std::size_t i, const Event& e) {
  return "timeline event " + std::to_string(i) + " (" + std::string(NameOf(e.kind)) + " on host " +
         std::to_string(e.host) + " at count " + std::to_string(e.host_count) + ")";
}

// One stretch of one host's counter over which a vCPU counter is the host's
// minus one offset: [from, to) on `host`.
struct Piece {
  std::uint32_t host;
  std::uint64_t from;
  std::uint64_t to;
  std::uint64_t offset;
  std::size_t run;  // which run of the guest, for messages
};

// How many host counts a piece covers. One no pause ended runs on for 2^62
// ticks (over two thousand years at 62.5 MHz), not round the whole 2^64
// circle, where it would cover every guest count.
constexpr std::uint64_t kOpenLength = std::uint64_t{1} << 62;
std::uint64_t Length(const Piece& p) {
  return p.to == kOpen ? std::min(kOpen - p.from, kOpenLength) : p.to - p.from;
}

// The pieces of vCPU `vcpu`'s counter `which`, in timeline order. The
// timeline must be valid.
std::vector<Piece> PiecesOf(const Timeline& t, std::uint32_t vcpu, GuestCounter which) {
  std::vector<Piece> pieces;
  std::uint64_t voff = 0, poff = 0, nested = 0;
  bool running = false;
  std::size_t run = 0;
  auto close = [&](std::uint64_t at) {
    if (!pieces.empty() && pieces.back().to == kOpen) pieces.back().to = at;
  };
  auto offset = [&] { return which == GuestCounter::kVirtual ? voff + nested : poff; };
  auto split = [&](const Event& e) {
    const std::uint64_t off = offset();
    // A change that leaves this counter's offset as it was does not split it.
    if (!pieces.empty() && pieces.back().to == kOpen && pieces.back().offset == off) return;
    close(e.host_count);
    pieces.push_back(Piece{e.host, e.host_count, kOpen, off, run});
  };
  for (const Event& e : t.events) {
    switch (e.kind) {
      case EventKind::kStart:
        voff = e.virtual_offset;
        poff = e.physical_offset;
        running = true;
        ++run;
        pieces.push_back(Piece{e.host, e.host_count, kOpen, offset(), run});
        break;
      case EventKind::kOffsets:
        voff = e.virtual_offset;
        poff = e.physical_offset;
        if (running) split(e);
        break;
      case EventKind::kNestedOffset:
        if (e.vcpu != vcpu) break;
        nested = e.cntvoff;
        if (running) split(e);
        break;
      case EventKind::kPause:
        close(e.host_count);
        running = false;
        break;
    }
  }
  // Zero-length pieces (a change at the count a run started) cover nothing.
  std::erase_if(pieces, [](const Piece& p) { return p.from == p.to; });
  return pieces;
}

std::string Describe(const Piece& p) {
  const std::uint64_t guest_from = p.from - p.offset;
  const std::uint64_t len = Length(p);
  return "run " + std::to_string(p.run) + " on host " + std::to_string(p.host) + " from count " +
         std::to_string(p.from) + ": guest counts " + std::to_string(guest_from) +
         (p.to == kOpen ? std::string(" on") : " to " + std::to_string(guest_from + len));
}

}  // namespace

std::string_view NameOf(EventKind k) {
  switch (k) {
    case EventKind::kStart:
      return "start";
    case EventKind::kOffsets:
      return "offsets";
    case EventKind::kPause:
      return "pause";
    case EventKind::kNestedOffset:
      return "nested-offset";
  }
  return "unknown";
}

Result<void> Timeline::Validate() const {
  if (vcpus == 0 || vcpus > kMaxVcpus) {
    return Fail(ErrorCode::kOutOfRange, "timeline: " + std::to_string(vcpus) + " vCPUs (1.." +
                                            std::to_string(kMaxVcpus) + ")");
  }
  if (hosts.empty()) return Fail(ErrorCode::kMalformed, "timeline: no host");
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    if (hosts[i].counter_frequency_hz == 0) {
      return Fail(ErrorCode::kMalformed,
                  "timeline: host " + std::to_string(i) + " has no counter frequency");
    }
    if (hosts[i].name.size() > kMaxHostName) {
      return Fail(ErrorCode::kOutOfRange, "timeline: host " + std::to_string(i) +
                                              "'s name is over " + std::to_string(kMaxHostName) +
                                              " bytes");
    }
  }
  if (events.empty() || events.front().kind != EventKind::kStart) {
    return Fail(ErrorCode::kMalformed, "timeline: the first event must start the guest");
  }
  std::vector<std::uint64_t> last(hosts.size(), 0);
  std::vector<bool> seen(hosts.size(), false);
  bool running = false;
  std::uint32_t on = 0;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const Event& e = events[i];
    switch (e.kind) {
      case EventKind::kStart:
      case EventKind::kOffsets:
      case EventKind::kPause:
      case EventKind::kNestedOffset:
        break;
      default:
        return Fail(ErrorCode::kMalformed, At(i, e) + ": no such event kind");
    }
    if (e.host >= hosts.size()) {
      return Fail(ErrorCode::kMalformed,
                  At(i, e) + ": the timeline has " + std::to_string(hosts.size()) + " host(s)");
    }
    if (seen[e.host] && e.host_count < last[e.host]) {
      return Fail(ErrorCode::kMalformed, At(i, e) + ": that host's counter was already at " +
                                             std::to_string(last[e.host]));
    }
    if (e.kind == EventKind::kStart) {
      if (running) return Fail(ErrorCode::kMalformed, At(i, e) + ": the guest is running already");
      running = true;
      on = e.host;
    } else {
      if (!running) {
        return Fail(ErrorCode::kMalformed, At(i, e) + ": the guest is paused (no start before it)");
      }
      if (e.host != on) {
        return Fail(ErrorCode::kMalformed,
                    At(i, e) + ": the guest runs on host " + std::to_string(on));
      }
      if (e.kind == EventKind::kPause) running = false;
      if (e.kind == EventKind::kNestedOffset && e.vcpu >= vcpus) {
        return Fail(ErrorCode::kMalformed,
                    At(i, e) + ": vCPU " + std::to_string(e.vcpu) + " of " + std::to_string(vcpus));
      }
    }
    seen[e.host] = true;
    last[e.host] = e.host_count;
  }
  return {};
}

Result<HostPoint> Timeline::ToHost(std::uint32_t vcpu, GuestCounter which,
                                   std::uint64_t guest_count) const {
  if (auto v = Validate(); !v) return tl::unexpected(v.error());
  if (vcpu >= vcpus) {
    return Fail(ErrorCode::kOutOfRange,
                "vCPU " + std::to_string(vcpu) + " of a " + std::to_string(vcpus) + "-vCPU guest");
  }
  const std::vector<Piece> pieces = PiecesOf(*this, vcpu, which);
  const Piece* hit = nullptr;
  std::string covered;
  std::size_t listed = 0;
  for (const Piece& p : pieces) {
    const std::uint64_t guest_from = p.from - p.offset;
    if (listed < 4) {
      covered += (listed++ == 0 ? "" : ", ") + Describe(p);
    }
    if (guest_count - guest_from >= Length(p)) continue;  // (modulo 2^64)
    if (hit != nullptr) {
      return Fail(ErrorCode::kBadState,
                  "guest count " + std::to_string(guest_count) + " of vCPU " +
                      std::to_string(vcpu) + " is in two stretches (" + Describe(*hit) + "; " +
                      Describe(p) +
                      "): the guest's counter went back between them, so the count "
                      "does not say when it was read");
    }
    hit = &p;
  }
  if (hit == nullptr) {
    return Fail(
        ErrorCode::kOutOfRange,
        "guest count " + std::to_string(guest_count) + " of vCPU " + std::to_string(vcpu) +
            " is in no run of the timeline (it covers " +
            (pieces.empty() ? std::string("none") : covered) +
            (pieces.size() > listed ? " and " + std::to_string(pieces.size() - listed) + " more"
                                    : "") +
            ")");
  }
  return HostPoint{hit->host, guest_count + hit->offset};
}

Result<std::uint64_t> Timeline::ToGuest(std::uint32_t vcpu, GuestCounter which,
                                        HostPoint at) const {
  if (auto v = Validate(); !v) return tl::unexpected(v.error());
  if (vcpu >= vcpus) {
    return Fail(ErrorCode::kOutOfRange,
                "vCPU " + std::to_string(vcpu) + " of a " + std::to_string(vcpus) + "-vCPU guest");
  }
  for (const Piece& p : PiecesOf(*this, vcpu, which)) {
    if (p.host == at.host && at.count - p.from < Length(p)) return at.count - p.offset;
  }
  return Fail(ErrorCode::kOutOfRange, "host " + std::to_string(at.host) + " count " +
                                          std::to_string(at.count) +
                                          ": the guest was not running there then");
}

std::vector<std::uint8_t> Timeline::Encode() const {
  wire::Writer w;
  w.U32(vcpus);
  w.U32(static_cast<std::uint32_t>(hosts.size()));
  for (const Host& h : hosts) {
    w.Blob(std::span(reinterpret_cast<const std::uint8_t*>(h.name.data()), h.name.size()));
    w.U64(h.counter_frequency_hz);
  }
  w.U64(events.size());
  for (const Event& e : events) {
    w.U16(static_cast<std::uint16_t>(e.kind));
    w.U16(0);
    w.U32(e.host);
    w.U64(e.host_count);
    w.U64(e.virtual_offset);
    w.U64(e.physical_offset);
    w.U32(e.vcpu);
    w.U32(0);
    w.U64(e.cntvoff);
  }
  const std::vector<std::uint8_t> payload = w.Take();
  return wire::Frame(kMagic, kTimelineFormatVersion, payload);
}

Result<Timeline> Timeline::Decode(std::span<const std::uint8_t> bytes) {
  auto frame = wire::Unframe(bytes, kMagic, kTimelineFormatVersion, "offset timeline");
  if (!frame) return tl::unexpected(frame.error());
  wire::Reader r(frame->payload, "offset timeline");
  Timeline t;
  auto vcpus = r.U32();
  auto nhosts = r.U32();
  if (!vcpus || !nhosts) return tl::unexpected((!vcpus ? vcpus : nhosts).error());
  t.vcpus = *vcpus;
  if (*nhosts > r.remaining() / kMinHostBytes) {
    return Fail(ErrorCode::kMalformed,
                "offset timeline: " + std::to_string(*nhosts) + " hosts do not fit in the file");
  }
  t.hosts.reserve(*nhosts);
  for (std::uint32_t i = 0; i < *nhosts; ++i) {
    auto name = r.Blob();
    if (!name) return tl::unexpected(name.error());
    if (name->size() > kMaxHostName) {
      return Fail(ErrorCode::kOutOfRange, "offset timeline: host " + std::to_string(i) +
                                              "'s name is over " + std::to_string(kMaxHostName) +
                                              " bytes");
    }
    auto hz = r.U64();
    if (!hz) return tl::unexpected(hz.error());
    t.hosts.push_back(Host{std::string(name->begin(), name->end()), *hz});
  }
  auto nevents = r.U64();
  if (!nevents) return tl::unexpected(nevents.error());
  if (*nevents != r.remaining() / kEventBytes || r.remaining() % kEventBytes != 0) {
    return Fail(ErrorCode::kMalformed, "offset timeline: " + std::to_string(*nevents) +
                                           " events, but " + std::to_string(r.remaining()) +
                                           " bytes of them");
  }
  t.events.reserve(static_cast<std::size_t>(*nevents));
  for (std::uint64_t i = 0; i < *nevents; ++i) {
    Event e;
    // (The sizes were checked above: these reads cannot fail.)
    e.kind = static_cast<EventKind>(*r.U16());
    const std::uint16_t reserved = *r.U16();
    e.host = *r.U32();
    e.host_count = *r.U64();
    e.virtual_offset = *r.U64();
    e.physical_offset = *r.U64();
    e.vcpu = *r.U32();
    const std::uint32_t reserved2 = *r.U32();
    e.cntvoff = *r.U64();
    if (reserved != 0 || reserved2 != 0) {
      return Fail(ErrorCode::kMalformed,
                  "offset timeline: event " + std::to_string(i) + " has reserved bits set");
    }
    t.events.push_back(e);
  }
  if (auto v = t.Validate(); !v) return tl::unexpected(v.error());
  return t;
}

}  // namespace vtime::trace
