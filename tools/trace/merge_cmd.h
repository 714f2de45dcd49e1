// vtime-trace merge: host and guest traces onto the first host's timeline.
#pragma once

namespace vtime::trace_tool {

/// argv[1] is "merge". Exit status 0 merged, 1 refused (the reason is on
/// stderr), 2 usage.
int MergeCommand(int argc, char** argv);

/// The command's --help text.
extern const char* const kMergeHelp;

}  // namespace vtime::trace_tool
