// libFuzzer target for the vGICv3 state decoder (the kernel irqchip's state
// inside snapshots, from files and migration peers). Every input is decoded
// as given and with its CRC-32 trailer repaired, so that mutations get past
// the checksum to the shape checks. Whatever decodes must re-encode to the
// very bytes it came from (the encoding has one form per state) and decode
// again to the same state; a refusal must say why, on one line.
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "vtime/backend/vgic_codec.h"

namespace {

void Check(std::span<const std::uint8_t> bytes) {
  const auto decoded = vtime::kvm::DecodeVgicState(bytes);
  if (!decoded) {
    const std::string& why = decoded.error().context;
    if (why.empty() || why.find('\n') != std::string::npos) std::abort();
    return;
  }
  const std::vector<std::uint8_t> encoded = vtime::kvm::EncodeVgicState(*decoded);
  if (!std::equal(encoded.begin(), encoded.end(), bytes.begin(), bytes.end())) std::abort();
  const auto again = vtime::kvm::DecodeVgicState(encoded);
  if (!again || *again != *decoded) std::abort();
}

std::vector<std::uint8_t> Resealed(std::span<const std::uint8_t> bytes) {
  std::vector<std::uint8_t> out(bytes.begin(), bytes.end());
  const std::size_t body = out.size() - 4;
  const auto crc = static_cast<std::uint32_t>(crc32_z(0, out.data(), body));
  for (std::size_t i = 0; i < 4; ++i) out[body + i] = static_cast<std::uint8_t>(crc >> (8 * i));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  Check(bytes);
  if (size >= 4) Check(Resealed(bytes));
  return 0;
}
