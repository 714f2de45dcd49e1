// vtime-trace plot: a picture (SVG) of a guest's time against its hosts'.
#pragma once

namespace vtime::trace_tool {

/// argv[1] is "plot". Exit status 0 written, 1 refused, 2 usage.
int PlotCommand(int argc, char** argv);

}  // namespace vtime::trace_tool
