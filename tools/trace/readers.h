// The trace files vtime-trace merges: trace-cmd's .dat files, read through
// libtracecmd (each CPU of a file is a stream in time order), and raw
// ftrace text (the tracefs `trace` file, `trace_pipe`, `trace-cmd report`).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vtime/result.h"
#include "vtime/trace/merge.h"

namespace vtime::trace_tool {

/// The streams of the trace at `path`: one per CPU of a .dat file (known by
/// its magic), one for a text file. Refuses a file that is neither, with
/// the reason.
Result<std::vector<std::unique_ptr<trace::TraceStream>>> OpenTrace(const std::string& path);

}  // namespace vtime::trace_tool
