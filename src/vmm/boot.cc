#include "vmm/boot.h"

#include <cstring>

namespace vtime::vmm {

Result<BootLayout> LoadBoot(const BootRequest& request, RamView ram) {
  auto image = request.format == ImageFormat::kLinuxImage ? LoadArm64Image(request.image, ram)
                                                          : LoadImage(request.image, ram);
  if (!image) return tl::unexpected(image.error());
  MachineDescription machine = request.machine;
  machine.ram_size = ram.bytes.size();
  // The tree's size does not depend on the initrd's addresses (fixed-width
  // cells), only on whether there is one: build it once to learn its size,
  // place everything, then build it with the addresses.
  if (!request.initrd.empty()) machine.initrd = MachineDescription::Range{};
  auto sized = BuildDeviceTree(machine);
  if (!sized) return tl::unexpected(sized.error());
  auto data = PlaceBootData(image->high, BootDataLimit(*image, ram.base, ram.bytes.size()),
                            sized->size(), request.initrd.size());
  if (!data) return tl::unexpected(data.error());
  if (!request.initrd.empty()) {
    machine.initrd = MachineDescription::Range{data->initrd_start, data->initrd_end};
  }
  auto dtb = BuildDeviceTree(machine);
  if (!dtb) return tl::unexpected(dtb.error());
  if (dtb->size() != sized->size()) {
    return Fail(ErrorCode::kBadState, "device tree: its size changed with the initrd's address");
  }
  std::uint8_t* base = ram.bytes.data();
  if (!request.initrd.empty()) {
    std::memcpy(base + (data->initrd_start - ram.base), request.initrd.data(),
                request.initrd.size());
  }
  std::memcpy(base + (data->dtb - ram.base), dtb->data(), dtb->size());
  return BootLayout{*image, *data, std::move(*dtb)};
}

}  // namespace vtime::vmm
