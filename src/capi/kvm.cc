// The C API's KVM path (vtime_kvm_*): guest time on the VM and vCPU file
// descriptors a VMM owns, through vtime::kvm's guest_time.h. Built with the
// backend on Linux arm64 (VTIME_CAPI_KVM); on any other host the same
// symbols exist, so the ABI is one list everywhere, and say UNSUPPORTED.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "capi/boundary.h"
#include "vtime/backend/kvm.h"

#if VTIME_CAPI_KVM
#include "backend/kvm/host_counter.h"
#include "vtime/backend/guest_time.h"
#endif

using namespace vtime::capi;  // NOLINT(google-build-using-namespace): the C entry points
namespace kvm = vtime::kvm;

namespace {

#if !VTIME_CAPI_KVM
vtime_status NotHere(std::string_view fn) {
  return SetError(VTIME_ERR_UNSUPPORTED, fn,
                  "this libvtime was built for a host without KVM on arm64 (it is Linux arm64 "
                  "only)");
}
#endif

vtime_status CheckVcpus(std::string_view fn, const int* vcpu_fds, std::size_t count) {
  if (vcpu_fds == nullptr) return NullArgument(fn, "vcpu_fds");
  if (count == 0 || count > VTIME_STATE_MAX_VCPUS) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, fn, "vcpu_count ", Decimal(count),
                    " is not 1..", Decimal(VTIME_STATE_MAX_VCPUS));
  }
  return VTIME_OK;
}

}  // namespace

extern "C" {

vtime_status vtime_kvm_probe(int vm_fd, uint32_t* host_flags, uint64_t* cntfrq_hz) noexcept {
  constexpr std::string_view kFn = "vtime_kvm_probe";
#if VTIME_CAPI_KVM
  return Guard(kFn, [&] {
    auto host = kvm::ProbeGuestTime(vm_fd);
    if (!host) return FailWith(kFn, host.error());
    // Linux 6.4 brought the VM offset and the physical offset together.
    if (host_flags != nullptr) *host_flags = host->counter_offset ? VTIME_HOST_LINUX_6_4 : 0;
    if (cntfrq_hz != nullptr) *cntfrq_hz = host->cntfrq_hz;
    return VTIME_OK;
  });
#else
  (void)vm_fd, (void)host_flags, (void)cntfrq_hz;
  return NotHere(kFn);
#endif
}

vtime_status vtime_kvm_host_counter(uint64_t* count) noexcept {
  constexpr std::string_view kFn = "vtime_kvm_host_counter";
  if (count == nullptr) return NullArgument(kFn, "count");
#if VTIME_CAPI_KVM
  *count = kvm::ReadHostCounter().value;
  return VTIME_OK;
#else
  return NotHere(kFn);
#endif
}

vtime_status vtime_kvm_set_vm_offset(vtime_clock* clock, int vm_fd, uint64_t offset) noexcept {
  constexpr std::string_view kFn = "vtime_kvm_set_vm_offset";
  if (!IsHandle(clock)) return BadHandle(kFn, "clock");
#if VTIME_CAPI_KVM
  if (!clock->model.features().vm_offset_api) {
    return SetError(VTIME_ERR_UNSUPPORTED, kFn,
                    "the clock's host has no VM offset (VTIME_HOST_VM_OFFSET_API): KVM before "
                    "6.4 takes counter-value writes");
  }
  return Guard(kFn, [&] {
    if (auto r = kvm::SetVmOffset(clock->model, vm_fd, offset); !r) return FailWith(kFn, r.error());
    return VTIME_OK;
  });
#else
  (void)vm_fd, (void)offset;
  return NotHere(kFn);
#endif
}

int vtime_kvm_is_time_register(uint64_t reg_id) noexcept {
  return kvm::reg::IsTimeRegister(reg_id) ? 1 : 0;
}

vtime_status vtime_kvm_capture(const vtime_clock* clock, const int* vcpu_fds,
                               size_t vcpu_count, vtime_state* out) noexcept {
  constexpr std::string_view kFn = "vtime_kvm_capture";
  if (!IsHandle(clock)) return BadHandle(kFn, "clock");
  if (!IsHandle(out)) return BadHandle(kFn, "out");
  if (auto s = CheckVcpus(kFn, vcpu_fds, vcpu_count); s != VTIME_OK) return s;
#if VTIME_CAPI_KVM
  return Guard(kFn, [&] {
    auto saved = kvm::CaptureGuestTime(clock->model, std::span<const int>(vcpu_fds, vcpu_count));
    if (!saved) return FailWith(kFn, saved.error());
    saved->format_version = out->model.format_version;
    out->model = std::move(*saved);
    return VTIME_OK;
  });
#else
  return NotHere(kFn);
#endif
}

vtime_status vtime_kvm_restore(vtime_clock* clock, int vm_fd, const int* vcpu_fds,
                               size_t vcpu_count, const vtime_state* saved, uint32_t policy,
                               vtime_resume_plan* plan) noexcept {
  constexpr std::string_view kFn = "vtime_kvm_restore";
  if (!IsHandle(clock)) return BadHandle(kFn, "clock");
  if (!IsHandle(saved)) return BadHandle(kFn, "saved");
  if (auto s = CheckVcpus(kFn, vcpu_fds, vcpu_count); s != VTIME_OK) return s;
  if (policy > std::uint32_t{VTIME_POLICY_WALLCLOCK}) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn,
                    "policy is not VTIME_POLICY_FREEZE or VTIME_POLICY_WALLCLOCK");
  }
#if VTIME_CAPI_KVM
  return Guard(kFn, [&] {
    auto applied =
        kvm::RestoreGuestTime(clock->model, vm_fd, std::span<const int>(vcpu_fds, vcpu_count),
                              saved->model, static_cast<vtime::state::Policy>(policy));
    if (!applied) return FailWith(kFn, applied.error());
    if (plan != nullptr) *plan = ToC(*applied);
    return VTIME_OK;
  });
#else
  (void)vm_fd, (void)vcpu_count, (void)plan;
  return NotHere(kFn);
#endif
}

}  // extern "C"
