// vGICv3 save/restore through KVM's device attributes. The register set and
// its restore order follow Documentation/virt/kvm/devices/arm-vgic-v3.rst and
// the GICv3 architecture; which registers KVM lets userspace reach is noted
// where it matters.
#include "vtime/backend/vgic_state.h"

#include <linux/kvm.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include "backend/kvm/vgic_registers.h"
#include "vtime/hex.h"

static_assert(KVM_DEV_ARM_VGIC_GRP_DIST_REGS == vtime::kvm::vgic::kGrpDistRegs);
static_assert(KVM_DEV_ARM_VGIC_GRP_NR_IRQS == vtime::kvm::vgic::kGrpNrIrqs);
static_assert(KVM_DEV_ARM_VGIC_GRP_CTRL == vtime::kvm::vgic::kGrpCtrl);
static_assert(KVM_DEV_ARM_VGIC_GRP_REDIST_REGS == vtime::kvm::vgic::kGrpRedistRegs);
static_assert(KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS == vtime::kvm::vgic::kGrpCpuSysregs);
static_assert(KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO == vtime::kvm::vgic::kGrpLevelInfo);
static_assert(KVM_DEV_ARM_VGIC_CTRL_INIT == vtime::kvm::vgic::kCtrlInit);
static_assert(KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO_SHIFT == vtime::kvm::vgic::kLevelInfoShift);
static_assert(VGIC_LEVEL_INFO_LINE_LEVEL == vtime::kvm::vgic::kLevelInfoLineLevel);

