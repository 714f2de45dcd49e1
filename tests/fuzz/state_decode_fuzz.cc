// libFuzzer target for the saved-state decoder. Every input is decoded twice:
// as given (the frame checks: length, magic, checksum) and with its payload
// length and CRC-32 repaired (so that mutations reach the record decoder
// instead of stopping at the checksum). Whatever decodes must encode, and
// decode again to the same state; the JSON view must not fail on it either.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "reframe.h"
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  CheckRoundTrip(bytes);
  if (size >= vtime::wire::kFrameHeaderSize + vtime::wire::kFrameTrailerSize) {
    CheckRoundTrip(vtime::fuzz::Reframed(bytes));
  }
  return 0;
}
