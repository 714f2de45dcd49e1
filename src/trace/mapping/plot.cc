#include "vtime/trace/plot.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

namespace vtime::trace {

namespace {

// Colours the render test looks for (tests/unit/tools/plot_render_test.sh).
constexpr const char* kLine = "#1f77b4";
constexpr const char* kPause = "#d9d9d9";
constexpr const char* kOffsets = "#d62728";

// One stretch of one run at one set of offsets: host counts from..to.
struct Piece {
  std::uint32_t host = 0;
  std::uint64_t from = 0, to = 0;
  std::uint64_t offset = 0;  // guest = host - offset (mod 2^64)
  bool run_start = false;    // the first piece after a start
};

// What lies between two pieces: a pause (maybe a migration) or an offset
// change inside a run.
struct Gap {
  bool pause = false;
};

std::string Escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // XML 1.0 has no place for most control characters.
        out += (static_cast<unsigned char>(c) < 0x20 && c != '\t') ? '?' : c;
    }
  }
  return out;
}

// `format` is "%.Nf" or "%.Ng": to_chars prints exactly as printf would
// (and the pure layer has no <cstdio>).
std::string Num(double v, std::string_view format = "%.1f") {
  const int precision = format[2] - '0';
  const auto style = format[3] == 'f' ? std::chars_format::fixed : std::chars_format::general;
  char b[64];
  const auto r = std::to_chars(b, b + sizeof b, v, style, precision);
  return std::string(b, r.ptr);
}

// Seconds with a unit that suits them ("1.25 s", "340 ms", "12 us").
std::string Seconds(double s) {
  const double a = std::fabs(s);
  if (a >= 1 || a == 0) return Num(s, "%.3g") + " s";
  if (a >= 1e-3) return Num(s * 1e3, "%.3g") + " ms";
  return Num(s * 1e6, "%.3g") + " us";
}

}  // namespace

