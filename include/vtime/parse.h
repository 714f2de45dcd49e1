// Numbers on command lines (header-only, pure).
#pragma once

#include <charconv>
#include <cstdint>
#include <string_view>

namespace vtime {

/// The whole of `s` as an unsigned 64-bit number, decimal or, after 0x or
/// 0X, hexadecimal; false (and *out unspecified) for anything else.
inline bool ParseU64(std::string_view s, std::uint64_t* out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace vtime
