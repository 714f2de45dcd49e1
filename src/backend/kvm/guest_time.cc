// Guest time on borrowed KVM descriptors (see guest_time.h). The rules (which
// offset, which policy) come from the pure layers; this file only reads and
// writes what KVM holds, through kvm.cc's borrowed:: ioctls.
#include "vtime/backend/guest_time.h"

#include <errno.h>
#include <time.h>

#include <string>

#include "backend/kvm/host_counter.h"
#include "vtime/arch/control.h"
#include "vtime/backend/kvm.h"
#include "vtime/state/codec.h"

namespace vtime::kvm {
namespace {

std::string VcpuName(std::size_t index) { return "vCPU " + std::to_string(index); }

// host - guest count for one counter, the counter read between two host
// reads and taken at their midpoint (off by at most half the ioctl's time).
Result<std::uint64_t> MeasureOffset(int vcpu_fd, std::uint64_t counter_id) {
  const std::uint64_t before = ReadHostCounter().value;
  auto guest = borrowed::GetOneReg(vcpu_fd, 0, counter_id);
  if (!guest) return tl::unexpected(guest.error());
  const std::uint64_t after = ReadHostCounter().value;
  return before + (after - before) / 2 - *guest;
}

// True for a vCPU created with KVM_ARM_VCPU_HAS_EL2: only such a vCPU has
// CNTHCTL_EL2 (KVM answers ENOENT for a register a vCPU does not have).
Result<bool> HasEl2(int vcpu_fd, unsigned index) {
  auto v = borrowed::GetOneReg(vcpu_fd, index, reg::kCnthctlEl2);
  if (v) return true;
  if (v.error().sys_errno == ENOENT) return false;
  return tl::unexpected(v.error());
}

}  // namespace

Result<GuestTimeHost> ProbeGuestTime(int vm_fd) {
  auto offset = borrowed::CheckExtension(vm_fd, cap::kCounterOffset);
  if (!offset) return tl::unexpected(offset.error());
  return GuestTimeHost{.counter_offset = *offset > 0, .cntfrq_hz = ReadCounterFrequency()};
}

state::CapturePair CaptureHostNow() {
  const HostCount host = ReadHostCounter();
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return state::CapturePair{host.value, static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 +
                                            static_cast<std::int64_t>(ts.tv_nsec)};
}

Result<void> SetVmOffset(arch::VmClock& clock, int vm_fd, std::uint64_t offset) {
  if (auto r = borrowed::SetCounterOffset(vm_fd, offset); !r) return r;
  return clock.SetVmOffset(Ticks{offset});
}

Result<OffsetWrites> ApplyOffsets(arch::VmClock& clock, int vm_fd, int vcpu0_fd,
                                  std::uint64_t virtual_offset, std::uint64_t physical_offset) {
  OffsetWrites done;
  if (clock.features().vm_offset_api) {
    if (auto r = SetVmOffset(clock, vm_fd, virtual_offset); !r) return tl::unexpected(r.error());
    ++done.vm_offset_ioctls;
    return done;
  }
  // Legacy kernels: a counter-value write moves the VM-wide offset from
  // "now", once per counter for the whole VM (physical only from 6.4).
  for (const auto kind : {arch::CounterKind::kVirtual, arch::CounterKind::kPhysical}) {
    const bool physical = kind == arch::CounterKind::kPhysical;
    if (physical && !clock.features().physical_offset) break;
    const HostCount now = ReadHostCounter();
    const Ticks value = GuestView(now, Ticks{physical ? physical_offset : virtual_offset});
    if (auto r =
            borrowed::SetOneReg(vcpu0_fd, 0, physical ? reg::kCntpct : reg::kCntvct, value.value);
        !r) {
      return tl::unexpected(r.error());
    }
    ++done.counter_value_writes;
    if (auto effect = clock.WriteCounterValue(kind, value, now); !effect) {
      return tl::unexpected(effect.error());
    }
  }
  return done;
}

Result<state::VcpuTime> CaptureVcpuTimers(int vcpu_fd, unsigned index, bool nested) {
  std::uint64_t regs[5];
  const std::uint64_t ids[5] = {reg::kCntvCtl, reg::kCntvCval, reg::kCntpCtl, reg::kCntpCval,
                                reg::kCntkctlEl1};
  for (int k = 0; k < 5; ++k) {
    auto v = borrowed::GetOneReg(vcpu_fd, index, ids[k]);
    if (!v) return tl::unexpected(v.error());
    regs[k] = *v;
  }
  state::VcpuTime t;
  // CTL is saved without ISTATUS: it is derived, never state.
  t.el1_virtual = state::TimerState{regs[0] & arch::ctl::kWritable, regs[1]};
  t.el1_physical = state::TimerState{regs[2] & arch::ctl::kWritable, regs[3]};
  t.cntkctl_el1 = regs[4];
  if (!nested) return t;
  // The guest hypervisor's time: its offset for the nested guest, its
  // controls and its two EL2 timers, each in its own guest terms (the
  // offset and CVALs against the guest's physical count), so that they stay
  // right wherever the VM offset carries that count.
  std::uint64_t el2[reg::kEl2TimeRegisters.size()];
  for (std::size_t k = 0; k < reg::kEl2TimeRegisters.size(); ++k) {
    auto v = borrowed::GetOneReg(vcpu_fd, index, reg::kEl2TimeRegisters[k]);
    if (!v) {
      return Fail(v.error().code, "vCPU " + std::to_string(index) + " runs at vEL2 but its " +
                                      reg::Name(reg::kEl2TimeRegisters[k]) +
                                      " cannot be read (KVM exposes the EL2 timers from Linux "
                                      "6.14 on, CNTHV for a VHE guest hypervisor only): " +
                                      v.error().Message());
    }
    el2[k] = *v;
  }
  t.nested = true;
  t.cntvoff_el2 = el2[0];
  t.cnthctl_el2 = el2[1];
  t.el2_physical = state::TimerState{el2[2] & arch::ctl::kWritable, el2[3]};
  t.el2_virtual = state::TimerState{el2[4] & arch::ctl::kWritable, el2[5]};
  return t;
}

Result<std::optional<std::uint64_t>> PvtimeIpa(int vcpu_fd, unsigned index) {
  auto has_pv = borrowed::HasAttr(vcpu_fd, index, vcpu_attr::kPvtimeCtrl, vcpu_attr::kPvtimeIpa);
  if (!has_pv) return tl::unexpected(has_pv.error());
  if (!*has_pv) return std::optional<std::uint64_t>{};
  std::uint64_t ipa = 0;
  if (auto r =
          borrowed::GetAttr(vcpu_fd, index, vcpu_attr::kPvtimeCtrl, vcpu_attr::kPvtimeIpa, &ipa);
      !r) {
    return tl::unexpected(r.error());
  }
  // KVM reports an unset IPA as all ones (INVALID_GPA).
  if (ipa == ~std::uint64_t{0}) return std::optional<std::uint64_t>{};
  return std::optional<std::uint64_t>{ipa};
}

Result<unsigned> RestoreVcpuTimers(int vcpu_fd, unsigned index, const state::VcpuTime& t) {
  unsigned written = 0;
  auto write = [&](std::uint64_t id, std::uint64_t value) -> Result<void> {
    if (auto r = borrowed::SetOneReg(vcpu_fd, index, id, value); !r) return r;
    ++written;
    return Ok();
  };
  if (t.nested) {
    // The nested guest's offset and access controls first: its virtual
    // count (and so what its EL1 timer CVAL means) depends on CNTVOFF_EL2.
    for (const auto& [id, value] :
         {std::pair{reg::kCntvoffEl2, t.cntvoff_el2}, {reg::kCnthctlEl2, t.cnthctl_el2}}) {
      if (auto r = write(id, value); !r) return tl::unexpected(r.error());
    }
  }
  for (const auto& [id, value] : {std::pair{reg::kCntkctlEl1, t.cntkctl_el1},
                                  {reg::kCntvCtl, t.el1_virtual.ctl},
                                  {reg::kCntvCval, t.el1_virtual.cval},
                                  {reg::kCntpCtl, t.el1_physical.ctl},
                                  {reg::kCntpCval, t.el1_physical.cval}}) {
    if (auto r = write(id, value); !r) return tl::unexpected(r.error());
  }
  if (t.nested) {
    for (const auto& [id, value] : {std::pair{reg::kCnthpCtl, t.el2_physical.ctl},
                                    {reg::kCnthpCval, t.el2_physical.cval},
                                    {reg::kCnthvCtl, t.el2_virtual.ctl},
                                    {reg::kCnthvCval, t.el2_virtual.cval}}) {
      if (auto r = write(id, value); !r) return tl::unexpected(r.error());
    }
  }
  return written;
}

Result<state::SavedState> CaptureGuestTime(const arch::VmClock& clock,
                                           std::span<const int> vcpu_fds) {
  if (vcpu_fds.empty()) return Fail(ErrorCode::kInvalidArgument, "no vCPUs to capture");
  state::SavedState s;
  s.counter_frequency_hz = ReadCounterFrequency();
  if (clock.vm_offset_set()) {
    // Exact: the offset the VMM set, never a value read back.
    s.offset_api = state::OffsetApi::kVmOffset;
    s.virtual_offset = clock.virtual_offset().value;
    s.physical_offset = clock.physical_offset().value;
  } else {
    // KVM's own rules or legacy writes: the offsets KVM is using now.
    s.offset_api = clock.virtual_source() == arch::OffsetSource::kCounterWrite
                       ? state::OffsetApi::kLegacyCounterWrites
                       : state::OffsetApi::kNone;
    auto v = MeasureOffset(vcpu_fds[0], reg::kCntvct);
    if (!v) return tl::unexpected(v.error());
    s.virtual_offset = *v;
    if (clock.features().physical_offset) {
      auto p = MeasureOffset(vcpu_fds[0], reg::kCntpct);
      if (!p) return tl::unexpected(p.error());
      s.physical_offset = *p;
    }
  }
  s.pause = CaptureHostNow();
  for (std::size_t i = 0; i < vcpu_fds.size(); ++i) {
    const auto index = static_cast<unsigned>(i);
    auto nested = HasEl2(vcpu_fds[i], index);
    if (!nested) return tl::unexpected(nested.error());
    auto t = CaptureVcpuTimers(vcpu_fds[i], index, *nested);
    if (!t) return tl::unexpected(t.error());
    auto ipa = PvtimeIpa(vcpu_fds[i], index);
    if (!ipa) return tl::unexpected(ipa.error());
    if (*ipa) {
      t->pvtime.enabled = true;
      t->pvtime.ipa = **ipa;
      t->pvtime.revision = kPvtimeServedRevisions[0];
    }
    s.vcpus.push_back(*t);
  }
  if (auto r = state::Validate(s); !r) return tl::unexpected(r.error());
  return s;
}

Result<state::ResumePlan> RestoreGuestTime(arch::VmClock& clock, int vm_fd,
                                           std::span<const int> vcpu_fds,
                                           const state::SavedState& saved, state::Policy policy) {
  // Everything that can refuse comes before the first write.
  if (vcpu_fds.empty()) return Fail(ErrorCode::kInvalidArgument, "no vCPUs to restore");
  if (auto r = state::Validate(saved); !r) return tl::unexpected(r.error());
  if (saved.vcpus.size() != vcpu_fds.size()) {
    return Fail(ErrorCode::kOutOfRange, "the state has " + std::to_string(saved.vcpus.size()) +
                                            " vCPUs, the VM " + std::to_string(vcpu_fds.size()));
  }
  for (std::size_t i = 0; i < vcpu_fds.size(); ++i) {
    const state::VcpuTime& t = saved.vcpus[i];
    auto nested = HasEl2(vcpu_fds[i], static_cast<unsigned>(i));
    if (!nested) return tl::unexpected(nested.error());
    if (t.nested != *nested) {
      return Fail(ErrorCode::kBadState,
                  VcpuName(i) + (t.nested ? " was at vEL2 (nested); here it has no EL2 (create it "
                                            "with KVM_ARM_VCPU_HAS_EL2)"
                                          : " had no EL2; here it was created with "
                                            "KVM_ARM_VCPU_HAS_EL2"));
    }
    if (!t.pvtime.enabled) continue;
    auto here = PvtimeIpa(vcpu_fds[i], static_cast<unsigned>(i));
    if (!here) return tl::unexpected(here.error());
    if (*here != t.pvtime.ipa) {
      return Fail(ErrorCode::kBadState,
                  VcpuName(i) + " had PV stolen time at IPA " + std::to_string(t.pvtime.ipa) +
                      "; here it has " +
                      (*here ? "it at " + std::to_string(**here) : std::string("none")) +
                      " (set KVM_ARM_VCPU_PVTIME_IPA first)");
    }
  }
  const state::CapturePair now = CaptureHostNow();
  auto plan = state::PlanResume(saved, policy, now, ReadCounterFrequency());
  if (!plan) return tl::unexpected(plan.error());
  // Offsets before timers, so that no CVAL is compared against a count it
  // was not programmed for.
  const bool one = clock.features().vm_offset_api;
  if (auto r = ApplyOffsets(clock, vm_fd, vcpu_fds[0], one ? plan->vm_offset : plan->virtual_offset,
                            one ? plan->vm_offset : plan->physical_offset);
      !r) {
    return tl::unexpected(r.error());
  }
  for (std::size_t i = 0; i < vcpu_fds.size(); ++i) {
    if (auto r = RestoreVcpuTimers(vcpu_fds[i], static_cast<unsigned>(i), saved.vcpus[i]); !r) {
      return tl::unexpected(r.error());
    }
  }
  return *plan;
}

}  // namespace vtime::kvm
