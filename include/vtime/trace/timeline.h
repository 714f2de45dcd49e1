// The offset timeline: every change of a guest's time that a VMM made or
// observed, as a list of events on the hosts that ran it, and the exact map
// it gives between a vCPU's counters and each host's counter (seed 002: the
// VMM knows the offsets, so no kernel interface is needed to merge traces).
// Pure: events in, counter values out; the file form is bytes.
//
// While the guest runs on host h between two events, for vCPU n:
//   guest virtual count  = host count - virtual offset - nested(n)
//   guest physical count = host count - physical offset
// where nested(n) is the CNTVOFF_EL2 a guest hypervisor last set on vCPU n
// (0 without nested virtualization; the count it changes is then the
// nested guest's virtual count). A run ends at a pause (a snapshot or a
// migration's capture, at the host count where the guest stopped) and the
// next one starts where the guest resumed, on the same host or another.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vtime/result.h"

namespace vtime::trace {

/// What happened to the guest's time at one host count.
enum class EventKind : std::uint16_t {
  kStart = 1,        ///< the guest (re)starts on `host` with these offsets
  kOffsets = 2,      ///< the VM offsets changed while it ran (a VM offset set,
                     ///< or a legacy counter-value write that moved them)
  kPause = 3,        ///< the guest stopped: its time is not defined until a
                     ///< later kStart
  kNestedOffset = 4  ///< a guest hypervisor set CNTVOFF_EL2 on one vCPU
};

/// "start", "offsets", "pause", "nested-offset" ("unknown" for a value
/// outside the enum).
std::string_view NameOf(EventKind kind);

struct Event {
  EventKind kind = EventKind::kStart;
  std::uint32_t host = 0;             ///< index into Timeline::hosts
  std::uint64_t host_count = 0;       ///< that host's counter at the change
  std::uint64_t virtual_offset = 0;   ///< kStart, kOffsets
  std::uint64_t physical_offset = 0;  ///< kStart, kOffsets
  std::uint32_t vcpu = 0;             ///< kNestedOffset
  std::uint64_t cntvoff = 0;          ///< kNestedOffset
  bool operator==(const Event&) const = default;
};

/// A host that ran the guest: a name for people (the VMM's choice, such as
/// a host name and a process) and its counter frequency.
struct Host {
  std::string name;
  std::uint64_t counter_frequency_hz = 0;
  bool operator==(const Host&) const = default;
};

/// Which of a vCPU's counters a value is.
enum class GuestCounter { kVirtual, kPhysical };

/// A point on one host's counter.
struct HostPoint {
  std::uint32_t host = 0;
  std::uint64_t count = 0;
  bool operator==(const HostPoint&) const = default;
};

/// A guest of `vcpus` vCPUs and the events of its life, in the order they
/// happened (on one host, host counts only grow; a kStart on another host
/// follows a kPause).
class Timeline {
 public:
  std::uint32_t vcpus = 1;
  std::vector<Host> hosts;
  std::vector<Event> events;

  /// Checks the rules above: hosts and vCPUs named exist, the first event
  /// starts the guest, runs alternate with pauses, counts never go back on
  /// a host, every host has a counter frequency. Says which event broke
  /// which rule.
  [[nodiscard]] Result<void> Validate() const;

  /// The host point where vCPU `vcpu` read `guest_count` from the counter
  /// `which`. Exact: the count differs from the host's by the offsets in
  /// force then. Refuses a count no run of the guest covers (it was
  /// paused then, or it is before the guest started), and one that two
  /// stretches cover (the guest's counter went back, through a
  /// counter-value write): the message names them. The last run, if no
  /// pause ends it, covers every later count (2^62 ticks on).
  [[nodiscard]] Result<HostPoint> ToHost(std::uint32_t vcpu, GuestCounter which,
                                         std::uint64_t guest_count) const;

  /// The count vCPU `vcpu` would read from `which` at host point `at`;
  /// refuses a point where the guest was not running on that host.
  [[nodiscard]] Result<std::uint64_t> ToGuest(std::uint32_t vcpu, GuestCounter which,
                                              HostPoint at) const;

  /// The file form: the frame of wire.h with magic "VTTLINE\0", version 1.
  [[nodiscard]] std::vector<std::uint8_t> Encode() const;
  /// Decodes and validates; refuses damaged, truncated or impossible files,
  /// with counts that the bytes could not hold refused before anything is
  /// allocated for them.
  static Result<Timeline> Decode(std::span<const std::uint8_t> bytes);

  bool operator==(const Timeline&) const = default;
};

/// A timeline made ready for many lookups (a trace merge maps millions of
/// timestamps): each vCPU counter's stretches as disjoint ranges of guest
/// counts, sorted, with the counts that two stretches give marked once.
/// Its answers are exactly Timeline::ToHost's, refusals included.
class TimelineIndex {
 public:
  struct Range {
    std::uint64_t first = 0;  ///< guest counts first..last (inclusive)
    std::uint64_t last = 0;
    std::uint64_t offset = 0;  ///< host count = guest count + offset
    std::uint32_t host = 0;
    bool ambiguous = false;  ///< two stretches give these counts
  };

  /// Validates `timeline` and indexes it (its size: a few ranges per event
  /// and vCPU).
  static Result<TimelineIndex> Build(const Timeline& timeline);

  /// As Timeline::ToHost, in O(log ranges).
  [[nodiscard]] Result<HostPoint> ToHost(std::uint32_t vcpu, GuestCounter which,
                                         std::uint64_t guest_count) const;

  /// One stream of counts of one vCPU counter (a trace's events of one
  /// vCPU): in order, each costs O(1); any order is still right.
  class Cursor {
   public:
    /// The host point, or nothing where ToHost would refuse (ask ToHost
    /// for the reason).
    [[nodiscard]] std::optional<HostPoint> Map(std::uint64_t guest_count);

   private:
    friend class TimelineIndex;
    std::span<const Range> ranges_;
    std::size_t at_ = 0;
  };
  [[nodiscard]] Result<Cursor> Stream(std::uint32_t vcpu, GuestCounter which) const;

  /// The ranges of one vCPU counter, sorted by `first`; empty for a vCPU
  /// the guest does not have.
  [[nodiscard]] std::span<const Range> RangesOf(std::uint32_t vcpu, GuestCounter which) const;

 private:
  Timeline timeline_;            // for the refusals' messages
  std::vector<Range> ranges_;    // every list, one after another
  std::vector<std::size_t> at_;  // list k is ranges_[at_[k]..at_[k+1]); k = 2 * vcpu + which
};

/// Its current file-format version.
inline constexpr std::uint32_t kTimelineFormatVersion = 1;

}  // namespace vtime::trace
