// Save and restore of an in-kernel vGICv3's state through the KVM device
// attributes (Documentation/virt/kvm/devices/arm-vgic-v3.rst), so that an
// interrupt that is pending, active or held high (a timer's PPI, a device's
// SPI) survives a snapshot or a migration. SGIs, PPIs and SPIs only: no
// LPIs, no ITS.
//
// When: save and restore need an initialised vGIC (KVM_DEV_ARM_VGIC_CTRL_INIT,
// which needs every vCPU created) and no vCPU in KVM_RUN (KVM answers EBUSY
// otherwise). Restore before any vCPU of the target VM first runs.
#pragma once

#include <cstdint>
#include <span>

#include "vtime/backend/kvm.h"
#include "vtime/backend/vgic_codec.h"
#include "vtime/result.h"

namespace vtime::kvm {

/// A vCPU's MPIDR_EL1 (ONE_REG sysreg 3,0,0,0,5), for the vcpu_mpidrs below.
Result<std::uint64_t> ReadMpidr(const Vcpu& vcpu);

/// Reads the whole state. `vcpu_mpidrs` are the MPIDR_EL1 values of every
/// vCPU of the VM (in vCPU index order); `nr_irqs` is what the vGIC was
/// configured with (checked against the device).
Result<VgicState> SaveVgicV3(Device& vgic, std::span<const std::uint64_t> vcpu_mpidrs,
                             std::uint32_t nr_irqs);

/// Writes `state` into `vgic` in the order the GIC needs (configuration,
/// routing and line levels before pending, active and enable bits; the
/// enables last). Checks first, touching nothing, that the state is for the
/// same vCPUs (by MPIDR) and well formed; then that nr_irqs matches the
/// device. Stops at the first register KVM refuses, naming it.
Result<void> RestoreVgicV3(Device& vgic, std::span<const std::uint64_t> vcpu_mpidrs,
                           const VgicState& state);

}  // namespace vtime::kvm
