#include "plot_cmd.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>

#include "files.h"
#include "vtime/parse.h"
#include "vtime/trace/plot.h"
#include "vtime/trace/timeline.h"

namespace vtime::trace_tool {

namespace {

constexpr const char* kPlotHelp =
    R"(usage: vtime-trace plot TIMELINE -o OUT.svg [--vcpu N] [--physical]
                        [--size WxH]

Draws the guest's time against its hosts' time from an offset timeline
(vtvmm --timeline): each stretch the guest ran is a line of its counter
against the host's, each pause or migration a grey band labelled with how
long the guest was stopped (when both ends are on one host) and the step its
counter made there, each change of the VM offsets a dashed red line and each
CNTVOFF_EL2 a guest hypervisor set on the vCPU a dotted one, with the step.
Opens in any browser. --physical draws CNTPCT instead of CNTVCT; --size
sets the picture's size in pixels (default 960x540).
)";

int Usage(const std::string& why) {
  std::fprintf(stderr, "vtime-trace plot: %s\n(vtime-trace plot --help for usage)\n", why.c_str());
  return 2;
}

int Refuse(const std::string& why) {
  std::fprintf(stderr, "vtime-trace plot: %s\n", why.c_str());
  return 1;
}

}  // namespace

int PlotCommand(int argc, char** argv) {
  std::string input, output;
  trace::PlotOptions options;
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool more = i + 1 < argc;
    if (a == "--help" || a == "-h") {
      std::fputs(kPlotHelp, stdout);
      return 0;
    }
    if (a == "-o" || a == "--output") {
      if (!more) return Usage("-o needs a file");
      output = argv[++i];
    } else if (a == "--vcpu") {
      std::uint64_t v = 0;
      if (!more || !ParseU64(argv[++i], &v) || v > 0xffffffffu) return Usage("--vcpu needs N");
      options.vcpu = static_cast<std::uint32_t>(v);
    } else if (a == "--physical") {
      options.counter = trace::GuestCounter::kPhysical;
    } else if (a == "--size") {
      const std::string_view v = more ? std::string_view(argv[++i]) : std::string_view();
      const auto xpos = v.find('x');
      std::uint64_t w = 0, h = 0;
      if (xpos == v.npos || !ParseU64(v.substr(0, xpos), &w) || !ParseU64(v.substr(xpos + 1), &h) ||
          w > 8192 || h > 8192) {
        return Usage("--size needs WxH in pixels");
      }
      options.width = static_cast<std::uint32_t>(w);
      options.height = static_cast<std::uint32_t>(h);
    } else if (!a.empty() && a[0] != '-' && input.empty()) {
      input = std::string(a);
    } else {
      return Usage("unknown argument '" + std::string(a) + "'");
    }
  }
  if (input.empty()) return Usage("a TIMELINE file is needed");
  if (output.empty()) return Usage("-o OUT.svg is needed");
  auto t = LoadTimeline(input);
  if (!t) return Refuse(t.error().context);
  auto svg = trace::PlotSvg(*t, options);
  if (!svg) return Refuse(svg.error().Message());
  const std::string temp = output + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << *svg;
    out.close();
    if (!out) {
      std::remove(temp.c_str());
      return Refuse(temp + ": cannot write");
    }
  }
  if (std::rename(temp.c_str(), output.c_str()) != 0) {
    std::remove(temp.c_str());
    return Refuse(output + ": " + std::strerror(errno));
  }
  std::printf("wrote %s (%zu bytes)\n", output.c_str(), svg->size());
  return 0;
}

}  // namespace vtime::trace_tool
