// Writes small valid snapshots (64 KiB of RAM) into a directory, as seeds for
// snapshot_decode_fuzz: too large to keep in the source tree, and cheap to
// make.
#include <cstdio>
#include <string>

#include "vmm/snapshot.h"

namespace {

vtime::vmm::MachineSnapshot Seed(std::uint32_t cpus, bool kernel_irqchip) {
  vtime::vmm::MachineSnapshot s;
  s.cpus = cpus;
  s.ram_size = 0x10000;
  s.ram.assign(s.ram_size, 0);
  s.irqchip = kernel_irqchip ? vtime::vmm::IrqChip::kKernel : vtime::vmm::IrqChip::kUser;
  if (kernel_irqchip) s.vgic = {1, 2, 3, 4};
  s.time.counter_frequency_hz = 62'500'000;
  s.time.offset_api = vtime::state::OffsetApi::kVmOffset;
  s.time.virtual_offset = s.time.physical_offset = 1000;
  s.time.pause = {123456, 789};
  for (std::uint32_t i = 0; i < cpus; ++i) {
    vtime::state::VcpuTime t;
    t.el1_virtual = {1, 5000};
    s.time.vcpus.push_back(t);
    vtime::vmm::VcpuSnapshot v;
    v.registers.push_back({0x6030000000100000ULL, std::vector<std::uint8_t>(8, 1)});
    s.vcpus.push_back(v);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: snapshot_seed DIR\n");
    return 2;
  }
  int n = 0;
  for (const auto& s : {Seed(1, true), Seed(2, false)}) {
    auto bytes = vtime::vmm::EncodeSnapshot(s);
    if (!bytes) {
      std::fprintf(stderr, "snapshot_seed: %s\n", bytes.error().Message().c_str());
      return 1;
    }
    const std::string path = std::string(argv[1]) + "/seed-" + std::to_string(n++);
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(bytes->data(), 1, bytes->size(), f) != bytes->size()) return 1;
    std::fclose(f);
  }
  return 0;
}
