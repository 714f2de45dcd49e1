#include "vtime/trace/plot.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vtime::trace {

namespace {

// Colours the render test looks for (tests/unit/tools/plot_render_test.sh).
constexpr const char* kLine = "#1f77b4";
constexpr const char* kPause = "#d9d9d9";
constexpr const char* kOffsets = "#d62728";
constexpr const char* kGrid = "#e6e6e6";

// One stretch of one run at one set of offsets: host counts from..to.
struct Piece {
  std::uint32_t host = 0;
  std::uint64_t from = 0, to = 0;
  std::uint64_t offset = 0;  // guest = host - offset (mod 2^64)
  bool run_start = false;    // the first piece after a start
};

// What lies between two pieces: a pause (maybe a migration) or an offset
// change inside a run (the VM's offsets, a guest hypervisor's CNTVOFF_EL2,
// or both at one host count).
struct Gap {
  bool pause = false;
  bool vm = false;      // a kOffsets event moved the drawn counter
  bool nested = false;  // a kNestedOffset event on the drawn vCPU moved it
};

// The length of the UTF-8 sequence at s[i] if it encodes a character XML
// 1.0 allows (not a surrogate, U+FFFE or U+FFFF, nor an overlong form),
// else 0.
std::size_t Utf8Char(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned lead = b(0);
  const std::size_t n = lead < 0xc2 ? 0 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : lead < 0xf5 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  std::uint32_t cp = lead & (0x7fu >> n);
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (b(k) & 0x3fu);
  }
  const std::uint32_t least = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
  if (cp < least || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe ||
      cp == 0xffff) {
    return 0;
  }
  return n;
}

// Text for an SVG element: markup characters as entities, and what XML 1.0
// cannot hold (most control characters, bytes that are not UTF-8: a host
// name is whatever the VMM was given) as '?', so the file always parses.
std::string Escape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (static_cast<unsigned char>(c) >= 0x80) {
      const std::size_t n = Utf8Char(s, i);
      out += n == 0 ? std::string_view("?") : s.substr(i, n);
      i += n == 0 ? 0 : n - 1;
      continue;
    }
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
  if (r.ec != std::errc{}) return "?";
  return std::string(b, r.ptr);
}

std::string Fixed(double v, int decimals) {
  char b[64];
  const auto r = std::to_chars(b, b + sizeof b, v, std::chars_format::fixed, decimals);
  if (r.ec != std::errc{}) return "?";
  return std::string(b, r.ptr);
}

// Seconds with a unit that suits them ("1.25 s", "340 ms", "12 us"); long
// times in whole seconds ("86400 s", not "8.64e+04 s").
std::string Seconds(double s) {
  const double a = std::fabs(s);
  if (a >= 1000) return Num(s, "%.0f") + " s";
  if (a >= 1 || a == 0) return Num(s, "%.3g") + " s";
  if (a >= 1e-3) return Num(s * 1e3, "%.3g") + " ms";
  if (a >= 1e-6) return Num(s * 1e6, "%.3g") + " us";
  return Num(s * 1e9, "%.3g") + " ns";
}

// "+1.5 s", "-340 ms", "+0 s": a step of the guest's counter.
std::string Step(double s) { return (s >= 0 ? "+" : "") + Seconds(s); }

// A point on the host's axis: its counter in seconds, to the millisecond
// once it is past a second (hosts run for days).
std::string HostSeconds(double s) { return s >= 1 ? Num(s, "%.3f") + " s" : Seconds(s); }

