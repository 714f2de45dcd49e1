// libFuzzer target for vtvmm's user GIC state decoder (inside snapshots of
// VMs with --irqchip user, from files and migration streams). Inputs are
// restored as given and with their frame length and CRC-32 repaired; a
// controller that restores must save to bytes that restore to the same
// state, and must take guest accesses without crashing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "reframe.h"
#include "vtime/vmm/user_gic.h"

namespace {

void Check(std::span<const std::uint8_t> bytes) {
  auto gic = vtime::vmm::UserGic::Restore(bytes);
  if (!gic) {
    if (gic.error().context.empty()) std::abort();
    return;
  }
  const std::vector<std::uint8_t> saved = gic->Save();
  auto again = vtime::vmm::UserGic::Restore(saved);
  if (!again || again->Save() != saved) std::abort();
  // What a guest does next with whatever it was left: acknowledge, end,
  // deactivate, on every CPU.
  for (unsigned cpu = 0; cpu < gic->num_cpus(); ++cpu) {
    const std::uint32_t iar = gic->CpuRead(cpu, vtime::vmm::gicc::kIar, 4);
    (void)gic->IrqLine(cpu);
    gic->CpuWrite(cpu, vtime::vmm::gicc::kEoir, iar, 4);
    gic->CpuWrite(cpu, vtime::vmm::gicc::kDir, iar, 4);
    (void)gic->CpuRead(cpu, vtime::vmm::gicc::kRpr, 4);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  Check(bytes);
  if (size >= vtime::wire::kFrameHeaderSize + vtime::wire::kFrameTrailerSize)
    Check(vtime::fuzz::Reframed(bytes));
  return 0;
}
