// Hexadecimal formatting for messages, without stdio.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>

namespace vtime {

/// "0x" followed by the lowercase hexadecimal digits of v.
inline std::string Hex(std::uint64_t v) {
  char buf[2 + 16];
  buf[0] = '0';
  buf[1] = 'x';
  const auto res = std::to_chars(buf + 2, buf + sizeof buf, v, 16);
  return std::string(buf, res.ptr);
}

}  // namespace vtime
