// A picture of a guest's time against its hosts' time (seed 002, #11):
// each stretch the guest ran is a line of its counter against the host's,
// each pause and migration a grey band labelled with how long the guest
// was stopped (when both ends are on one host) and the step its counter
// made, each change of the VM's offsets a dashed line and each CNTVOFF_EL2 a
// guest hypervisor set on the vCPU a dotted one, with the step. Each run is
// labelled with its host, so a migration shows as a move to the next host.
// Pure: a timeline in, SVG 1.1 text out, the same bytes for the same
// timeline.
#pragma once

#include <cstdint>
#include <string>

#include "vtime/result.h"
#include "vtime/trace/timeline.h"

namespace vtime::trace {

/// What to draw.
struct PlotOptions {
  std::uint32_t vcpu = 0;                         ///< whose counter
  GuestCounter counter = GuestCounter::kVirtual;  ///< CNTVCT or CNTPCT
  std::uint32_t width = 960;                      ///< the picture's size, pixels
  std::uint32_t height = 540;                     ///< (320x240 to 8192x8192)
};

/// The SVG: standalone (xmlns, width, height, viewBox), host names escaped
/// (bytes that are not UTF-8 become '?'). Refuses a timeline that does not
/// validate, a vCPU the guest does not have, and a size below 320 x 240 or
/// above 8192 x 8192.
Result<std::string> PlotSvg(const Timeline& timeline, const PlotOptions& options);

}  // namespace vtime::trace
