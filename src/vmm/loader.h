// Loading a guest image into guest RAM: an arm64 ELF executable (segments at
// their physical addresses, entry at e_entry) or a raw binary (loaded at
// layout::kRawImageLoad, entry at its first byte). Pure: it writes into a
// span that stands for guest RAM, so every malformed image is refused with a
// reason and nothing outside RAM is ever written.
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

}  // namespace vtime::vmm
