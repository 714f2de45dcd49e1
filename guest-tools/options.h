// Command-line helpers shared by the guest tools (header-only, pure).
#pragma once

#include <charconv>
#include <optional>
#include <string>
#include <string_view>

#include "vtime/result.h"

namespace vtime::guest_tools {

/// The whole of `text` as a number in [min, max], or nothing.
template <class T>
std::optional<T> ParseNumber(std::string_view text, T min, T max) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    return std::nullopt;
  }
  return value;
}

/// The value of option `name` at args[i + 1] as a number in [min, max]; on
/// success i is advanced past it.
template <class T, class Args>
Result<T> OptionValue(const Args& args, std::size_t& i, T min, T max) {
  const std::string name(args[i]);
  if (i + 1 >= args.size()) return Fail(ErrorCode::kInvalidArgument, name + " needs a value");
  auto value = ParseNumber<T>(args[i + 1], min, max);
  if (!value) {
    return Fail(ErrorCode::kInvalidArgument, name + " needs a number from " + std::to_string(min) +
                                                 " to " + std::to_string(max) + ", not '" +
                                                 std::string(args[i + 1]) + "'");
  }
  ++i;
  return *value;
}

}  // namespace vtime::guest_tools
