// The Chrome JSON trace event format that the Perfetto UI and
// chrome://tracing open: one object {"traceEvents": [...]} whose events
// carry a phase ("ph"), a time in microseconds ("ts"), a process ("pid")
// and a thread ("tid"). vtime-trace writes each machine as a process and
// each of its CPUs (a guest's vCPUs) as a thread, every trace record as an
// instant event, with names given by metadata events. Pure: the text goes
// to a sink through a fixed buffer, so memory does not grow with the trace.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "vtime/result.h"

namespace vtime::trace {

class ChromeJsonWriter {
 public:
  /// Receives the text in pieces of at most the buffer's size.
  using Sink = std::function<Result<void>(std::string_view)>;
  explicit ChromeJsonWriter(Sink sink, std::size_t buffer_bytes = 1 << 20);

  /// Names process `pid` ("process_name") and orders it among the others.
  Result<void> Process(std::uint32_t pid, std::string_view name, std::int32_t sort_index);
  /// Names thread `tid` of process `pid` ("thread_name") and orders it.
  Result<void> Thread(std::uint32_t pid, std::uint32_t tid, std::string_view name,
                      std::int32_t sort_index);
  /// One instant event ("ph":"i", thread scope) at `ts_ns`, written in
  /// microseconds with the nanoseconds kept. `category` goes to "cat",
  /// `info` and `task` to "args". Text that is not UTF-8 is written with
  /// U+FFFD for each bad byte, so the file is always valid JSON.
  Result<void> Instant(std::uint32_t pid, std::uint32_t tid, std::int64_t ts_ns,
                       std::string_view name, std::string_view category, std::string_view info,
                       std::int32_t task);
  /// Closes the list and hands the rest to the sink. Nothing may follow.
  Result<void> Finish();

  [[nodiscard]] std::uint64_t events() const { return events_; }

 private:
  Result<void> Begin();
  Result<void> Spill();

  Sink sink_;
  std::size_t limit_;
  std::string buf_;
  std::uint64_t events_ = 0;
  bool finished_ = false;
};

/// Appends `s` to `out` as a JSON string (quoted, escaped, bad UTF-8 as
/// U+FFFD).
void AppendJsonString(std::string& out, std::string_view s);

/// Appends ns as microseconds with three decimals ("-12.000345").
void AppendMicros(std::string& out, std::int64_t ns);

}  // namespace vtime::trace
