// For the decoders' fuzz targets: an input with the frame's payload length
// and CRC-32 made to match its size, as a valid vtime frame (vtime/wire.h:
// header with the u64 payload length, payload, u32 CRC trailer) would have
// them, so that mutations get past the checksum and
// reach the decoder behind it.
#pragma once

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "vtime/wire.h"

namespace vtime::fuzz {

/// Precondition: bytes.size() >= wire::kFrameHeaderSize + wire::kFrameTrailerSize.
inline std::vector<std::uint8_t> Reframed(std::span<const std::uint8_t> bytes) {
  std::vector<std::uint8_t> out(bytes.begin(), bytes.end());
  const std::uint64_t payload = out.size() - wire::kFrameHeaderSize - wire::kFrameTrailerSize;
  for (std::size_t i = 0; i < 8; ++i)
    out[wire::kFrameLengthOffset + i] = static_cast<std::uint8_t>(payload >> (8 * i));
  const std::size_t framed = out.size() - wire::kFrameTrailerSize;
  const auto crc = static_cast<std::uint32_t>(crc32_z(0, out.data(), framed));
  for (std::size_t i = 0; i < 4; ++i) out[framed + i] = static_cast<std::uint8_t>(crc >> (8 * i));
  return out;
}

}  // namespace vtime::fuzz