Result<std::string> PlotSvg(const Timeline& t, const PlotOptions& o) {
  if (auto v = t.Validate(); !v) return tl::unexpected(v.error());
  if (o.vcpu >= t.vcpus) {
    return Fail(ErrorCode::kOutOfRange, "plot: vCPU " + std::to_string(o.vcpu) + " of a " +
                                            std::to_string(t.vcpus) + "-vCPU guest");
  }
  if (o.width < 320 || o.height < 240 || o.width > 8192 || o.height > 8192) {
    return Fail(ErrorCode::kOutOfRange, "plot: the picture must be 320x240 to 8192x8192");
  }
  const bool virt = o.counter == GuestCounter::kVirtual;
  // The pieces in the order the guest lived them.
  std::vector<Piece> pieces;
  std::vector<Gap> gaps;  // gaps[i] lies between pieces[i] and pieces[i + 1]
  std::uint64_t voff = 0, poff = 0, nested = 0;
  bool running = false;
  auto offset = [&] { return virt ? voff + nested : poff; };
  for (const Event& e : t.events) {
    switch (e.kind) {
      case EventKind::kStart:
        voff = e.virtual_offset, poff = e.physical_offset;
        if (!pieces.empty()) gaps.push_back(Gap{true});
        pieces.push_back(Piece{e.host, e.host_count, e.host_count, offset(), true});
        running = true;
        break;
      case EventKind::kOffsets:
      case EventKind::kNestedOffset: {
        const std::uint64_t before = offset();
        if (e.kind == EventKind::kOffsets) {
          voff = e.virtual_offset, poff = e.physical_offset;
        } else if (e.vcpu == o.vcpu) {
          nested = e.cntvoff;
        }
        if (running && offset() != before) {
          pieces.back().to = e.host_count;
          gaps.push_back(Gap{false});
          pieces.push_back(Piece{e.host, e.host_count, e.host_count, offset(), false});
        }
        break;
      }
      case EventKind::kPause:
        pieces.back().to = e.host_count;
        running = false;
        break;
    }
  }
  // A last run that no pause ends: drawn for a quarter of the life so far
  // (at least one tick), its end open.
  double life = 0;
  for (const auto& p : pieces) {
    life += static_cast<double>(p.to - p.from) /
            static_cast<double>(t.hosts[p.host].counter_frequency_hz);
  }
  if (running) {
    const double f = static_cast<double>(t.hosts[pieces.back().host].counter_frequency_hz);
    pieces.back().to += std::max<std::uint64_t>(1, static_cast<std::uint64_t>(life / 4 * f));
  }
  auto hz = [&](const Piece& p) {
    return static_cast<double>(t.hosts[p.host].counter_frequency_hz);
  };
  auto guest_s = [&](const Piece& p, std::uint64_t host_count) {
    return static_cast<double>(host_count - p.offset) / hz(p);
  };

  // Layout: the plot area, a fixed width for each pause band, the pieces
  // sharing the rest by their length (each at least 24 px).
  const double W = o.width, H = o.height;
  const double left = 90, right = 30, top = 60, bottom = 110;
  const double pw = W - left - right, ph = H - top - bottom;
  std::size_t pauses = 0;
  for (const auto& g : gaps) pauses += g.pause ? 1 : 0;
  const double band = std::min(70.0, pw / static_cast<double>(3 * pauses + 3));
  const double min_piece = std::min(
      24.0, (pw - band * static_cast<double>(pauses)) / static_cast<double>(pieces.size()) / 2);
  double total = 0;
  for (const auto& p : pieces) total += static_cast<double>(p.to - p.from) / hz(p);
  const double share =
      pw - band * static_cast<double>(pauses) - min_piece * static_cast<double>(pieces.size());
  std::vector<double> x0(pieces.size()), x1(pieces.size());
  double x = left;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const double len = static_cast<double>(pieces[i].to - pieces[i].from) / hz(pieces[i]);
    x0[i] = x;
    x += min_piece + (total > 0 ? share * len / total : share / static_cast<double>(pieces.size()));
    x1[i] = x;
    if (i < gaps.size() && gaps[i].pause) x += band;
  }
  double ymin = guest_s(pieces[0], pieces[0].from), ymax = ymin;
  for (const auto& p : pieces) {
    for (double v : {guest_s(p, p.from), guest_s(p, p.to)}) {
      ymin = std::min(ymin, v), ymax = std::max(ymax, v);
    }
  }
  if (ymax - ymin < 1e-9) ymax = ymin + 1;
  const double pad = (ymax - ymin) * 0.06;
  ymin -= pad, ymax += pad;
  auto Y = [&](double v) { return top + ph - (v - ymin) / (ymax - ymin) * ph; };

  std::string s;
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" + Num(W, "%.0f") +
       "\" height=\"" + Num(H, "%.0f") + "\" viewBox=\"0 0 " + Num(W, "%.0f") + " " +
       Num(H, "%.0f") + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  s += "<text x=\"" + Num(W / 2) + "\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">Guest " +
       std::string(virt ? "virtual (CNTVCT)" : "physical (CNTPCT)") + " time of vCPU " +
       std::to_string(o.vcpu) + " against its hosts' time</text>\n";
  // Pause bands first, under everything.
  for (std::size_t i = 0; i < gaps.size(); ++i) {
    if (!gaps[i].pause) continue;
    const Piece &a = pieces[i], &b = pieces[i + 1];
    const double bx = x1[i], cx = bx + band / 2;
    s += "<rect class=\"pause\" x=\"" + Num(bx) + "\" y=\"" + Num(top) + "\" width=\"" + Num(band) +
         "\" height=\"" + Num(ph) + "\" fill=\"" + kPause + "\"/>\n";
    const std::string what = a.host == b.host
                                 ? "paused " + Seconds(static_cast<double>(b.from - a.to) / hz(a))
                                 : "moved to " + Escape(t.hosts[b.host].name);
    const double step = guest_s(b, b.from) - guest_s(a, a.to);
    s += "<text x=\"" + Num(cx) + "\" y=\"" + Num(top + 14) +
         "\" text-anchor=\"middle\" font-size=\"10\">" + what + "</text>\n";
    s += "<text x=\"" + Num(cx) + "\" y=\"" + Num(top + 28) +
         "\" text-anchor=\"middle\" font-size=\"10\">guest " + (step >= 0 ? "+" : "") +
         Seconds(step) + "</text>\n";
  }
  // Axes and the guest-time grid.
  s += "<rect x=\"" + Num(left) + "\" y=\"" + Num(top) + "\" width=\"" + Num(pw) + "\" height=\"" +
       Num(ph) + "\" fill=\"none\" stroke=\"#000000\"/>\n";
  for (int k = 0; k <= 4; ++k) {
    const double v = ymin + (ymax - ymin) * k / 4;
    s += "<line x1=\"" + Num(left - 5) + "\" y1=\"" + Num(Y(v)) + "\" x2=\"" + Num(left) +
         "\" y2=\"" + Num(Y(v)) + "\" stroke=\"#000000\"/>\n";
    s += "<text x=\"" + Num(left - 8) + "\" y=\"" + Num(Y(v) + 4) + "\" text-anchor=\"end\">" +
         Num(v, "%.4g") + " s</text>\n";
  }
  s += "<text x=\"20\" y=\"" + Num(top + ph / 2) +
       "\" text-anchor=\"middle\" transform=\"rotate(-90 20 " + Num(top + ph / 2) +
       ")\">guest counter (s)</text>\n";
  // The pieces, and the host of each run under the axis.
  double last_label = 0;
  int offset_labels = 0;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    s += "<line class=\"run\" x1=\"" + Num(x0[i]) + "\" y1=\"" + Num(Y(guest_s(p, p.from))) +
         "\" x2=\"" + Num(x1[i]) + "\" y2=\"" + Num(Y(guest_s(p, p.to))) + "\" stroke=\"" + kLine +
         "\" stroke-width=\"4\"/>\n";
    // A label where it has room (stretches can be a few pixels wide).
    if (i == 0 || x0[i] - last_label >= 70) {
      s += "<text x=\"" + Num(x0[i]) + "\" y=\"" + Num(top + ph + 16) + "\" font-size=\"10\">" +
           Num(static_cast<double>(p.from) / hz(p), "%.4g") + " s</text>\n";
      last_label = x0[i];
    }
    if (p.run_start) {
      s += "<text class=\"host\" x=\"" + Num(x0[i]) + "\" y=\"" + Num(top + ph + 32) + "\">on " +
           Escape(t.hosts[p.host].name) + "</text>\n";
    }
    if (i < gaps.size() && !gaps[i].pause) {
      const Piece& n = pieces[i + 1];
      const double step = guest_s(n, n.from) - guest_s(p, p.to);
      s += "<line class=\"offsets\" x1=\"" + Num(x1[i]) + "\" y1=\"" + Num(top) + "\" x2=\"" +
           Num(x1[i]) + "\" y2=\"" + Num(top + ph) + "\" stroke=\"" + kOffsets +
           "\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/>\n";
      // Staggered, so that changes close together stay readable.
      const double label_y = top + ph - 8 - 14 * (offset_labels++ % 4);
      s += "<text x=\"" + Num(x1[i] + 4) + "\" y=\"" + Num(label_y) + "\" fill=\"" + kOffsets +
           "\" font-size=\"10\">offsets: guest " + (step >= 0 ? "+" : "") + Seconds(step) +
           "</text>\n";
    }
  }
  s += "<text x=\"" + Num(left + pw / 2) + "\" y=\"" + Num(top + ph + 52) +
       "\" text-anchor=\"middle\">host counter at each stretch's start (s); pauses not to "
       "scale</text>\n";
  // Legend.
  const double ly = H - 24;
  s += "<line x1=\"" + Num(left) + "\" y1=\"" + Num(ly) + "\" x2=\"" + Num(left + 30) + "\" y2=\"" +
       Num(ly) + "\" stroke=\"" + kLine + "\" stroke-width=\"4\"/>\n";
  s += "<text x=\"" + Num(left + 36) + "\" y=\"" + Num(ly + 4) + "\">guest running</text>\n";
  s += "<rect x=\"" + Num(left + 160) + "\" y=\"" + Num(ly - 7) +
       "\" width=\"30\" height=\"14\" fill=\"" + kPause + "\"/>\n";
  s += "<text x=\"" + Num(left + 196) + "\" y=\"" + Num(ly + 4) +
       "\">paused or moving (its length, the guest's step)</text>\n";
  s += "<line x1=\"" + Num(left + 500) + "\" y1=\"" + Num(ly) + "\" x2=\"" + Num(left + 530) +
       "\" y2=\"" + Num(ly) + "\" stroke=\"" + kOffsets +
       "\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/>\n";
  s += "<text x=\"" + Num(left + 536) + "\" y=\"" + Num(ly + 4) + "\">offsets changed</text>\n";
  s += "</svg>\n";
  return s;
}

}  // namespace vtime::trace