namespace vtime::kvm {
namespace {

using vgic::kSgiFrame;

std::string SysregName(std::uint64_t id) {
  if (id == vgic::kIccPmr) return "ICC_PMR_EL1";
  if (id == vgic::kIccBpr0) return "ICC_BPR0_EL1";
  if (id == vgic::kIccBpr1) return "ICC_BPR1_EL1";
  if (id == vgic::kIccCtlr) return "ICC_CTLR_EL1";
  if (id == vgic::kIccSre) return "ICC_SRE_EL1";
  if (id == vgic::kIccIgrpen0) return "ICC_IGRPEN0_EL1";
  if (id == vgic::kIccIgrpen1) return "ICC_IGRPEN1_EL1";
  if (id >= vgic::kIccAp0r0 && id < vgic::kIccAp0r0 + 4) {
    return "ICC_AP0R" + std::to_string(id - vgic::kIccAp0r0) + "_EL1";
  }
  if (id >= vgic::kIccAp1r0 && id < vgic::kIccAp1r0 + 4) {
    return "ICC_AP1R" + std::to_string(id - vgic::kIccAp1r0) + "_EL1";
  }
  if (id == vgic::kIchHcr) return "ICH_HCR_EL2";
  if (id == vgic::kIchVtr) return "ICH_VTR_EL2";
  if (id == vgic::kIchVmcr) return "ICH_VMCR_EL2";
  if (id >= vgic::kIchAp0r0 && id < vgic::kIchAp0r0 + 4) {
    return "ICH_AP0R" + std::to_string(id - vgic::kIchAp0r0) + "_EL2";
  }
  if (id >= vgic::kIchAp1r0 && id < vgic::kIchAp1r0 + 4) {
    return "ICH_AP1R" + std::to_string(id - vgic::kIchAp1r0) + "_EL2";
  }
  if (id >= vgic::kIchLr0 && id < vgic::kIchLr0 + 8) {
    return "ICH_LR" + std::to_string(id - vgic::kIchLr0) + "_EL2";
  }
  if (id >= vgic::kIchLr8 && id < vgic::kIchLr8 + 8) {
    return "ICH_LR" + std::to_string(8 + id - vgic::kIchLr8) + "_EL2";
  }
  return "sysreg " + Hex(id);
}

// "GICD_ISENABLER1" etc. for messages.
std::string GicRegName(const char* prefix, std::uint64_t offset) {
  struct Range {
    std::uint32_t base;
    std::uint32_t size;
    std::uint32_t stride;
    const char* name;
  };
  static constexpr Range kRanges[] = {
      {kGicdIgroupr, 0x80, 4, "IGROUPR"},        {kGicdIsenabler, 0x80, 4, "ISENABLER"},
      {kGicdIcenabler, 0x80, 4, "ICENABLER"},    {kGicdIspendr, 0x80, 4, "ISPENDR"},
      {kGicdIsactiver, 0x80, 4, "ISACTIVER"},    {kGicdIcactiver, 0x80, 4, "ICACTIVER"},
      {kGicdIpriorityr, 0x400, 4, "IPRIORITYR"}, {kGicdIcfgr, 0x100, 4, "ICFGR"},
      {kGicdIrouter, 0x2000, 8, "IROUTER"},
  };
  const std::string p(prefix);
  if (offset == kGicdCtlr) return p + "CTLR";
  if (offset == kGicdIidr) return p + "IIDR";
  for (const Range& r : kRanges) {
    if (offset >= r.base && offset < r.base + r.size) {
      const std::uint64_t rel = offset - r.base;
      std::string name = p + r.name + std::to_string(rel / r.stride);
      if (rel % r.stride != 0) name += " (upper word)";
      return name;
    }
  }
  return p + "register at " + Hex(offset);
}

std::string DistName(std::uint64_t offset) { return GicRegName("GICD_", offset); }

std::string RedistName(std::uint64_t offset) {
  if (offset == kGicrCtlr) return "GICR_CTLR";
  if (offset >= kSgiFrame) return GicRegName("GICR_", offset - kSgiFrame);
  return "GICR register at " + Hex(offset);
}

std::string MpidrText(std::uint64_t field) { return "MPIDR affinity " + Hex(field); }

// What an attr names, for messages: "GICR_ISENABLER0 of MPIDR affinity 0x1".
std::string AttrName(std::uint32_t group, std::uint64_t attr) {
  const std::uint64_t field = attr >> 32;
  const std::uint64_t low = attr & 0xffffffffU;
  switch (group) {
    case vgic::kGrpDistRegs:
      return DistName(low);
    case vgic::kGrpRedistRegs:
      return RedistName(low) + " of " + MpidrText(field);
    case vgic::kGrpCpuSysregs:
      return SysregName(low) + " of " + MpidrText(field);
    case vgic::kGrpLevelInfo:
      return "line levels of INTIDs " + std::to_string(low & 0x3ff) + ".." +
             std::to_string((low & 0x3ff) + 31);
    default:
      return "group " + std::to_string(group) + " attr " + Hex(attr);
  }
}

// Wraps a device-attribute failure with the register's name and, for
// EBUSY, what KVM wants.
tl::unexpected<Error> AttrFail(const char* doing, std::uint32_t group, std::uint64_t attr,
                               const Error& e) {
  std::string hint;
  if (e.sys_errno == EBUSY) hint = " (is the vGIC initialised and every vCPU stopped?)";
  if (e.sys_errno == ENXIO) hint = " (this kernel does not offer that register)";
  return Fail(e.code,
              std::string(doing) + " vGIC " + AttrName(group, attr) + hint + ": " + e.context,
              e.sys_errno);
}

Result<std::uint32_t> Get32(const Device& dev, std::uint32_t group, std::uint64_t attr) {
  std::uint32_t v = 0;
  if (auto r = dev.GetAttr(group, attr, &v); !r) return AttrFail("saving", group, attr, r.error());
  return v;
}

Result<std::uint64_t> Get64(const Device& dev, std::uint32_t group, std::uint64_t attr) {
  std::uint64_t v = 0;
  if (auto r = dev.GetAttr(group, attr, &v); !r) return AttrFail("saving", group, attr, r.error());
  return v;
}

Result<void> Set32(Device& dev, std::uint32_t group, std::uint64_t attr, std::uint32_t v) {
  if (auto r = dev.SetAttr(group, attr, &v); !r)
    return AttrFail("restoring", group, attr, r.error());
  return Ok();
}

Result<void> Set64(Device& dev, std::uint32_t group, std::uint64_t attr, std::uint64_t v) {
  if (auto r = dev.SetAttr(group, attr, &v); !r)
    return AttrFail("restoring", group, attr, r.error());
  return Ok();
}

// The affinity fields of the vCPUs: non-empty, unique.
Result<std::vector<std::uint64_t>> VcpuFields(std::span<const std::uint64_t> mpidrs) {
  if (mpidrs.empty()) return Fail(ErrorCode::kInvalidArgument, "vGIC state: no vCPUs given");
  std::vector<std::uint64_t> fields;
  std::set<std::uint64_t> seen;
  for (std::uint64_t m : mpidrs) {
    const std::uint64_t f = vgic::AffinityField(m);
    if (!seen.insert(f).second) {
      return Fail(ErrorCode::kInvalidArgument,
                  "vGIC state: two vCPUs have the same " + MpidrText(f));
    }
    fields.push_back(f);
  }
  return fields;
}

Result<void> CheckDeviceNrIrqs(const Device& dev, std::uint32_t nr_irqs) {
  std::uint32_t configured = 0;
  if (auto r = dev.GetAttr(vgic::kGrpNrIrqs, 0, &configured); !r) {
    return Fail(r.error().code, "reading the vGIC's number of interrupts: " + r.error().context,
                r.error().sys_errno);
  }
  if (configured != nr_irqs) {
    return Fail(ErrorCode::kInvalidArgument, "vGIC state is for " + std::to_string(nr_irqs) +
                                                 " interrupts, the device has " +
                                                 std::to_string(configured));
  }
  return Ok();
}

// Restore order of one attr list: by phase, then by attr (stable).
template <class V, class RankFn>
std::vector<std::pair<std::uint64_t, V>> InPhase(
    const std::vector<std::pair<std::uint64_t, V>>& list, int phase, RankFn rank) {
  std::vector<std::pair<std::uint64_t, V>> out;
  for (const auto& e : list) {
    if (rank(e.first) == phase) out.push_back(e);
  }
  return out;
}

}  // namespace

Result<std::uint64_t> ReadMpidr(const Vcpu& vcpu) { return vcpu.GetOneReg(reg::kMpidrEl1); }

Result<VgicState> SaveVgicV3(Device& vgic, std::span<const std::uint64_t> vcpu_mpidrs,
                             std::uint32_t nr_irqs) {
  auto fields = VcpuFields(vcpu_mpidrs);
  if (!fields) return tl::unexpected(fields.error());
  if (!ValidNrIrqs(nr_irqs)) {
    return Fail(ErrorCode::kInvalidArgument, "saving vGIC: " + std::to_string(nr_irqs) +
                                                 " interrupts is not 64..1024 in steps of 32");
  }
  if (auto r = CheckDeviceNrIrqs(vgic, nr_irqs); !r) return tl::unexpected(r.error());

  VgicState s;
  s.nr_irqs = nr_irqs;

  // Distributor: the two control words, then the per-IRQ ranges from the
  // first SPI (DistPhase accepts exactly these).
  auto dist = [&](std::uint32_t offset) -> Result<void> {
    auto v = Get32(vgic, vgic::kGrpDistRegs, offset);
    if (!v) return tl::unexpected(v.error());
    s.dist.emplace_back(offset, *v);
    return Ok();
  };
  for (std::uint32_t offset : {kGicdCtlr, kGicdIidr}) {
    if (auto r = dist(offset); !r) return tl::unexpected(r.error());
  }
  for (const auto& [base, bits] :
       {std::pair{kGicdIgroupr, 1U}, std::pair{kGicdIsenabler, 1U}, std::pair{kGicdIspendr, 1U},
        std::pair{kGicdIsactiver, 1U}, std::pair{kGicdIpriorityr, 8U}, std::pair{kGicdIcfgr, 2U},
        std::pair{kGicdIrouter, 64U}}) {
    for (std::uint32_t offset = base + 32 * bits / 8; offset < base + nr_irqs * bits / 8;
         offset += 4) {
      if (auto r = dist(offset); !r) return tl::unexpected(r.error());
    }
  }

  for (std::uint64_t field : *fields) {
    // Redistributor: RD frame then SGI frame, in address order.
    for (std::uint32_t offset : {kGicrCtlr, kSgiFrame + kGicdIgroupr, kSgiFrame + kGicdIsenabler,
                                 kSgiFrame + kGicdIspendr, kSgiFrame + kGicdIsactiver}) {
      const std::uint64_t attr = field << 32 | offset;
      auto v = Get32(vgic, vgic::kGrpRedistRegs, attr);
      if (!v) return tl::unexpected(v.error());
      s.redist.emplace_back(attr, *v);
    }
    for (std::uint32_t offset = kSgiFrame + kGicdIpriorityr; offset < kSgiFrame + kGicdIcfgr + 8;
         offset += 4) {
      if (offset == kSgiFrame + kGicdIpriorityr + 32) offset = kSgiFrame + kGicdIcfgr;
      const std::uint64_t attr = field << 32 | offset;
      auto v = Get32(vgic, vgic::kGrpRedistRegs, attr);
      if (!v) return tl::unexpected(v.error());
      s.redist.emplace_back(attr, *v);
    }

    // CPU interface: ICC_CTLR_EL1.PRIbits (bits 10:8, bits - 1) says how many
    // active-priority registers there are: 1 for 5 bits, 2 for 6, 4 for 7+.
    auto ctlr = Get64(vgic, vgic::kGrpCpuSysregs, field << 32 | vgic::kIccCtlr);
    if (!ctlr) return tl::unexpected(ctlr.error());
    const std::uint64_t pri_bits = ((*ctlr >> 8) & 7) + 1;
    const std::uint64_t aprs = pri_bits >= 7 ? 4 : pri_bits == 6 ? 2 : 1;
    std::vector<std::uint64_t> ids(kIccFixed.begin(), kIccFixed.end());
    for (std::uint64_t n = 0; n < aprs; ++n) {
      ids.push_back(vgic::kIccAp0r0 + n);
      ids.push_back(vgic::kIccAp1r0 + n);
    }
    // A guest hypervisor's virtualization interface, where the vCPU has
    // one: as many list registers and active-priority registers as
    // ICH_VTR_EL2 says (ListRegs + 1; 1, 2 or 4 APRs for 5, 6 or 7 bits).
    auto nested = vgic.HasAttr(vgic::kGrpCpuSysregs, field << 32 | vgic::kIchHcr);
    if (!nested) return tl::unexpected(nested.error());
    if (*nested) {
      auto vtr = Get64(vgic, vgic::kGrpCpuSysregs, field << 32 | vgic::kIchVtr);
      if (!vtr) return tl::unexpected(vtr.error());
      const std::uint64_t lrs = (*vtr & 0x1f) + 1;
      const std::uint64_t pre_bits = ((*vtr >> 26) & 7) + 1;
      const std::uint64_t ich_aprs = pre_bits >= 7 ? 4 : pre_bits == 6 ? 2 : 1;
      ids.push_back(vgic::kIchHcr);
      ids.push_back(vgic::kIchVmcr);
      for (std::uint64_t n = 0; n < ich_aprs; ++n) {
        ids.push_back(vgic::kIchAp0r0 + n);
        ids.push_back(vgic::kIchAp1r0 + n);
      }
      for (std::uint64_t n = 0; n < lrs && n < 16; ++n) {
        ids.push_back(n < 8 ? vgic::kIchLr0 + n : vgic::kIchLr8 + (n - 8));
      }
    }
    std::sort(ids.begin(), ids.end());
    for (std::uint64_t id : ids) {
      const std::uint64_t attr = field << 32 | id;
      auto v = Get64(vgic, vgic::kGrpCpuSysregs, attr);
      if (!v) return tl::unexpected(v.error());
      s.cpu_sysregs.emplace_back(attr, *v);
    }
  }

  // SPI line levels, if the kernel has the group (Linux 4.12+). SPIs read
  // the same through any vCPU; KVM wants a valid one, so the first.
  const std::uint64_t level_base = (*fields)[0] << 32 | (std::uint64_t{VGIC_LEVEL_INFO_LINE_LEVEL}
                                                         << KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO_SHIFT);
  auto has_levels = vgic.HasAttr(vgic::kGrpLevelInfo, level_base | 32);
  if (!has_levels) return tl::unexpected(has_levels.error());
  if (*has_levels) {
    for (std::uint32_t intid = 32; intid < nr_irqs; intid += 32) {
      auto v = Get32(vgic, vgic::kGrpLevelInfo, level_base | intid);
      if (!v) return tl::unexpected(v.error());
      s.line_levels.emplace_back(level_base | intid, *v);
    }
  }

  std::sort(s.dist.begin(), s.dist.end());
  std::sort(s.redist.begin(), s.redist.end());
  std::sort(s.cpu_sysregs.begin(), s.cpu_sysregs.end());
  return s;
}

Result<void> RestoreVgicV3(Device& vgic, std::span<const std::uint64_t> vcpu_mpidrs,
                           const VgicState& state) {
  // Everything that needs no device first, so a wrong state changes nothing.
  auto fields = VcpuFields(vcpu_mpidrs);
  if (!fields) return tl::unexpected(fields.error());
  if (auto r = CheckShape(state); !r) {
    return Fail(ErrorCode::kInvalidArgument, "restore refused: " + r.error().context);
  }
  std::set<std::uint64_t> in_state;
  for (const auto& e : state.redist) in_state.insert(e.first >> 32);
  for (const auto& e : state.cpu_sysregs) in_state.insert(e.first >> 32);
  const std::set<std::uint64_t> in_vm(fields->begin(), fields->end());
  if (in_state.size() != in_vm.size()) {
    return Fail(ErrorCode::kInvalidArgument,
                "vGIC restore refused: the state is for " + std::to_string(in_state.size()) +
                    " vCPUs, the VM has " + std::to_string(in_vm.size()));
  }
  for (std::uint64_t f : in_state) {
    if (in_vm.count(f) == 0) {
      return Fail(ErrorCode::kInvalidArgument, "vGIC restore refused: the state has a vCPU with " +
                                                   MpidrText(f) + ", the VM has none");
    }
  }
  for (const auto& e : state.line_levels) {
    if (in_vm.count(e.first >> 32) == 0) {
      return Fail(ErrorCode::kInvalidArgument, "vGIC restore refused: line levels name " +
                                                   MpidrText(e.first >> 32) +
                                                   ", not a vCPU of the VM");
    }
  }
  if (auto r = CheckDeviceNrIrqs(vgic, state.nr_irqs); !r) {
    return Fail(r.error().code, "vGIC restore refused: " + r.error().context, r.error().sys_errno);
  }
  if (!state.line_levels.empty()) {
    auto has = vgic.HasAttr(vgic::kGrpLevelInfo, state.line_levels.front().first);
    if (!has) return tl::unexpected(has.error());
    if (!*has) {
      return Fail(ErrorCode::kUnsupported,
                  "vGIC restore refused: the state has line levels and this kernel cannot set "
                  "them (no KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO)");
    }
  }

  const std::uint32_t nr = state.nr_irqs;
  auto dist_rank = [nr](std::uint64_t attr) { return static_cast<int>(DistPhase(attr, nr)); };
  auto redist_rank = [](std::uint64_t attr) {
    return static_cast<int>(RedistPhase(attr & 0xffffffffU));
  };

  // Writes a set-register after clearing what the set-register leaves alone
  // (its clear twin sits 0x80 above), so the result is exact on a used GIC.
  auto set_exact = [&vgic](std::uint32_t group, std::uint64_t attr, std::uint32_t value,
                           bool has_clear) -> Result<void> {
    if (has_clear) {
      if (auto r = Set32(vgic, group, attr + 0x80, ~value); !r) return r;
    }
    return Set32(vgic, group, attr, value);
  };

  for (int phase = kIdentify; phase <= kGlobalEnable; ++phase) {
    const bool clear_first = phase == kActive || phase == kEnable;
    if (phase == kCpuInterface) {
      for (std::uint64_t field : *fields) {
        std::vector<std::pair<std::uint64_t, std::uint64_t>> regs;
        for (const auto& e : state.cpu_sysregs) {
          if ((e.first >> 32) == field) regs.push_back(e);
        }
        std::stable_sort(regs.begin(), regs.end(), [](const auto& a, const auto& b) {
          return SysregRank(a.first & 0xffffffffU) < SysregRank(b.first & 0xffffffffU);
        });
        for (const auto& [attr, value] : regs) {
          if (auto r = Set64(vgic, vgic::kGrpCpuSysregs, attr, value); !r) return r;
        }
      }
      continue;
    }
    if (phase == kLevel) {
      for (const auto& [attr, value] : state.line_levels) {
        if (auto r = Set32(vgic, vgic::kGrpLevelInfo, attr, value); !r) return r;
      }
      continue;
    }
    // Redistributors before the distributor within a phase, except that the
    // distributor's global enable comes last of all.
    for (const auto& [attr, value] : InPhase(state.redist, phase, redist_rank)) {
      if (auto r = set_exact(vgic::kGrpRedistRegs, attr, value, clear_first); !r) return r;
    }
    for (const auto& [attr, value] : InPhase(state.dist, phase, dist_rank)) {
      if (auto r = set_exact(vgic::kGrpDistRegs, attr, value, clear_first); !r) return r;
    }
  }
  return Ok();
}

}  // namespace vtime::kvm
