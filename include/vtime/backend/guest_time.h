// Guest time on KVM file descriptors that someone else owns: what a paused
// VM's time is (the offsets and each vCPU's timer registers) and how it is
// put back with a migration policy. The C API's KVM path (vtime_kvm_*) is
// this; vtvmm's machine uses the same pieces on its own descriptors. Nothing
// here opens, closes or runs a descriptor: each function issues the ioctls
// it names on the descriptors it is given.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "vtime/arch/vm_clock.h"
#include "vtime/result.h"
#include "vtime/state/policy.h"
#include "vtime/state/saved_state.h"

namespace vtime::kvm {

/// What KVM offers a VM for guest time.
struct GuestTimeHost {
  bool counter_offset = false;  ///< KVM_CAP_COUNTER_OFFSET (Linux 6.4)
  std::uint64_t cntfrq_hz = 0;  ///< CNTFRQ_EL0 as the host reads it
};
/// KVM_CHECK_EXTENSION(KVM_CAP_COUNTER_OFFSET) on vm_fd, and CNTFRQ_EL0.
Result<GuestTimeHost> ProbeGuestTime(int vm_fd);

/// The host's counter and CLOCK_REALTIME, read back to back.
state::CapturePair CaptureHostNow();

/// KVM_ARM_SET_COUNTER_OFFSET on vm_fd, then the same offset in `clock`
/// (whose host must have the VM offset API), so the model changes only once
/// KVM took it.
Result<void> SetVmOffset(arch::VmClock& clock, int vm_fd, std::uint64_t offset);

/// How many ioctls ApplyOffsets issued, by kind (for vtvmm's --stats).
struct OffsetWrites {
  unsigned vm_offset_ioctls = 0;
  unsigned counter_value_writes = 0;
};
/// Carries offsets to KVM and to `clock`: one KVM_ARM_SET_COUNTER_OFFSET on
/// vm_fd where the clock's host has the VM offset API (then
/// `virtual_offset` is the one both counters take), else KVM's legacy
/// counter-value writes on vcpu0_fd, CNTVCT and (where the host offsets it)
/// CNTPCT, each computed from the host counter read just before it. The
/// model changes only after KVM took each step.
Result<OffsetWrites> ApplyOffsets(arch::VmClock& clock, int vm_fd, int vcpu0_fd,
                                  std::uint64_t virtual_offset, std::uint64_t physical_offset);

/// Reads one vCPU's EL1 timers (CTL without ISTATUS, CVAL) and CNTKCTL_EL1
/// with KVM_GET_ONE_REG; for a `nested` vCPU (KVM_ARM_VCPU_HAS_EL2) also
/// CNTVOFF_EL2, CNTHCTL_EL2 and the EL2 physical and virtual timers, and
/// the result says nested. `index` names the vCPU in errors.
Result<state::VcpuTime> CaptureVcpuTimers(int vcpu_fd, unsigned index, bool nested = false);

/// The vCPU's PV stolen-time record IPA (KVM_ARM_VCPU_PVTIME_CTRL), or none
/// where the kernel has no PV time or the VMM set no IPA.
Result<std::optional<std::uint64_t>> PvtimeIpa(int vcpu_fd, unsigned index);

/// Writes one vCPU's CNTKCTL_EL1 and EL1 timers with KVM_SET_ONE_REG, CTL
/// before CVAL; for a nested one CNTVOFF_EL2 and CNTHCTL_EL2 before them and
/// the EL2 timers after. Returns the number of registers written.
Result<unsigned> RestoreVcpuTimers(int vcpu_fd, unsigned index, const state::VcpuTime& time);

/// The guest time of a paused VM: offsets from `clock` where the VMM set
/// the VM offset, else measured on the first vCPU (its counter read between
/// two host counter reads); one capture pair; each vCPU's timers and its
/// PV-time IPA if set (revision 0, stolen_ns left 0: the record is in guest
/// RAM).
Result<state::SavedState> CaptureGuestTime(const arch::VmClock& clock,
                                           std::span<const int> vcpu_fds);

/// Restores `saved` under `policy` on a VM whose vCPUs have not run since
/// their KVM_ARM_VCPU_INIT: checks everything first (the state validates,
/// one saved vCPU per descriptor, none nested, the host's frequency, PV-time
/// records at the saved IPAs), then plans, applies the offsets and writes
/// each vCPU's timers. Returns the plan applied.
Result<state::ResumePlan> RestoreGuestTime(arch::VmClock& clock, int vm_fd,
                                           std::span<const int> vcpu_fds,
                                           const state::SavedState& saved, state::Policy policy);

}  // namespace vtime::kvm
