// The device tree vtvmm hands its guest in x0, in QEMU virt's layout, built
// with libfdt.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vtime/result.h"

namespace vtime::vmm {

enum class IrqChip : std::uint8_t {
  kKernel,  ///< In-kernel vGICv3 ("arm,gic-v3").
  kUser,    ///< GICv2-style controller emulated by the VMM ("arm,cortex-a15-gic").
};

/// What the device tree describes.
struct MachineDescription {
  unsigned cpus = 1;
  std::uint64_t ram_size = 256ULL << 20;
  IrqChip irqchip = IrqChip::kKernel;
  /// With kUser: vtvmm's GICv3 (UserGicV3, "arm,gic-v3" at the in-kernel
  /// one's addresses) instead of its GICv2. vtvmm uses it for --el2 on a
  /// backend that hands it the GIC's system registers (emu).
  bool user_gic_v3 = false;
  int vtimer_ppi = 27;  ///< INTIDs (16..31)
  int ptimer_ppi = 30;
  int hvtimer_ppi = 28;
  int hptimer_ppi = 26;
  std::uint32_t uart_spi = 1;  ///< SPI number (INTID - 32) of the PL011
  std::uint32_t rtc_spi = 2;   ///< SPI number of the PL031 (QEMU virt's)
  /// A virtio-mmio console at layout::kVirtioConsole ("virtio,mmio").
  bool virtio_console = false;
  std::uint32_t virtio_console_spi = 16;  ///< QEMU virt's first virtio-mmio slot's
  /// The kernel command line (/chosen/bootargs); none when empty.
  std::string bootargs;
  /// Where the initrd lies, [start, end) (/chosen/linux,initrd-start and
  /// -end), if there is one.
  struct Range {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
  };
  std::optional<Range> initrd;
};

/// A flattened device tree for `machine`. Fails (kInvalidArgument) on a
/// description that cannot be expressed (no CPU, a PPI outside 16..31, an
/// initrd that ends before it starts, a tree over 64 KiB).
Result<std::vector<std::uint8_t>> BuildDeviceTree(const MachineDescription& machine);

}  // namespace vtime::vmm
