#include "files.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <span>

namespace vtime::trace_tool {

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(ErrorCode::kSystem, path + ": " + std::strerror(errno));
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

Result<trace::Timeline> LoadTimeline(const std::string& path) {
  auto bytes = ReadFile(path);
  if (!bytes) return tl::unexpected(bytes.error());
  auto t = trace::Timeline::Decode(
      std::span(reinterpret_cast<const std::uint8_t*>(bytes->data()), bytes->size()));
  if (!t) return Fail(t.error().code, path + ": " + t.error().Message());
  return t;
}

Result<trace::ClockSamples> LoadClockSamples(const std::string& path) {
  auto text = ReadFile(path);
  if (!text) return tl::unexpected(text.error());
  auto s = trace::ClockSamples::Parse(*text);
  if (!s) return Fail(s.error().code, path + ": " + s.error().Message());
  return s;
}

}  // namespace vtime::trace_tool
