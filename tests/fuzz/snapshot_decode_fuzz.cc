// libFuzzer target for the VM snapshot decoder (the file vtvmm --restore and
// --incoming read). Inputs are decoded as given and with their frame length
// and CRC-32 repaired, so mutations reach the section decoder; whatever
// decodes must encode again and decode to the same snapshot.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "reframe.h"
#include "vmm/snapshot.h"

namespace {

void CheckRoundTrip(std::span<const std::uint8_t> bytes) {
  const auto decoded = vtime::vmm::DecodeSnapshot(bytes);
  if (!decoded) {
    if (decoded.error().context.empty()) std::abort();
    return;
  }
  const auto encoded = vtime::vmm::EncodeSnapshot(*decoded);
  if (!encoded) std::abort();
  const auto again = vtime::vmm::DecodeSnapshot(*encoded);
  if (!again || *again != *decoded) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  CheckRoundTrip(bytes);
  if (size >= vtime::wire::kFrameHeaderSize + vtime::wire::kFrameTrailerSize)
    CheckRoundTrip(vtime::fuzz::Reframed(bytes));
  return 0;
}
