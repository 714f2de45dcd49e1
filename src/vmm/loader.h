// Loading a guest image into guest RAM: an arm64 ELF executable (segments at
// their physical addresses, entry at e_entry), a raw binary (loaded at
// layout::kRawImageLoad, entry at its first byte), or an arm64 Linux `Image`
// placed by its header; and where the device tree and an initrd go. Pure: it
// writes into a span that stands for guest RAM, so every malformed image is
// refused with a reason and nothing outside RAM is ever written.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "vtime/result.h"

namespace vtime::vmm {

/// What a load produced.
struct LoadedImage {
  std::uint64_t entry = 0;  ///< Guest physical address to start at.
  std::uint64_t low = 0;    ///< Lowest guest address written.
  std::uint64_t high = 0;   ///< One past the highest guest address written.
  bool elf = false;
  bool arm64_image = false;  ///< An arm64 Linux Image, placed by its header.
};

/// Guest RAM as the loader sees it.
struct RamView {
  std::uint64_t base = 0;
  std::span<std::uint8_t> bytes;
};

/// Loads `image` into `ram`. ELF images must be 64-bit little-endian
/// EM_AARCH64 executables; their PT_LOAD segments must lie inside RAM and
/// inside the file. Anything else without an ELF magic is a raw binary.
Result<LoadedImage> LoadImage(std::span<const std::uint8_t> image, RamView ram);

/// The header an arm64 Linux `Image` starts with (64 bytes, little endian;
/// the kernel's Documentation/arch/arm64/booting.rst).
struct Arm64ImageHeader {
  /// Where the image goes above a 2 MiB aligned base (0x80000 for kernels
  /// before 3.17, whose image_size is 0).
  std::uint64_t text_offset = 0;
  /// Bytes from the image's start the kernel needs free (its BSS included);
  /// 0 on kernels before 3.17, which do not say.
  std::uint64_t image_size = 0;
  std::uint64_t flags = 0;
  /// flags bit 0: a big-endian kernel.
  [[nodiscard]] bool big_endian() const { return (flags & 1) != 0; }
  /// flags bits 1-2: the kernel's page size in KiB (0: unspecified).
  [[nodiscard]] unsigned page_size_kib() const;
  /// flags bit 3: the 2 MiB base may be anywhere in 48-bit physical space
  /// (else it should be as close to the start of RAM as possible).
  [[nodiscard]] bool place_anywhere() const { return (flags & 8) != 0; }
};

/// True if `image` carries the arm64 Image magic ("ARM\x64" at offset 56).
bool HasArm64ImageMagic(std::span<const std::uint8_t> image);

/// Decodes the header; refuses a missing magic, a big-endian kernel, an
/// image_size smaller than the file, and a text_offset that is not a 4 KiB
/// multiple below 2 MiB (kInvalidArgument for the magic, else kMalformed or
/// kUnsupported).
Result<Arm64ImageHeader> ParseArm64ImageHeader(std::span<const std::uint8_t> image);

/// Loads an arm64 Linux Image at the start of RAM (a 2 MiB aligned base)
/// plus text_offset and starts it at its first byte. `high` is the end of
/// the image_size bytes it needs (the file's end when image_size is 0).
/// A RAM too small for them is kOutOfRange, with the size needed.
Result<LoadedImage> LoadArm64Image(std::span<const std::uint8_t> image, RamView ram);

/// Where the device tree and an initrd go.
struct BootData {
  std::uint64_t dtb = 0;           ///< 4 KiB aligned (the protocol needs 8 bytes)
  std::uint64_t initrd_start = 0;  ///< 4 KiB aligned; equal to initrd_end when none
  std::uint64_t initrd_end = 0;
};

/// Places the device tree at the top of [floor, limit), one page below
/// `limit`, and the initrd right under it, page aligned: the kernel's own
/// image (up to `floor`) stays clear and, when the kernel does not say how
/// much it needs, so does as much memory after it as possible. Fails
/// (kOutOfRange) when they do not fit.
Result<BootData> PlaceBootData(std::uint64_t floor, std::uint64_t limit, std::uint64_t dtb_size,
                               std::uint64_t initrd_size);

/// The `limit` for PlaceBootData: the end of RAM, and for a Linux Image no
/// more than 512 MiB above its 2 MiB base, where kernels before 4.2 need the
/// device tree (an initrd anywhere below it is also inside the 1 GiB aligned
/// 32 GiB window the protocol asks for).
std::uint64_t BootDataLimit(const LoadedImage& image, std::uint64_t ram_base,
                            std::uint64_t ram_size);

}  // namespace vtime::vmm
