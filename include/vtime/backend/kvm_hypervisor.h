// The KVM backend behind the seam (vtime/backend/hypervisor.h): Linux KVM on
// an arm64 host, through the descriptor types of vtime/backend/kvm.h.
#pragma once

#include <memory>
#include <string>

#include "vtime/backend/hypervisor.h"
#include "vtime/result.h"

namespace vtime::kvm {

/// Opens `path` (normally /dev/kvm) and probes it; refuses a KVM without
/// ONE_REG or PSCI 0.2, which every vtime VM needs.
Result<std::unique_ptr<backend::Hypervisor>> CreateKvmHypervisor(const std::string& path);

}  // namespace vtime::kvm
