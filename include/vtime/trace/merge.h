// Host and guest traces on one timeline (seed 002): each machine's trace
// clock is turned into counter ticks (its clock samples' perf conversion),
// a guest's counter into the host's through the offset timeline, and the
// host's counter back into the host's trace clock, so every event lands on
// the time axis of the host trace. Exact to the tick where the timeline
// knows the offsets; events it does not cover are counted with the reason,
// never placed by a guess. Pure: records in, records out, in time order,
// with memory that does not grow with the input.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vtime/result.h"
#include "vtime/trace/perf_clock.h"
#include "vtime/trace/timeline.h"

namespace vtime::trace {

/// One event as a trace reader gives it, at its machine's trace clock (the
/// `local` or `perf` clock: on arm64 the scheduler clock, which runs off the
/// counter). The views stay valid until the stream's next call.
struct TraceRecord {
  std::uint64_t ts_ns = 0;
  std::uint32_t cpu = 0;  ///< in a guest: the vCPU
  std::int32_t pid = 0;
  std::string_view name;  ///< the event's name ("sched_switch", "print")
  std::string_view info;  ///< its fields as the trace prints them
};

/// One trace's records in time order (a file, or one CPU of it).
class TraceStream {
 public:
  virtual ~TraceStream() = default;
  /// The next record into *out: true, or false at the end. An error for an
  /// input that cannot be read, saying where.
  [[nodiscard]] virtual Result<bool> Next(TraceRecord* out) = 0;
  /// How much of the input is read, 0..1, or a negative value when unknown
  /// (for progress reports).
  [[nodiscard]] virtual double Done() const { return -1; }
};

/// A record placed on the output's time axis.
struct MergedRecord {
  std::int64_t ts_ns = 0;     ///< the first host's trace clock
  std::uint32_t machine = 0;  ///< as Merger::AddHost / AddGuest numbered it
  std::uint32_t cpu = 0;
  std::int32_t pid = 0;
  std::string_view name;
  std::string_view info;
};

/// What happened to one machine's records.
struct MachineStats {
  std::string name;
  bool guest = false;
  std::uint64_t records = 0;
  std::uint64_t placed = 0;
  /// Records the timeline (or the host samples given) did not cover, and
  /// the reason for the first of them.
  std::uint64_t uncovered = 0;
  std::string first_uncovered;
};

/// Merges traces of hosts and guests. Hosts first: the first host's trace
/// clock is the output's axis, and another host is placed on it by a
/// shift (its clock + shift = the axis), which the caller derives from the
/// hosts' wall clocks or knows. A guest names its hosts in its timeline;
/// they are matched by name with the hosts added.
class Merger {
 public:
  /// Adds a host whose trace clock runs by `clock` over its counter.
  std::uint32_t AddHost(std::string name, const PerfClock& clock, std::int64_t shift_ns);
  /// Adds a guest whose trace clock runs by `clock` over its virtual counter
  /// (what its kernel reads), and whose life `timeline` records. Refuses a
  /// timeline that does not validate, or a clock the kernel would not have
  /// published.
  Result<std::uint32_t> AddGuest(std::string name, const PerfClock& clock,
                                 const Timeline& timeline);
  /// Adds a stream of records of `machine`.
  Result<void> AddStream(std::uint32_t machine, std::unique_ptr<TraceStream> stream);

  /// Calls `emit` for each placed record, in time order of the axis (each
  /// stream's own order is kept), `progress` with the records read so far
  /// every `progress_every` records. An error when a stream cannot be read.
  Result<std::vector<MachineStats>> Run(
      const std::function<Result<void>(const MergedRecord&)>& emit,
      const std::function<void(std::uint64_t, double)>& progress,
      std::uint64_t progress_every = 1'000'000);

  [[nodiscard]] std::size_t machines() const { return machines_.size(); }
  [[nodiscard]] const std::string& name(std::uint32_t machine) const {
    return machines_[machine].name;
  }
  [[nodiscard]] bool guest(std::uint32_t machine) const { return machines_[machine].guest; }

 private:
  struct Machine {
    std::string name;
    bool guest = false;
    PerfClock clock;
    std::int64_t shift_ns = 0;                // hosts
    std::optional<TimelineIndex> index;       // guests
    std::vector<std::uint32_t> host_of;       // guests: timeline host -> machine, or npos
    std::vector<std::string> timeline_hosts;  // guests: for messages
  };
  struct Source {
    std::uint32_t machine = 0;
    std::unique_ptr<TraceStream> stream;
    std::vector<std::optional<TimelineIndex::Cursor>> cursors;  // per vCPU
    MergedRecord head;
    bool live = false;
  };
  // Reads the source's next placeable record into head; false at its end.
  Result<bool> Advance(Source& s, MachineStats& stats);

  std::vector<Machine> machines_;
  std::vector<Source> sources_;
};

/// Parses one line of a raw ftrace text trace (tracefs `trace` or
/// `trace_pipe`, or `trace-cmd report`):
///   TASK-PID [CPU] FLAGS SECONDS.FRACTION: EVENT: INFO
/// (FLAGS optional; a fraction of 6 digits is microseconds, 9 nanoseconds).
/// Nothing for a comment, an empty line or a lost-events notice; an error
/// saying what is wrong for anything else.
Result<std::optional<TraceRecord>> ParseFtraceLine(std::string_view line);

}  // namespace vtime::trace
