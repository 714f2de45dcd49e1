#include "vtime/trace/chrome_json.h"

#include <charconv>
#include <utility>

namespace vtime::trace {

namespace {

// The length of the well-formed UTF-8 sequence at s[i], or 0.
std::size_t Utf8Length(std::string_view s, std::size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  std::uint32_t min = 0, cp = 0;
  if (b >= 0xc2 && b <= 0xdf) {
    n = 2, min = 0x80, cp = b & 0x1fu;
  } else if (b >= 0xe0 && b <= 0xef) {
    n = 3, min = 0x800, cp = b & 0x0fu;
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 4, min = 0x10000, cp = b & 0x07u;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xc0u) != 0x80u) return 0;
    cp = (cp << 6) | (c & 0x3fu);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

void AppendInt(std::string& out, std::int64_t v) {
  char b[24];
  const auto r = std::to_chars(b, b + sizeof b, v);
  out.append(b, r.ptr);
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (const std::size_t n = Utf8Length(s, i); n != 0) {
        out.append(s.substr(i, n));
        i += n;
      } else {
        out += "\\ufffd";
        ++i;
      }
      continue;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  out += '"';
}

void AppendMicros(std::string& out, std::int64_t ns) {
  // |ns| as unsigned, so INT64_MIN has a magnitude too.
  std::uint64_t mag = static_cast<std::uint64_t>(ns);
  if (ns < 0) {
    out += '-';
    mag = ~mag + 1;
  }
  char b[24];
  const auto r = std::to_chars(b, b + sizeof b, mag / 1000);
  out.append(b, r.ptr);
  const auto frac = static_cast<unsigned>(mag % 1000);
  out += '.';
  out += static_cast<char>('0' + frac / 100);
  out += static_cast<char>('0' + frac / 10 % 10);
  out += static_cast<char>('0' + frac % 10);
}

ChromeJsonWriter::ChromeJsonWriter(Sink sink, std::size_t buffer_bytes)
    : sink_(std::move(sink)), limit_(buffer_bytes < 4096 ? 4096 : buffer_bytes) {
  buf_.reserve(limit_ + 4096);
  buf_ = "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
}

Result<void> ChromeJsonWriter::Begin() {
  if (finished_) return Fail(ErrorCode::kBadState, "the trace's JSON is already finished");
  if (events_++ != 0) buf_ += ",\n";
  return {};
}

Result<void> ChromeJsonWriter::Spill() {
  if (buf_.size() < limit_) return {};
  auto r = sink_(buf_);
  buf_.clear();
  return r;
}

Result<void> ChromeJsonWriter::Process(std::uint32_t pid, std::string_view name,
                                       std::int32_t sort_index) {
  if (auto b = Begin(); !b) return b;
  buf_ += "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":";
  AppendInt(buf_, pid);
  buf_ += ",\"tid\":0,\"args\":{\"name\":";
  AppendJsonString(buf_, name);
  buf_ += "}},\n{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":";
  AppendInt(buf_, pid);
  buf_ += ",\"tid\":0,\"args\":{\"sort_index\":";
  AppendInt(buf_, sort_index);
  buf_ += "}}";
  ++events_;
  return Spill();
}

Result<void> ChromeJsonWriter::Thread(std::uint32_t pid, std::uint32_t tid, std::string_view name,
                                      std::int32_t sort_index) {
  if (auto b = Begin(); !b) return b;
  buf_ += "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":";
  AppendInt(buf_, pid);
  buf_ += ",\"tid\":";
  AppendInt(buf_, tid);
  buf_ += ",\"args\":{\"name\":";
  AppendJsonString(buf_, name);
  buf_ += "}},\n{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":";
  AppendInt(buf_, pid);
  buf_ += ",\"tid\":";
  AppendInt(buf_, tid);
  buf_ += ",\"args\":{\"sort_index\":";
  AppendInt(buf_, sort_index);
  buf_ += "}}";
  ++events_;
  return Spill();
}

Result<void> ChromeJsonWriter::Instant(std::uint32_t pid, std::uint32_t tid, std::int64_t ts_ns,
                                       std::string_view name, std::string_view category,
                                       std::string_view info, std::int32_t task) {
  if (auto b = Begin(); !b) return b;
  buf_ += "{\"ph\":\"i\",\"s\":\"t\",\"name\":";
  AppendJsonString(buf_, name);
  buf_ += ",\"cat\":";
  AppendJsonString(buf_, category);
  buf_ += ",\"ts\":";
  AppendMicros(buf_, ts_ns);
  buf_ += ",\"pid\":";
  AppendInt(buf_, pid);
  buf_ += ",\"tid\":";
  AppendInt(buf_, tid);
  buf_ += ",\"args\":{\"task\":";
  AppendInt(buf_, task);
  if (!info.empty()) {
    buf_ += ",\"info\":";
    AppendJsonString(buf_, info);
  }
  buf_ += "}}";
  return Spill();
}

Result<void> ChromeJsonWriter::Finish() {
  if (finished_) return Fail(ErrorCode::kBadState, "the trace's JSON is already finished");
  finished_ = true;
  buf_ += "\n]}\n";
  auto r = sink_(buf_);
  buf_.clear();
  return r;
}

}  // namespace vtime::trace
