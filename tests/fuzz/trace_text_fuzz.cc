// The merge's text inputs (#11): ftrace text lines and clock-sample files
// come from files a user hands over. Whatever the bytes: no crash, a parsed
// line's views stay inside the line, the JSON written from any record is
// valid JSON (and UTF-8), and clock samples that parse format back to the
// same samples.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "vtime/trace/chrome_json.h"
#include "vtime/trace/clock_sample.h"
#include "vtime/trace/merge.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string json;
  vtime::trace::ChromeJsonWriter w(
      [&](std::string_view s) -> vtime::Result<void> {
        json += s;
        return {};
      },
      4096);
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t nl = std::min(text.find('\n', at), text.size());
    const std::string_view line = text.substr(at, nl - at);
    auto r = vtime::trace::ParseFtraceLine(line);
    if (r && *r) {
      const auto& rec = **r;
      const auto inside = [&](std::string_view v) {
        return v.empty() ||
               (v.data() >= line.data() && v.data() + v.size() <= line.data() + line.size());
      };
      if (!inside(rec.name) || !inside(rec.info) || rec.name.empty()) std::abort();
      if (!w.Instant(1, rec.cpu, static_cast<std::int64_t>(rec.ts_ns), rec.name, "t", rec.info,
                     rec.pid)) {
        std::abort();
      }
    }
    at = nl + 1;
  }
  if (!w.Process(1, text.substr(0, 64), 0) || !w.Finish()) std::abort();
  if (!nlohmann::json::accept(json)) std::abort();
  auto s = vtime::trace::ClockSamples::Parse(text);
  if (s) {
    auto back = vtime::trace::ClockSamples::Parse(s->Format());
    if (!back || !(*back == *s)) std::abort();
  }
  return 0;
}
