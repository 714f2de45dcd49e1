#include "vtime/trace/clock_sample.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <string>

namespace vtime::trace {
namespace {

constexpr std::size_t kMaxMachineName = 256;

tl::unexpected<Error> Bad(std::size_t line, const std::string& why) {
  return Fail(ErrorCode::kMalformed, "clock samples, line " + std::to_string(line) + ": " + why);
}

// Reads "name=value" fields in the order given from `rest`, into `out`.
template <std::size_t N>
Result<void> Fields(std::size_t line, std::string_view rest, const char* const (&names)[N],
                    std::uint64_t (&out)[N]) {
  for (std::size_t i = 0; i < N; ++i) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    const std::string_view want = names[i];
    if (rest.substr(0, want.size()) != want || rest.size() <= want.size() ||
        rest[want.size()] != '=') {
      return Bad(line, "expected " + std::string(want) + "=");
    }
    rest.remove_prefix(want.size() + 1);
    const std::size_t end = std::min(rest.find(' '), rest.size());
    const std::string_view digits = rest.substr(0, end);
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out[i]);
    if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size()) {
      return Bad(line, std::string(want) + " is not a 64-bit number");
    }
    rest.remove_prefix(end);
  }
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (!rest.empty()) return Bad(line, "unexpected '" + std::string(rest) + "'");
  return Ok();
}

}  // namespace

std::string ClockSamples::Format() const {
  std::string s = std::string(wall_clock ? "vtime-clocksample 2" : "vtime-clocksample 1") +
                  "\nmachine " + machine +
                  "\nfrequency hz=" + std::to_string(counter_frequency_hz) +
                  "\nperf time_zero=" + std::to_string(perf.time_zero) +
                  " time_mult=" + std::to_string(perf.time_mult) +
                  " time_shift=" + std::to_string(perf.time_shift) +
                  " time_cycles=" + std::to_string(perf.time_cycles) +
                  " time_mask=" + std::to_string(perf.time_mask) + "\n";
  for (const ClockSample& c : samples) {
    s += "sample before=" + std::to_string(c.counter_before) +
         " monotonic_ns=" + std::to_string(c.monotonic_ns) +
         (wall_clock ? " realtime_ns=" + std::to_string(c.realtime_ns) : std::string()) +
         " after=" + std::to_string(c.counter_after) + "\n";
  }
  return s;
}

