// Writes small valid snapshots (64 KiB of RAM) into a directory, as seeds for
// snapshot_decode_fuzz: too large to keep in the source tree, and cheap to
// make; with a second directory, a user GIC state there, as the seed for
// user_gic_restore_fuzz.
#include <cstdio>
#include <string>

#include "vmm/snapshot.h"
#include "vtime/vmm/user_gic.h"

namespace {

// A user GIC with something in every part of its state.
std::vector<std::uint8_t> UserGicState(unsigned cpus) {
  auto gic = vtime::vmm::UserGic::Create({.num_cpus = cpus, .num_irqs = 64});
  if (!gic) return {};
  namespace d = vtime::vmm::gicd;
  namespace c = vtime::vmm::gicc;
  gic->DistWrite(0, d::kCtlr, 1, 4);
  for (unsigned cpu = 0; cpu < cpus; ++cpu) {
    gic->CpuWrite(cpu, c::kPmr, 0xF0, 4);
    gic->CpuWrite(cpu, c::kCtlr, 1, 4);
    gic->DistWrite(cpu, d::kIsenabler, 0xFFFFFFFF, 4);
  }
  gic->DistWrite(0, d::kIsenabler + 4, 0xFFFFFFFF, 4);
  gic->DistWrite(0, d::kItargetsr + 40, 1, 1);
  gic->SetPpiLevel(0, 27, true);
  (void)gic->CpuRead(0, c::kIar, 4);
  gic->SetSpiLevel(40, true);
  gic->DistWrite(0, d::kSgir, (1U << 16) | 3, 4);
  return gic->Save();
}

bool WriteFile(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

vtime::vmm::MachineSnapshot Seed(std::uint32_t cpus, bool kernel_irqchip) {
  vtime::vmm::MachineSnapshot s;
  s.cpus = cpus;
  s.ram_size = 0x10000;
  s.ram.assign(s.ram_size, 0);
  s.irqchip = kernel_irqchip ? vtime::vmm::IrqChip::kKernel : vtime::vmm::IrqChip::kUser;
  if (kernel_irqchip) s.vgic = {1, 2, 3, 4};
  if (!kernel_irqchip) s.user_gic = UserGicState(cpus);
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
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: snapshot_seed DIR [USER_GIC_DIR]\n");
    return 2;
  }
  int n = 0;
  for (const auto& s : {Seed(1, true), Seed(2, false)}) {
    auto bytes = vtime::vmm::EncodeSnapshot(s);
    if (!bytes) {
      std::fprintf(stderr, "snapshot_seed: %s\n", bytes.error().Message().c_str());
      return 1;
    }
    if (!WriteFile(std::string(argv[1]) + "/seed-" + std::to_string(n++), *bytes)) return 1;
  }
  if (argc == 3 && !WriteFile(std::string(argv[2]) + "/seed-0", UserGicState(2))) return 1;
  return 0;
}
