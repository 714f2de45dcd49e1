// Little-endian byte encoding shared by vtime's file and stream formats: a
// writer, a bounds-checked reader that refuses instead of overrunning, and
// the checksummed frame (magic, version, length, payload, CRC-32) every
// vtime format uses. Pure.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vtime/result.h"

namespace vtime::wire {

/// Appends little-endian integers and byte runs.
class Writer {
 public:
  void U8(std::uint8_t v) { out_.push_back(v); }
  void U16(std::uint16_t v) { Le(v, 2); }
  void U32(std::uint32_t v) { Le(v, 4); }
  void U64(std::uint64_t v) { Le(v, 8); }
  void Bytes(std::span<const std::uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  /// A u64 length followed by the bytes.
  void Blob(std::span<const std::uint8_t> b) {
    U64(b.size());
    Bytes(b);
  }
  [[nodiscard]] std::size_t size() const { return out_.size(); }
  std::vector<std::uint8_t> Take() { return std::move(out_); }

 private:
  void Le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  std::vector<std::uint8_t> out_;
};

/// Reads little-endian integers; every read past the end fails with a
/// one-line reason naming `what` and the offset.
class Reader {
 public:
  Reader(std::span<const std::uint8_t> bytes, std::string what)
      : bytes_(bytes), what_(std::move(what)) {}
  Result<std::uint8_t> U8() { return Le<std::uint8_t>(1); }
  Result<std::uint16_t> U16() { return Le<std::uint16_t>(2); }
  Result<std::uint32_t> U32() { return Le<std::uint32_t>(4); }
  Result<std::uint64_t> U64() { return Le<std::uint64_t>(8); }
  /// The next n bytes (a view into the input).
  Result<std::span<const std::uint8_t>> Bytes(std::uint64_t n);
  /// A u64 length then that many bytes.
  Result<std::span<const std::uint8_t>> Blob();
  [[nodiscard]] std::size_t offset() const { return at_; }
  [[nodiscard]] std::size_t remaining() const { return bytes_.size() - at_; }
  [[nodiscard]] bool done() const { return at_ == bytes_.size(); }

 private:
  template <class T>
  Result<T> Le(int n) {
    auto b = Bytes(static_cast<std::uint64_t>(n));
    if (!b) return tl::unexpected(b.error());
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= std::uint64_t{(*b)[static_cast<std::size_t>(i)]} << (8 * i);
    return static_cast<T>(v);
  }
  std::span<const std::uint8_t> bytes_;
  std::string what_;
  std::size_t at_ = 0;
};

/// The frame around a payload: 8-byte magic, u32 version, u32 flags (0),
/// u64 payload length, the payload, then a u32 CRC-32 (zlib's) of all that.
using Magic = std::array<std::uint8_t, 8>;
/// The bytes before the payload: magic, version, flags, payload length.
inline constexpr std::size_t kFrameHeaderSize = 24;
/// Where in the header the u64 payload length is.
inline constexpr std::size_t kFrameLengthOffset = 16;
/// The bytes after the payload: the CRC-32.
inline constexpr std::size_t kFrameTrailerSize = 4;
std::vector<std::uint8_t> Frame(const Magic& magic, std::uint32_t version,
                                std::span<const std::uint8_t> payload);

struct Unframed {
  std::uint32_t version = 0;
  std::span<const std::uint8_t> payload;
};
/// Checks magic, flags, length and checksum, and that the version is in
/// 1..max_version (a newer one is kUnsupported, naming both versions). `what`
/// names the format in messages ("snapshot").
Result<Unframed> Unframe(std::span<const std::uint8_t> bytes, const Magic& magic,
                         std::uint32_t max_version, const std::string& what);

}  // namespace vtime::wire
