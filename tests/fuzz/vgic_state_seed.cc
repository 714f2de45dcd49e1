// Writes valid vGICv3 states into a directory, as seeds for
// vgic_state_decode_fuzz: a few states shaped like SaveVgicV3's (every
// register it reads, for 64 or 128 interrupts and 1 or 2 vCPUs) and an
// empty one. Made at test time so that the seeds follow the encoding.
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "vtime/backend/vgic_codec.h"

namespace {

namespace vgic = vtime::kvm::vgic;

vtime::kvm::VgicState Saved(std::uint32_t nr_irqs, unsigned vcpus) {
  vtime::kvm::VgicState s;
  s.nr_irqs = nr_irqs;
  std::uint32_t value = 0;
  s.dist = {{0x0000, 0x12}, {0x0008, 0x43b}};  // GICD_CTLR, GICD_IIDR
  // IGROUPR, ISENABLER, ISPENDR, ISACTIVER, IPRIORITYR, ICFGR, IROUTER from the first SPI.
  for (const auto& [base, bits] :
       {std::pair{0x0080U, 1U}, std::pair{0x0100U, 1U}, std::pair{0x0200U, 1U},
        std::pair{0x0300U, 1U}, std::pair{0x0400U, 8U}, std::pair{0x0C00U, 2U},
        std::pair{0x6000U, 64U}}) {
    for (std::uint32_t off = base + 32 * bits / 8; off < base + nr_irqs * bits / 8; off += 4) {
      s.dist.emplace_back(off, value++);
    }
  }
  for (std::uint64_t cpu = 0; cpu < vcpus; ++cpu) {
    for (std::uint32_t off :
         {0x0000U, 0x10080U, 0x10100U, 0x10200U, 0x10300U, 0x10400U, 0x10404U, 0x10408U, 0x1040CU,
          0x10410U, 0x10414U, 0x10418U, 0x1041CU, 0x10C00U, 0x10C04U}) {
      s.redist.emplace_back(vgic::VcpuAttr(cpu, off), value++);
    }
    for (std::uint64_t id : {vgic::kIccPmr, vgic::kIccBpr0, vgic::kIccAp0r0, vgic::kIccAp0r0 + 1,
                             vgic::kIccAp1r0, vgic::kIccAp1r0 + 1, vgic::kIccBpr1, vgic::kIccCtlr,
                             vgic::kIccSre, vgic::kIccIgrpen0, vgic::kIccIgrpen1}) {
      s.cpu_sysregs.emplace_back(vgic::VcpuAttr(cpu, id), value++);
    }
  }
  for (std::uint32_t intid = 32; intid < nr_irqs; intid += 32) {
    s.line_levels.emplace_back(intid, value++);
  }
  return s;
}

bool WriteFile(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: vgic_state_seed DIR\n");
    return 2;
  }
  int n = 0;
  for (const auto& s : {vtime::kvm::VgicState{64, {}, {}, {}, {}}, Saved(64, 1), Saved(128, 2)}) {
    // Only states the decoder takes are seeds worth having.
    const auto bytes = vtime::kvm::EncodeVgicState(s);
    if (auto back = vtime::kvm::DecodeVgicState(bytes); !back) {
      std::fprintf(stderr, "vgic_state_seed: seed %d: %s\n", n, back.error().Message().c_str());
      return 1;
    }
    if (!WriteFile(std::string(argv[1]) + "/seed-" + std::to_string(n++), bytes)) return 1;
  }
  return 0;
}