Result<ClockSamples> ClockSamples::Parse(std::string_view text) {
  ClockSamples out;
  bool machine = false, frequency = false, perf = false;
  std::size_t line_no = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (line_no == 1) {
      if (line == "vtime-clocksample 2") {
        out.wall_clock = true;
      } else if (line != "vtime-clocksample 1") {
        return Bad(1, "not a vtime-clocksample file of version 1 or 2");
      }
      continue;
    }
    const std::size_t sp = line.find(' ');
    const std::string_view kind = line.substr(0, sp);
    const std::string_view rest =
        sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    if (kind == "machine") {
      if (machine) return Bad(line_no, "a second machine line");
      if (rest.empty() || rest.size() > kMaxMachineName) {
        return Bad(line_no, "the machine's name must be 1 to 256 bytes");
      }
      out.machine = std::string(rest);
      machine = true;
    } else if (kind == "frequency") {
      if (frequency) return Bad(line_no, "a second frequency line");
      static constexpr const char* kNames[] = {"hz"};
      std::uint64_t v[1];
      if (auto r = Fields(line_no, rest, kNames, v); !r) return tl::unexpected(r.error());
      if (v[0] == 0) return Bad(line_no, "a counter frequency of 0");
      out.counter_frequency_hz = v[0];
      frequency = true;
    } else if (kind == "perf") {
      if (perf) return Bad(line_no, "a second perf line");
      static constexpr const char* kNames[] = {"time_zero", "time_mult", "time_shift",
                                               "time_cycles", "time_mask"};
      std::uint64_t v[5];
      if (auto r = Fields(line_no, rest, kNames, v); !r) return tl::unexpected(r.error());
      if (v[1] > std::numeric_limits<std::uint32_t>::max() ||
          v[2] > std::numeric_limits<std::uint16_t>::max()) {
        return Bad(line_no, "time_mult or time_shift does not fit the perf page's field");
      }
      out.perf = PerfClock{v[0], static_cast<std::uint32_t>(v[1]), static_cast<std::uint16_t>(v[2]),
                           v[3], v[4]};
      if (auto ok = out.perf.Validate(); !ok) return Bad(line_no, ok.error().context);
      perf = true;
    } else if (kind == "sample") {
      if (out.samples.size() == kMaxClockSamples) {
        return Bad(line_no, "more than " + std::to_string(kMaxClockSamples) + " samples");
      }
      static constexpr const char* kNames1[] = {"before", "monotonic_ns", "after"};
      static constexpr const char* kNames2[] = {"before", "monotonic_ns", "realtime_ns", "after"};
      std::uint64_t v[4] = {};
      if (out.wall_clock) {
        if (auto r = Fields(line_no, rest, kNames2, v); !r) return tl::unexpected(r.error());
        std::swap(v[2], v[3]);  // before, monotonic, after, realtime
      } else {
        std::uint64_t w[3];
        if (auto r = Fields(line_no, rest, kNames1, w); !r) return tl::unexpected(r.error());
        v[0] = w[0], v[1] = w[1], v[2] = w[2];
      }
      if (v[0] > v[2]) return Bad(line_no, "the counter read after is below the one before");
      if (!out.samples.empty() &&
          (v[0] < out.samples.back().counter_after || v[1] < out.samples.back().monotonic_ns)) {
        return Bad(line_no, "a sample earlier than the one before it");
      }
      out.samples.push_back(ClockSample{v[0], v[1], v[2], v[3]});
    } else if (!line.empty()) {
      return Bad(line_no, "unknown record '" + std::string(kind) + "'");
    }
  }
  if (line_no == 0) return Bad(1, "empty file");
  if (!machine || !frequency || !perf) {
    return Bad(line_no, "the machine, frequency and perf lines must all be there");
  }
  if (out.samples.empty()) return Bad(line_no, "no sample");
  return out;
}

Result<ClockSamples::Offset> ClockSamples::OffsetOf(Clock clock, std::uint64_t slack_ns) const {
  if (clock == Clock::kRealtime && !wall_clock) {
    return Fail(ErrorCode::kUnsupported,
                "clock samples of " + machine + " hold no CLOCK_REALTIME (a version-1 file)");
  }
  if (samples.empty()) return Fail(ErrorCode::kInvalidArgument, "no clock samples");
  // Each reading r lies between the trace clock at the counter read before
  // and after it: clock - trace is in [r - Trace(after), r - Trace(before)].
  __extension__ using I128 = __int128;
  I128 low = std::numeric_limits<std::int64_t>::min(),
       high = std::numeric_limits<std::int64_t>::max();
  for (const auto& c : samples) {
    const I128 r = clock == Clock::kMonotonic ? c.monotonic_ns : c.realtime_ns;
    low = std::max(low, r - static_cast<I128>(perf.TraceNs(c.counter_after)));
    high = std::min(high, r - static_cast<I128>(perf.TraceNs(c.counter_before)));
  }
  const char* name = clock == Clock::kMonotonic ? "CLOCK_MONOTONIC" : "CLOCK_REALTIME";
  if (low > high + static_cast<I128>(slack_ns)) {
    return Fail(ErrorCode::kOutOfRange,
                std::string(name) + " - trace clock differs between the samples of " + machine +
                    " by " + std::to_string(static_cast<long long>(low - high)) +
                    " ns more than their readings allow: the conversion does not fit this "
                    "machine's clocks, or the clock was stepped between them");
  }
  Offset o;
  o.ns = static_cast<std::int64_t>((low + high) / 2);
  o.width_ns = high >= low ? static_cast<std::uint64_t>(high - low) : 0;
  return o;
}

}  // namespace vtime::trace
