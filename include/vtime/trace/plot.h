// A picture of a guest's time against its hosts' time (seed 002, #11):
// each stretch the guest ran is a line of its counter against the host's,
// each pause and migration a grey band labelled with how long the guest
// was stopped (when both ends are on one host) and the step its counter
// made, each offset change a dashed line with its step. Pure: a timeline
// in, SVG 1.1 text out, the same bytes for the same timeline.
#pragma once

#include <cstdint>
#include <string>

#include "vtime/result.h"
#include "vtime/trace/timeline.h"

namespace vtime::trace {

struct PlotOptions {
  std::uint32_t vcpu = 0;
  GuestCounter counter = GuestCounter::kVirtual;
  std::uint32_t width = 960;
  std::uint32_t height = 540;
};

/// The SVG. Refuses a timeline that does not validate, a vCPU the guest
/// does not have, and a size below 320 x 240 or above 8192 x 8192.
Result<std::string> PlotSvg(const Timeline& timeline, const PlotOptions& options);

}  // namespace vtime::trace
