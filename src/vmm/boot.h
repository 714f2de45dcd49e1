// Putting a guest in RAM the way it expects to boot: the image (ELF, raw,
// or an arm64 Linux Image placed by its header), the initrd, and the device
// tree whose address goes in x0. Pure: what vtvmm runs and what
// `vtvmm --dtb-dump` writes come from this one function.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/device_tree.h"
#include "vmm/loader.h"
#include "vtime/result.h"

namespace vtime::vmm {

/// How to read the image file.
enum class ImageFormat : std::uint8_t {
  kProgram,     ///< ELF executable, else a raw binary (vtvmm IMAGE)
  kLinuxImage,  ///< an arm64 Linux Image, refused without its header (--kernel)
};

struct BootRequest {
  std::span<const std::uint8_t> image;
  ImageFormat format = ImageFormat::kProgram;
  std::span<const std::uint8_t> initrd;  ///< empty: none
  /// The machine the device tree describes; its initrd range is filled in
  /// here, and its RAM size is the RAM given.
  MachineDescription machine;
};

struct BootLayout {
  LoadedImage image;
  BootData data;                  ///< where the device tree and the initrd went
  std::vector<std::uint8_t> dtb;  ///< the device tree as written to RAM
};

/// Loads the image, then the initrd and the device tree above it
/// (PlaceBootData), into `ram`.
Result<BootLayout> LoadBoot(const BootRequest& request, RamView ram);

}  // namespace vtime::vmm
