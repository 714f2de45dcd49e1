// libFuzzer target for the saved-state decoder. Every input is decoded twice:
// as given (the frame checks: length, magic, checksum) and with its payload
// length and CRC-32 repaired (so that mutations reach the record decoder
// instead of stopping at the checksum). Whatever decodes must encode, and
// decode again to the same state; the JSON view must not fail on it either.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "vtime/state/codec.h"
#include "vtime/state/json.h"

namespace {

using vtime::state::Decode;
using vtime::state::Encode;

void CheckRoundTrip(std::span<const std::uint8_t> bytes) {
  const auto decoded = Decode(bytes);
  if (!decoded) {
    if (decoded.error().context.empty()) std::abort();
    return;
  }
  const auto encoded = Encode(*decoded);
  if (!encoded) std::abort();
  const auto again = Decode(*encoded);
  if (!again || *again != *decoded) std::abort();
  if (vtime::state::ToJson(*decoded).empty()) std::abort();
}

// The input with the header's payload length and the trailer made to match
// its size, as a valid frame would have them (see codec.h).
std::vector<std::uint8_t> Reframed(std::span<const std::uint8_t> bytes) {
  std::vector<std::uint8_t> out(bytes.begin(), bytes.end());
  constexpr std::size_t kFrame = vtime::state::kHeaderSize + vtime::state::kTrailerSize;
  const std::uint64_t payload = out.size() - kFrame;
  for (std::size_t i = 0; i < 8; ++i) out[16 + i] = static_cast<std::uint8_t>(payload >> (8 * i));
  const std::size_t framed = out.size() - vtime::state::kTrailerSize;
  const auto crc = static_cast<std::uint32_t>(crc32_z(0, out.data(), framed));
  for (std::size_t i = 0; i < 4; ++i) out[framed + i] = static_cast<std::uint8_t>(crc >> (8 * i));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  CheckRoundTrip(bytes);
  if (size >= vtime::state::kHeaderSize + vtime::state::kTrailerSize) {
    CheckRoundTrip(Reframed(bytes));
  }
  return 0;
}