// Round ticks for an axis over [lo, hi]: a step of 1, 2 or 5 times a power
// of ten giving about five ticks, the unit that suits the axis's largest
// value and the decimals that print each tick exactly ("2.5 s", "120 us").
struct Ticks {
  double step = 1;
  double unit = 1;  // seconds per unit
  const char* unit_name = "s";
  int decimals = 0;
};
Ticks TicksFor(double lo, double hi) {
  Ticks t;
  const double raw = (hi - lo) / 5;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double n = raw / magnitude;
  t.step = (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * magnitude;
  const double largest = std::max(std::fabs(lo), std::fabs(hi));
  if (largest >= 1) {
    t.unit = 1, t.unit_name = "s";
  } else if (largest >= 1e-3) {
    t.unit = 1e-3, t.unit_name = "ms";
  } else if (largest >= 1e-6) {
    t.unit = 1e-6, t.unit_name = "us";
  } else {
    t.unit = 1e-9, t.unit_name = "ns";
  }
  t.decimals = std::clamp(static_cast<int>(std::ceil(-std::log10(t.step / t.unit) - 1e-9)), 0, 9);
  return t;
}

// About how wide `text` is at `font_size` in a sans-serif font, counting
// characters, not bytes (a label's room is estimated, not measured).
double WidthOf(std::string_view text, double font_size) {
  std::size_t chars = 0;
  for (char c : text) chars += (static_cast<unsigned char>(c) & 0xc0) != 0x80 ? 1 : 0;
  return static_cast<double>(chars) * font_size * 0.6;
}

// At most `chars` characters of a user's string (a host name), cut on a
// character's boundary with an ellipsis, then escaped.
std::string Fit(std::string_view name, std::size_t chars) {
  std::size_t at = 0, n = 0;
  while (at < name.size() && n < chars) {
    ++at, ++n;
    while (at < name.size() && (static_cast<unsigned char>(name[at]) & 0xc0) == 0x80) ++at;
  }
  if (at >= name.size()) return Escape(name);
  if (n > 0) {  // room for the ellipsis
    --at;
    while (at > 0 && (static_cast<unsigned char>(name[at]) & 0xc0) == 0x80) --at;
  }
  return Escape(name.substr(0, at)) + "\u2026";
}

// Rows of labels: a label goes to the first row where it does not overlap
// the one before it, or nowhere (its mark's tooltip still says it all).
class Rows {
 public:
  explicit Rows(std::size_t n) : right_(n, -1e300) {}
  std::optional<std::size_t> Place(double from, double to) {
    for (std::size_t k = 0; k < right_.size(); ++k) {
      if (from >= right_[k] + 6) {
        right_[k] = to;
        return k;
      }
    }
    return std::nullopt;
  }

 private:
  std::vector<double> right_;
};

void Text(std::string& s, double x, double y, std::string_view attrs, std::string_view text) {
  s += "<text x=\"" + Num(x) + "\" y=\"" + Num(y) + "\"";
  if (!attrs.empty()) s += " " + std::string(attrs);
  s += ">" + std::string(text) + "</text>\n";
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
        if (!pieces.empty()) gaps.push_back(Gap{.pause = true});
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
        if (!running || offset() == before) break;
        const bool vm = e.kind == EventKind::kOffsets;
        if (pieces.back().from == e.host_count) {
          // Nothing ran at the offset this replaces (a guest hypervisor's
          // CNTVOFF_EL2 set at the count the guest resumed, two changes at
          // one count): no stretch to draw, the step stays where it was.
          pieces.back().offset = offset();
          if (!pieces.back().run_start) (vm ? gaps.back().vm : gaps.back().nested) = true;
          break;
        }
        pieces.back().to = e.host_count;
        gaps.push_back(Gap{.pause = false, .vm = vm, .nested = !vm});
        pieces.push_back(Piece{e.host, e.host_count, e.host_count, offset(), false});
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

  const Ticks ticks = TicksFor(ymin, ymax);

  std::string s;
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" + Num(W, "%.0f") +
       "\" height=\"" + Num(H, "%.0f") + "\" viewBox=\"0 0 " + Num(W, "%.0f") + " " +
       Num(H, "%.0f") + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<title>" + std::string(virt ? "CNTVCT" : "CNTPCT") + " of vCPU " + std::to_string(o.vcpu) +
       " against host time</title>\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  const std::string title = "Guest " +
                            std::string(virt ? "virtual (CNTVCT)" : "physical (CNTPCT)") +
                            " time of vCPU " + std::to_string(o.vcpu) + " against its hosts' time";
  // 16 px, or smaller to fit a narrow picture.
  const double title_size = std::clamp((W - 20) / WidthOf(title, 1), 8.0, 16.0);
  Text(s, W / 2, 28, "text-anchor=\"middle\" font-size=\"" + Num(title_size) + "\"", title);
  // The guest-time grid, then the pause bands over it, under everything
  // else.
  const double first_tick = std::ceil(ymin / ticks.step);
  for (int k = 0; k < 20 && (first_tick + k) * ticks.step <= ymax; ++k) {
    const double v = (first_tick + k) * ticks.step + 0.0;  // never "-0"
    const std::string y = Num(Y(v));
    s += "<line class=\"grid\" x1=\"" + Num(left) + "\" y1=\"" + y + "\" x2=\"" + Num(left + pw) +
         "\" y2=\"" + y + "\" stroke=\"" + kGrid + "\"/>\n";
    s += "<line x1=\"" + Num(left - 5) + "\" y1=\"" + y + "\" x2=\"" + Num(left) + "\" y2=\"" + y +
         "\" stroke=\"#000000\"/>\n";
    Text(s, left - 8, Y(v) + 4, "class=\"tick\" text-anchor=\"end\"",
         Fixed(v / ticks.unit, ticks.decimals) + " " + ticks.unit_name);
  }
  // Labels go on top of the lines, after them.
  std::string labels;
  Rows band_rows(3);
  for (std::size_t i = 0; i < gaps.size(); ++i) {
    if (!gaps[i].pause) continue;
    const Piece &a = pieces[i], &b = pieces[i + 1];
    const double bx = x1[i], cx = bx + band / 2;
    // The time away is known only on one host's counter; a move between
    // two hosts names the host the guest went to.
    const std::string away =
        a.host == b.host ? "paused " + Seconds(static_cast<double>(b.from - a.to) / hz(a)) : "";
    const std::string step = "guest " + Step(guest_s(b, b.from) - guest_s(a, a.to));
    s += "<rect class=\"pause\" x=\"" + Num(bx) + "\" y=\"" + Num(top) + "\" width=\"" + Num(band) +
         "\" height=\"" + Num(ph) + "\" fill=\"" + kPause + "\"><title>" +
         (a.host == b.host ? away + " on " + Escape(t.hosts[a.host].name)
                           : "moved from " + Escape(t.hosts[a.host].name) + " to " +
                                 Escape(t.hosts[b.host].name)) +
         ", " + step + "</title></rect>\n";
    const std::string what = a.host == b.host ? away : "moved to " + Fit(t.hosts[b.host].name, 16);
    const double wide = std::max(WidthOf(what, 10), WidthOf(step, 10));
    if (auto row = band_rows.Place(cx - wide / 2, cx + wide / 2)) {
      const double y = top + 14 + 30 * static_cast<double>(*row);
      Text(labels, cx, y, "text-anchor=\"middle\" font-size=\"10\"", what);
      Text(labels, cx, y + 14, "text-anchor=\"middle\" font-size=\"10\"", step);
    }
  }
  s += "<rect x=\"" + Num(left) + "\" y=\"" + Num(top) + "\" width=\"" + Num(pw) + "\" height=\"" +
       Num(ph) + "\" fill=\"none\" stroke=\"#000000\"/>\n";
  Text(
      s, 20, top + ph / 2,
      "text-anchor=\"middle\" transform=\"rotate(-90 20 " + Num(top + ph / 2) + ")\"",
      std::string("guest ") + (virt ? "virtual" : "physical") + " count (" + ticks.unit_name + ")");
  // The stretches, each labelled under the axis with the host count it
  // starts at and, at a run's start, its host.
  double last_label = 0;
  Rows change_rows(4);
  bool any_vm = false, any_nested = false;
  // Where each host's stretch of runs starts (the first run, each move to
  // another host): its name goes there, cut to fit before the next.
  std::vector<std::size_t> host_starts;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    if (i == 0 || (pieces[i].run_start && pieces[i].host != pieces[i - 1].host)) {
      host_starts.push_back(i);
    }
  }
  std::size_t next_host = 0;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    s += "<line class=\"run\" x1=\"" + Num(x0[i]) + "\" y1=\"" + Num(Y(guest_s(p, p.from))) +
         "\" x2=\"" + Num(x1[i]) + "\" y2=\"" + Num(Y(guest_s(p, p.to))) + "\" stroke=\"" + kLine +
         "\" stroke-width=\"4\"/>\n";
    // A label where it has room (stretches can be a few pixels wide).
    if (i == 0 || x0[i] - last_label >= 80) {
      Text(s, x0[i], top + ph + 16, "font-size=\"10\"",
           HostSeconds(static_cast<double>(p.from) / hz(p)));
      last_label = x0[i];
    }
    if (next_host < host_starts.size() && host_starts[next_host] == i) {
      ++next_host;
      const double room =
          (next_host == host_starts.size() ? left + pw + right : x0[host_starts[next_host]]) -
          x0[i] - 8;
      const auto chars = static_cast<std::size_t>(std::max(0.0, room / 7.2));
      if (chars >= 4) {
        Text(s, x0[i], top + ph + 32, "class=\"host\" font-weight=\"bold\"",
             "on " + Fit(t.hosts[p.host].name, chars - 3));
      }
    }
    if (i >= gaps.size() || gaps[i].pause) continue;
    // An offset change inside a run: the VM's offsets dashed, a guest
    // hypervisor's CNTVOFF_EL2 dotted, each with the guest's step.
    const Gap& g = gaps[i];
    const Piece& n = pieces[i + 1];
    any_vm = any_vm || g.vm;
    any_nested = any_nested || g.nested;
    const std::string what = std::string(g.vm && g.nested ? "offsets, CNTVOFF_EL2"
                                         : g.vm           ? "offsets"
                                                          : "CNTVOFF_EL2") +
                             ": guest " + Step(guest_s(n, n.from) - guest_s(p, p.to));
    s += "<line class=\"" + std::string(g.vm ? "offsets" : "nested") + "\" x1=\"" + Num(x1[i]) +
         "\" y1=\"" + Num(top) + "\" x2=\"" + Num(x1[i]) + "\" y2=\"" + Num(top + ph) +
         "\" stroke=\"" + kOffsets + "\" stroke-width=\"2\" stroke-dasharray=\"" +
         (g.vm ? "6 4" : "2 3") + "\"><title>" + what + "</title></line>\n";
    // Staggered, so that changes close together stay readable.
    if (auto row = change_rows.Place(x1[i], x1[i] + 4 + WidthOf(what, 10))) {
      Text(labels, x1[i] + 4, top + ph - 8 - 14 * static_cast<double>(*row),
           "fill=\"" + std::string(kOffsets) + "\" font-size=\"10\"", what);
    }
  }
  s += labels;
  Text(s, left + pw / 2, top + ph + 52, "text-anchor=\"middle\"",
       "host counter at each stretch's start; pauses not to scale");
  // The legend: what this picture holds, in rows that fit its width.
  double lx = left, ly = H - 30;
  // Its sample: a line (colour, width, dashes) or, without a width, a box.
  auto entry = [&](std::string_view label, const char* colour, const char* width,
                   const char* dash) {
    const double wide = 36 + 6.5 * static_cast<double>(label.size()) + 24;
    if (lx > left && lx + wide > W - right) lx = left, ly += 18;
    if (*width == 0) {
      s += "<rect x=\"" + Num(lx) + "\" y=\"" + Num(ly - 7) +
           "\" width=\"30\" height=\"14\" fill=\"" + colour + "\"/>\n";
    } else {
      s += "<line x1=\"" + Num(lx) + "\" y1=\"" + Num(ly) + "\" x2=\"" + Num(lx + 30) + "\" y2=\"" +
           Num(ly) + "\" stroke=\"" + colour + "\" stroke-width=\"" + width + "\"" +
           (*dash != 0 ? std::string(" stroke-dasharray=\"") + dash + "\"" : "") + "/>\n";
    }
    Text(s, lx + 36, ly + 4, "", label);
    lx += wide;
  };
  entry("guest running", kLine, "4", "");
  if (pauses > 0) entry("paused or moved: time away, guest's step", kPause, "", "");
  if (any_vm) entry("VM offsets changed", kOffsets, "2", "6 4");
  if (any_nested) entry("CNTVOFF_EL2 set (nested)", kOffsets, "2", "2 3");
  s += "</svg>\n";
  return s;
}

}  // namespace vtime::trace
