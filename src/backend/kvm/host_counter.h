// The host's counter as KVM's offsets refer to it.
#pragma once

#include <cstdint>

#include "vtime/units.h"

namespace vtime::kvm {

/// Reads the host's physical count. A Linux host runs KVM at EL2 with E2H
/// and TGE set (VHE), where CNTVCT_EL0 has no virtual offset: it is the
/// physical count that KVM subtracts its offsets from. (On a non-VHE host
/// CNTVOFF_EL2 is 0 outside a guest, which gives the same value.)
inline HostCount ReadHostCounter() {
  std::uint64_t v;
  asm volatile("isb\n\tmrs %0, cntvct_el0" : "=r"(v)::"memory");
  return HostCount{v};
}

/// The counter frequency (CNTFRQ_EL0) as the host and its guests see it.
inline std::uint64_t ReadCounterFrequency() {
  std::uint64_t v;
  asm volatile("mrs %0, cntfrq_el0" : "=r"(v));
  return v;
}

}  // namespace vtime::kvm
