// libFuzzer target for the VM snapshot decoder (the file vtvmm --restore and
// --incoming read). Inputs are decoded as given and with their frame length
// and CRC-32 repaired, so mutations reach the section decoder; whatever
// decodes must encode again and decode to the same snapshot.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "vmm/snapshot.h"

namespace {

constexpr std::size_t kHeader = 24;
constexpr std::size_t kTrailer = 4;

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

std::vector<std::uint8_t> Reframed(std::span<const std::uint8_t> bytes) {
  std::vector<std::uint8_t> out(bytes.begin(), bytes.end());
  const std::uint64_t payload = out.size() - kHeader - kTrailer;
  for (std::size_t i = 0; i < 8; ++i) out[16 + i] = static_cast<std::uint8_t>(payload >> (8 * i));
  const std::size_t framed = out.size() - kTrailer;
  const auto crc = static_cast<std::uint32_t>(crc32_z(0, out.data(), framed));
  for (std::size_t i = 0; i < 4; ++i) out[framed + i] = static_cast<std::uint8_t>(crc >> (8 * i));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  CheckRoundTrip(bytes);
  if (size >= kHeader + kTrailer) CheckRoundTrip(Reframed(bytes));
  return 0;
}
