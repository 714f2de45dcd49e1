#include "vtime/wire.h"

#include <zlib.h>

#include <algorithm>

#include "vtime/hex.h"

namespace vtime::wire {
namespace {
constexpr std::size_t kHeader = kFrameHeaderSize;
constexpr std::size_t kTrailer = kFrameTrailerSize;
static_assert(kFrameLengthOffset == sizeof(Magic) + 4 + 4 && kHeader == kFrameLengthOffset + 8);

std::uint32_t Crc32(std::span<const std::uint8_t> bytes) {
  // zlib takes a uInt length: feed it in pieces so any size is covered.
  uLong crc = crc32(0L, Z_NULL, 0);
  while (!bytes.empty()) {
    const std::size_t n = std::min<std::size_t>(bytes.size(), 1U << 30);
    crc = crc32(crc, bytes.data(), static_cast<uInt>(n));
    bytes = bytes.subspan(n);
  }
  return static_cast<std::uint32_t>(crc);
}
}  // namespace

Result<std::span<const std::uint8_t>> Reader::Bytes(std::uint64_t n) {
  if (n > remaining()) {
    return Fail(ErrorCode::kMalformed, what_ + ": truncated at byte " + std::to_string(at_) +
                                           " (needs " + std::to_string(n) + " more, has " +
                                           std::to_string(remaining()) + ")");
  }
  auto out = bytes_.subspan(at_, static_cast<std::size_t>(n));
  at_ += static_cast<std::size_t>(n);
  return out;
}

Result<std::span<const std::uint8_t>> Reader::Blob() {
  auto n = U64();
  if (!n) return tl::unexpected(n.error());
  return Bytes(*n);
}

std::vector<std::uint8_t> Frame(const Magic& magic, std::uint32_t version,
                                std::span<const std::uint8_t> payload) {
  Writer w;
  w.Bytes(magic);
  w.U32(version);
  w.U32(0);
  w.U64(payload.size());
  w.Bytes(payload);
  std::vector<std::uint8_t> out = w.Take();
  const std::uint32_t crc = Crc32(out);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(crc >> (8 * i)));
  return out;
}

Result<Unframed> Unframe(std::span<const std::uint8_t> bytes, const Magic& magic,
                         std::uint32_t max_version, const std::string& what) {
  auto malformed = [&what](const std::string& why) {
    return Fail(ErrorCode::kMalformed, what + ": " + why);
  };
  if (bytes.size() < kHeader + kTrailer) {
    return malformed("truncated: " + std::to_string(bytes.size()) +
                     " bytes, but a frame's header and checksum alone are " +
                     std::to_string(kHeader + kTrailer));
  }
  if (!std::equal(magic.begin(), magic.end(), bytes.begin())) {
    return malformed("bad magic: the input is not a vtime " + what);
  }
  Reader r(bytes.subspan(magic.size()), what);
  const std::uint32_t version = *r.U32();
  const std::uint32_t flags = *r.U32();
  const std::uint64_t length = *r.U64();
  const std::uint64_t available = bytes.size() - kHeader - kTrailer;
  if (length > available) {
    return malformed("truncated: the header's payload length is " + std::to_string(length) +
                     " bytes, but only " + std::to_string(available) +
                     " bytes of payload follow the header (before the 4-byte checksum)");
  }
  if (length < available) {
    return malformed("payload length " + std::to_string(length) +
                     " does not match the input: " + std::to_string(available - length) +
                     " trailing bytes follow the checksum");
  }
  std::uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) {
    stored |= std::uint32_t{bytes[bytes.size() - kTrailer + static_cast<std::size_t>(i)]}
              << (8 * i);
  }
  if (const std::uint32_t computed = Crc32(bytes.first(bytes.size() - kTrailer));
      stored != computed) {
    return malformed("checksum mismatch: stored CRC-32 " + Hex(stored) + ", computed " +
                     Hex(computed) + " (bad checksum: the data is corrupt)");
  }
  if (version == 0) return malformed("format version 0 does not exist (versions start at 1)");
  if (version > max_version) {
    return Fail(ErrorCode::kUnsupported, what + ": format version " + std::to_string(version) +
                                             " is newer than this vtime reads (1.." +
                                             std::to_string(max_version) +
                                             "); upgrade vtime on this host");
  }
  if (flags != 0) {
    return malformed("header flags " + Hex(flags) + " are not defined in format version " +
                     std::to_string(version) + " (must be 0)");
  }
  return Unframed{version, bytes.subspan(kHeader, static_cast<std::size_t>(length))};
}

}  // namespace vtime::wire
