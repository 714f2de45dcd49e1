// The files vtime-trace's commands read whole: offset timelines and clock
// samples (the traces themselves stream, readers.h).
#pragma once

#include <string>

#include "vtime/result.h"
#include "vtime/trace/clock_sample.h"
#include "vtime/trace/timeline.h"

namespace vtime::trace_tool {

/// The bytes of the file at `path`; the error's context is "PATH: reason".
Result<std::string> ReadFile(const std::string& path);
/// The offset timeline in the file at `path`, decoded and validated; the
/// error's context is "PATH: reason".
Result<trace::Timeline> LoadTimeline(const std::string& path);
/// The clock samples in the file at `path`, parsed and checked; the error's
/// context is "PATH: reason".
Result<trace::ClockSamples> LoadClockSamples(const std::string& path);

}  // namespace vtime::trace_tool
