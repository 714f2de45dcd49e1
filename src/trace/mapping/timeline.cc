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

Result<TimelineIndex> TimelineIndex::Build(const Timeline& timeline) {
  if (auto v = timeline.Validate(); !v) return tl::unexpected(v.error());
  TimelineIndex index;
  index.timeline_ = timeline;
  index.at_.push_back(0);
  for (std::uint32_t vcpu = 0; vcpu < timeline.vcpus; ++vcpu) {
    for (GuestCounter which : {GuestCounter::kVirtual, GuestCounter::kPhysical}) {
      // Each piece as one or two inclusive ranges of guest counts (two
      // where it runs past 2^64 - 1 and wraps to 0).
      struct Span {
        std::uint64_t first, last;
        std::size_t piece;
      };
      const std::vector<Piece> pieces = PiecesOf(timeline, vcpu, which);
      std::vector<Span> spans;
      for (std::size_t i = 0; i < pieces.size(); ++i) {
        const std::uint64_t first = pieces[i].from - pieces[i].offset;
        const std::uint64_t last = first + (Length(pieces[i]) - 1);
        if (last >= first) {
          spans.push_back({first, last, i});
        } else {
          spans.push_back({first, kOpen, i});
          spans.push_back({0, last, i});
        }
      }
      // The points where the set of covering spans can change, then each
      // elementary stretch between two of them with how many cover it.
      std::vector<std::uint64_t> cuts;
      for (const Span& sp : spans) {
        cuts.push_back(sp.first);
        if (sp.last != kOpen) cuts.push_back(sp.last + 1);
      }
      std::sort(cuts.begin(), cuts.end());
      cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
      for (std::size_t c = 0; c < cuts.size(); ++c) {
        const std::uint64_t first = cuts[c];
        const std::uint64_t last = c + 1 < cuts.size() ? cuts[c + 1] - 1 : kOpen;
        const Span* hit = nullptr;
        unsigned covers = 0;
        for (const Span& sp : spans) {
          if (sp.first <= first && last <= sp.last) {
            ++covers;
            hit = &sp;
          }
        }
        if (covers == 0) continue;
        Range r{first, last, covers == 1 ? pieces[hit->piece].offset : 0,
                covers == 1 ? pieces[hit->piece].host : 0, covers > 1};
        Range* prev = index.ranges_.size() > index.at_.back() ? &index.ranges_.back() : nullptr;
        if (prev != nullptr && prev->last + 1 == r.first && prev->ambiguous == r.ambiguous &&
            prev->offset == r.offset && prev->host == r.host) {
          prev->last = r.last;  // the same stretch (or the same refusal) goes on
        } else {
          index.ranges_.push_back(r);
        }
      }
      index.at_.push_back(index.ranges_.size());
    }
  }
  return index;
}

std::span<const TimelineIndex::Range> TimelineIndex::RangesOf(std::uint32_t vcpu,
                                                              GuestCounter which) const {
  const std::size_t k = 2 * std::size_t{vcpu} + (which == GuestCounter::kPhysical ? 1 : 0);
  if (k + 1 >= at_.size()) return {};
  return std::span<const Range>(ranges_).subspan(at_[k], at_[k + 1] - at_[k]);
}

Result<HostPoint> TimelineIndex::ToHost(std::uint32_t vcpu, GuestCounter which,
                                        std::uint64_t guest_count) const {
  const auto ranges = RangesOf(vcpu, which);
  auto it = std::upper_bound(ranges.begin(), ranges.end(), guest_count,
                             [](std::uint64_t g, const Range& r) { return g < r.first; });
  if (it != ranges.begin()) {
    const Range& r = *(it - 1);
    if (guest_count <= r.last && !r.ambiguous) return HostPoint{r.host, guest_count + r.offset};
  }
  // Refused: the timeline says why, in its own words (and must agree).
  auto slow = timeline_.ToHost(vcpu, which, guest_count);
  if (slow) {
    return Fail(ErrorCode::kBadState, "timeline index: count " + std::to_string(guest_count) +
                                          " of vCPU " + std::to_string(vcpu) +
                                          " refused by the index but not by the timeline");
  }
  return slow;
}

Result<TimelineIndex::Cursor> TimelineIndex::Stream(std::uint32_t vcpu, GuestCounter which) const {
  if (vcpu >= timeline_.vcpus) {
    return Fail(ErrorCode::kOutOfRange, "vCPU " + std::to_string(vcpu) + " of a " +
                                            std::to_string(timeline_.vcpus) + "-vCPU guest");
  }
  Cursor c;
  c.ranges_ = RangesOf(vcpu, which);
  return c;
}

std::optional<HostPoint> TimelineIndex::Cursor::Map(std::uint64_t guest_count) {
  if (ranges_.empty()) return std::nullopt;
  // Where the last count was, or its neighbour: a trace's counts only grow,
  // except where the guest's counter went back.
  std::size_t i = at_;
  if (guest_count < ranges_[i].first) {
    if (i > 0 && guest_count >= ranges_[i - 1].first) {
      --i;
    } else {
      i = static_cast<std::size_t>(
          std::upper_bound(ranges_.begin(), ranges_.end(), guest_count,
                           [](std::uint64_t g, const Range& r) { return g < r.first; }) -
          ranges_.begin());
      if (i == 0) return std::nullopt;
      --i;
    }
  } else if (guest_count > ranges_[i].last) {
    if (i + 1 < ranges_.size() && guest_count >= ranges_[i + 1].first &&
        guest_count <= ranges_[i + 1].last) {
      ++i;
    } else {
      i = static_cast<std::size_t>(
              std::upper_bound(ranges_.begin() + static_cast<std::ptrdiff_t>(i), ranges_.end(),
                               guest_count,
                               [](std::uint64_t g, const Range& r) { return g < r.first; }) -
              ranges_.begin()) -
          1;
    }
  }
  at_ = i;
  const Range& r = ranges_[i];
  if (guest_count < r.first || guest_count > r.last || r.ambiguous) return std::nullopt;
  return HostPoint{r.host, guest_count + r.offset};
}

}  // namespace vtime::trace
