// Lines of a raw ftrace text trace. Two things make them awkward: a task's
// name may hold spaces and dashes (its pid follows the last dash before the
// CPU field), and the flags field is there only with the irq-info option.
#include <charconv>
#include <string>

#include "vtime/trace/merge.h"

namespace vtime::trace {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

bool Digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

template <typename T>
bool Number(std::string_view s, T* out) {
  if (!Digits(s)) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

Result<std::optional<TraceRecord>> Bad(std::string_view why) {
  return Fail(ErrorCode::kMalformed, "not an ftrace text line: " + std::string(why));
}

}  // namespace

Result<std::optional<TraceRecord>> ParseFtraceLine(std::string_view line) {
  const std::string_view t = Trim(line);
  if (t.empty() || t.front() == '#') return std::optional<TraceRecord>();
  // "CPU:2 [LOST 17 EVENTS]" (trace_pipe), "CPU 2 is empty" and the
  // "cpus=2" header (trace-cmd report).
  if (t.rfind("CPU:", 0) == 0 || (t.rfind("CPU ", 0) == 0 && t.find("is empty") != t.npos) ||
      (t.rfind("cpus=", 0) == 0 && Digits(t.substr(5)))) {
    return std::optional<TraceRecord>();
  }
  // The CPU field: the first " [digits]" with a task-pid before it.
  std::size_t open = 0;
  for (;;) {
    open = t.find(" [", open);
    if (open == t.npos) return Bad("no [CPU] field");
    const std::size_t close = t.find(']', open);
    if (close != t.npos && Digits(t.substr(open + 2, close - open - 2))) break;
    open += 2;
  }
  const std::size_t close = t.find(']', open);
  TraceRecord r;
  if (!Number(t.substr(open + 2, close - open - 2), &r.cpu)) return Bad("the CPU is too large");
  const std::string_view task = Trim(t.substr(0, open));
  const std::size_t dash = task.rfind('-');
  if (dash == task.npos || !Number(task.substr(dash + 1), &r.pid)) {
    return Bad("no TASK-PID before the CPU field");
  }
  // After the CPU: optional flags, then "SECONDS.FRACTION:".
  std::string_view rest = Trim(t.substr(close + 1));
  std::size_t colon = rest.find(": ");
  if (colon == rest.npos) {
    colon = rest.find(':');
    if (colon == rest.npos) return Bad("no timestamp");
  }
  std::string_view stamp = rest.substr(0, colon);
  if (const std::size_t space = stamp.rfind(' '); space != stamp.npos) {
    stamp = stamp.substr(space + 1);
  }
  const std::size_t dot = stamp.find('.');
  std::uint64_t seconds = 0, fraction = 0;
  if (dot == stamp.npos || !Number(stamp.substr(0, dot), &seconds) ||
      !Number(stamp.substr(dot + 1), &fraction)) {
    return Bad("the timestamp is not SECONDS.FRACTION");
  }
  const std::size_t places = stamp.size() - dot - 1;
  if (places > 9) return Bad("the timestamp has more than 9 decimals");
  for (std::size_t i = places; i < 9; ++i) fraction *= 10;
  if (seconds > (UINT64_MAX - fraction) / 1'000'000'000u) return Bad("the timestamp is too large");
  r.ts_ns = seconds * 1'000'000'000u + fraction;
  rest = Trim(rest.substr(colon + 1));
  const std::size_t event_end = rest.find(':');
  if (event_end == rest.npos) {
    r.name = rest;
  } else {
    r.name = Trim(rest.substr(0, event_end));
    r.info = Trim(rest.substr(event_end + 1));
  }
  if (r.name.empty()) return Bad("no event name");
  return std::optional<TraceRecord>(r);
}

}  // namespace vtime::trace
