#include "vtime/arch/vm_clock.h"

namespace vtime::arch {

std::string_view NameOf(OffsetSource source) {
  switch (source) {
    case OffsetSource::kNone:
      return "none";
    case OffsetSource::kVcpuCreation:
      return "vCPU creation";
    case OffsetSource::kCounterWrite:
      return "counter-value write";
    case OffsetSource::kVmOffset:
      return "VM offset";
  }
  return "unknown";
}

std::string_view NameOf(PhysicalOffsetMechanism mechanism) {
  switch (mechanism) {
    case PhysicalOffsetMechanism::kUnavailable:
      return "unavailable";
    case PhysicalOffsetMechanism::kCntpoff:
      return "CNTPOFF_EL2";
    case PhysicalOffsetMechanism::kTrapAndEmulate:
      return "trap and emulate";
  }
  return "unknown";
}

void VmClock::OnVcpuCreated(HostCount now) {
  // Once the VMM owns the offset, vCPU creation must not disturb it; that is
  // what makes the order of vCPU creation and restore irrelevant.
  if (vm_offset_set_) return;
  voffset_ = Ticks{now.value};
  vsource_ = OffsetSource::kVcpuCreation;
  // The legacy reset also zeroes the physical offset: a CNTPCT write made
  // before the last vCPU exists does not survive its creation.
  poffset_ = Ticks{0};
  psource_ = OffsetSource::kVcpuCreation;
}

Result<CounterWriteEffect> VmClock::WriteCounterValue(CounterKind kind, Ticks value, HostCount now,
                                                      bool nested_vcpu) {
  if (kind == CounterKind::kPhysical && !features_.physical_offset) {
    return Fail(ErrorCode::kUnsupported,
                "writing CNTPCT: this host cannot offset the guest's physical counter");
  }
  if (vm_offset_set_) return CounterWriteEffect::kIgnored;
  // A nested vCPU's virtual counter is built on the physical offset, so its
  // legacy virtual write lands there (KVM points that timer at poffset).
  const bool physical = kind == CounterKind::kPhysical || nested_vcpu;
  if (physical && !features_.physical_offset) {
    return Fail(ErrorCode::kUnsupported,
                "writing CNTVCT of a nested vCPU: this host cannot offset the physical counter");
  }
  if (physical) {
    poffset_ = OffsetFor(now, value);
    psource_ = OffsetSource::kCounterWrite;
  } else {
    voffset_ = OffsetFor(now, value);
    vsource_ = OffsetSource::kCounterWrite;
  }
  return CounterWriteEffect::kApplied;
}

Result<void> VmClock::SetVmOffset(Ticks offset) {
  if (!features_.vm_offset_api) {
    return Fail(ErrorCode::kUnsupported,
                "setting the VM counter offset: the host has no VM offset API "
                "(KVM_CAP_COUNTER_OFFSET, Linux 6.4+); use counter-value writes");
  }
  voffset_ = offset;
  vsource_ = OffsetSource::kVmOffset;
  if (features_.physical_offset) {
    poffset_ = offset;
    psource_ = OffsetSource::kVmOffset;
  }
  vm_offset_set_ = true;
  return Ok();
}

PhysicalOffsetMechanism VmClock::physical_mechanism() const {
  if (!features_.physical_offset) return PhysicalOffsetMechanism::kUnavailable;
  return features_.ecv_cntpoff ? PhysicalOffsetMechanism::kCntpoff
                               : PhysicalOffsetMechanism::kTrapAndEmulate;
}

bool VmClock::PhysicalAccessesTrap() const {
  return physical_mechanism() == PhysicalOffsetMechanism::kTrapAndEmulate && poffset_.value != 0;
}

Ticks VmClock::VirtualCount(HostCount now, const NestedOffsets& nested) const {
  if (!nested.enabled) return GuestView(now, voffset_);
  return GuestView(now, poffset_) - nested.cntvoff_el2;
}

TimerCounts VmClock::CountsFor(HostCount now, const NestedOffsets& nested) const {
  const Ticks physical = PhysicalCount(now);
  TimerCounts counts;
  counts.of[static_cast<std::size_t>(TimerId::kEl1Virtual)] = VirtualCount(now, nested);
  counts.of[static_cast<std::size_t>(TimerId::kEl1Physical)] = physical - nested.cntpoff_el2;
  // The EL2 timers of a guest hypervisor compare against its physical view
  // with no virtual offset (CNTHV_* runs on the EL2&0 view, offset 0).
  counts.of[static_cast<std::size_t>(TimerId::kEl2Virtual)] = physical;
  counts.of[static_cast<std::size_t>(TimerId::kEl2Physical)] = physical;
  return counts;
}

}  // namespace vtime::arch
