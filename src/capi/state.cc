// The C API over the saved form of guest time (SavedState, its codec and
// JSON view) and the migration policies (PlanResume).
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "capi/boundary.h"
#include "vtime/state/codec.h"
#include "vtime/state/json.h"
#include "vtime/state/policy.h"

namespace vtime::capi {
namespace {

using state::SavedState;
using state::TimerState;
using state::VcpuTime;

constexpr std::uint32_t kStateVcpuFlags = VTIME_STATE_VCPU_NESTED | VTIME_STATE_VCPU_PVTIME;

static_assert(VTIME_STATE_MAX_VCPUS == state::kMaxVcpus);
static_assert(VTIME_OFFSET_API_NONE == static_cast<int>(state::OffsetApi::kNone));
static_assert(VTIME_OFFSET_API_VM_OFFSET == static_cast<int>(state::OffsetApi::kVmOffset));
static_assert(VTIME_OFFSET_API_LEGACY_COUNTER_WRITES ==
              static_cast<int>(state::OffsetApi::kLegacyCounterWrites));
static_assert(VTIME_POLICY_FREEZE == static_cast<int>(state::Policy::kFreeze));
static_assert(VTIME_POLICY_WALLCLOCK == static_cast<int>(state::Policy::kWallClock));

// The saved vCPU's timers in vtime_timer order.
template <class Vcpu>
auto Timers(Vcpu& v) {
  return std::array{&v.el1_virtual, &v.el1_physical, &v.el2_virtual, &v.el2_physical};
}

// Copies bytes into a caller's buffer by the "size in, size out" rule.
vtime_status CopyOut(std::string_view fn, std::span<const std::uint8_t> bytes, void* buffer,
                     std::size_t* size) {
  if (*size < bytes.size()) {
    const std::size_t capacity = *size;
    *size = bytes.size();
    return SetError(VTIME_ERR_BUFFER_TOO_SMALL, fn, "the buffer holds ", Decimal(capacity),
                    " bytes but ", Decimal(bytes.size()), " are needed (*size now says so)");
  }
  if (!bytes.empty()) std::memcpy(buffer, bytes.data(), bytes.size());
  *size = bytes.size();
  return VTIME_OK;
}

vtime_status CheckBuffer(std::string_view fn, const void* buffer, const std::size_t* size) {
  if (size == nullptr) return NullArgument(fn, "size");
  if (buffer == nullptr && *size != 0) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, fn,
                    "buffer is NULL but *size is not 0 (pass *size = 0 to ask for the size)");
  }
  return VTIME_OK;
}

}  // namespace
}  // namespace vtime::capi

using namespace vtime::capi;  // NOLINT(google-build-using-namespace): the C entry points
namespace state = vtime::state;

extern "C" {

vtime_status vtime_state_create(vtime_state** out) noexcept {
  constexpr std::string_view kFn = "vtime_state_create";
  if (out == nullptr) return NullArgument(kFn, "out");
  *out = nullptr;
  return Guard(kFn, [&] {
    *out = new vtime_state{kTag<vtime_state>, {}};
    return VTIME_OK;
  });
}

void vtime_state_destroy(vtime_state* state) noexcept { DestroyHandle(state); }

vtime_status vtime_state_get_vm(const vtime_state* state, vtime_state_vm* out) noexcept {
  constexpr std::string_view kFn = "vtime_state_get_vm";
  if (!IsHandle(state)) return BadHandle(kFn, "state");
  if (out == nullptr) return NullArgument(kFn, "out");
  const state::SavedState& s = state->model;
  *out = vtime_state_vm{};
  out->format_version = s.format_version;
  out->offset_api = static_cast<std::uint32_t>(s.offset_api);
  out->counter_frequency_hz = s.counter_frequency_hz;
  out->virtual_offset = s.virtual_offset;
  out->physical_offset = s.physical_offset;
  out->pause.host_counter = s.pause.host_counter;
  out->pause.wall_clock_ns = s.pause.wall_clock_ns;
  return VTIME_OK;
}

vtime_status vtime_state_set_vm(vtime_state* state, const vtime_state_vm* vm) noexcept {
  constexpr std::string_view kFn = "vtime_state_set_vm";
  if (!IsHandle(state)) return BadHandle(kFn, "state");
  if (vm == nullptr) return NullArgument(kFn, "vm");
  if (vm->offset_api > std::uint32_t{VTIME_OFFSET_API_LEGACY_COUNTER_WRITES}) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn,
                    "vm->offset_api is not a vtime_offset_api (0 none, 1 VM offset, 2 legacy "
                    "counter writes)");
  }
  state::SavedState& s = state->model;
  s.format_version = vm->format_version;
  s.offset_api = static_cast<state::OffsetApi>(vm->offset_api);
  s.counter_frequency_hz = vm->counter_frequency_hz;
  s.virtual_offset = vm->virtual_offset;
  s.physical_offset = vm->physical_offset;
  s.pause.host_counter = vm->pause.host_counter;
  s.pause.wall_clock_ns = vm->pause.wall_clock_ns;
  return VTIME_OK;
}

vtime_status vtime_state_vcpu_count(const vtime_state* state, size_t* count) noexcept {
  constexpr std::string_view kFn = "vtime_state_vcpu_count";
  if (!IsHandle(state)) return BadHandle(kFn, "state");
  if (count == nullptr) return NullArgument(kFn, "count");
  *count = state->model.vcpus.size();
  return VTIME_OK;
}

vtime_status vtime_state_set_vcpu_count(vtime_state* state, size_t count) noexcept {
  constexpr std::string_view kFn = "vtime_state_set_vcpu_count";
  if (!IsHandle(state)) return BadHandle(kFn, "state");
  if (count > state::kMaxVcpus) {
    return SetError(VTIME_ERR_OUT_OF_RANGE, kFn, "count ", Decimal(count),
                    " is above VTIME_STATE_MAX_VCPUS (512)");
  }
  return Guard(kFn, [&] {
    state->model.vcpus.resize(count);
    return VTIME_OK;
  });
}

vtime_status vtime_state_get_vcpu(const vtime_state* state, size_t index,
                                  vtime_state_vcpu* out) noexcept {
  constexpr std::string_view kFn = "vtime_state_get_vcpu";
  if (!IsHandle(state)) return BadHandle(kFn, "state");
  if (out == nullptr) return NullArgument(kFn, "out");
  if (index >= state->model.vcpus.size()) {
    return SetError(VTIME_ERR_OUT_OF_RANGE, kFn, "vCPU ", Decimal(index),
                    " does not exist (the state has ", Decimal(state->model.vcpus.size()), ")");
  }
  const state::VcpuTime& v = state->model.vcpus[index];
  *out = vtime_state_vcpu{};
  const auto timers = Timers(v);
  for (std::size_t i = 0; i < timers.size(); ++i) {
    out->timer_ctl[i] = timers[i]->ctl;
    out->timer_cval[i] = timers[i]->cval;
  }
  out->cntkctl_el1 = v.cntkctl_el1;
  out->cnthctl_el2 = v.cnthctl_el2;
  out->cntvoff_el2 = v.cntvoff_el2;
  out->pvtime_ipa = v.pvtime.ipa;
  out->pvtime_stolen_ns = v.pvtime.stolen_ns;
  out->pvtime_revision = v.pvtime.revision;
  out->flags =
      (v.nested ? VTIME_STATE_VCPU_NESTED : 0U) | (v.pvtime.enabled ? VTIME_STATE_VCPU_PVTIME : 0U);
  return VTIME_OK;
}

vtime_status vtime_state_set_vcpu(vtime_state* state, size_t index,
                                  const vtime_state_vcpu* vcpu) noexcept {
  constexpr std::string_view kFn = "vtime_state_set_vcpu";
  if (!IsHandle(state)) return BadHandle(kFn, "state");
  if (vcpu == nullptr) return NullArgument(kFn, "vcpu");
  if (index >= state->model.vcpus.size()) {
    return SetError(VTIME_ERR_OUT_OF_RANGE, kFn, "vCPU ", Decimal(index),
                    " does not exist (the state has ", Decimal(state->model.vcpus.size()),
                    "; vtime_state_set_vcpu_count adds vCPUs)");
  }
  if ((vcpu->flags & ~kStateVcpuFlags) != 0) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn,
                    "vcpu->flags has bits this version does not define (VTIME_STATE_VCPU_*)");
  }
  state::VcpuTime& v = state->model.vcpus[index];
  const auto timers = Timers(v);
  for (std::size_t i = 0; i < timers.size(); ++i) {
    timers[i]->ctl = vcpu->timer_ctl[i];
    timers[i]->cval = vcpu->timer_cval[i];
  }
  v.cntkctl_el1 = vcpu->cntkctl_el1;
  v.cnthctl_el2 = vcpu->cnthctl_el2;
  v.cntvoff_el2 = vcpu->cntvoff_el2;
  v.nested = (vcpu->flags & VTIME_STATE_VCPU_NESTED) != 0;
  v.pvtime.enabled = (vcpu->flags & VTIME_STATE_VCPU_PVTIME) != 0;
  v.pvtime.ipa = vcpu->pvtime_ipa;
  v.pvtime.revision = vcpu->pvtime_revision;
  v.pvtime.stolen_ns = vcpu->pvtime_stolen_ns;
  return VTIME_OK;
}

vtime_status vtime_state_validate(const vtime_state* state) noexcept {
  constexpr std::string_view kFn = "vtime_state_validate";
  if (!IsHandle(state)) return BadHandle(kFn, "state");
  return Guard(kFn, [&] {
    const auto valid = state::Validate(state->model);
    return valid ? VTIME_OK : FailWith(kFn, valid.error());
  });
}

vtime_status vtime_state_encode(const vtime_state* state, uint8_t* buffer, size_t* size) noexcept {
  constexpr std::string_view kFn = "vtime_state_encode";
  if (!IsHandle(state)) return BadHandle(kFn, "state");
  if (const vtime_status s = CheckBuffer(kFn, buffer, size); s != VTIME_OK) return s;
  return Guard(kFn, [&] {
    const auto bytes = state::Encode(state->model);
    if (!bytes) return FailWith(kFn, bytes.error());
    return CopyOut(kFn, *bytes, buffer, size);
  });
}

vtime_status vtime_state_decode(const uint8_t* bytes, size_t size, vtime_state** out) noexcept {
  constexpr std::string_view kFn = "vtime_state_decode";
  if (out == nullptr) return NullArgument(kFn, "out");
  *out = nullptr;
  if (bytes == nullptr && size != 0) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn, "bytes is NULL but size is not 0");
  }
  return Guard(kFn, [&] {
    auto decoded = state::Decode(std::span<const std::uint8_t>(bytes, size));
    if (!decoded) return FailWith(kFn, decoded.error());
    *out = new vtime_state{kTag<vtime_state>, std::move(*decoded)};
    return VTIME_OK;
  });
}

vtime_status vtime_state_to_json(const vtime_state* state, char* buffer, size_t* size) noexcept {
  constexpr std::string_view kFn = "vtime_state_to_json";
  if (!IsHandle(state)) return BadHandle(kFn, "state");
  if (const vtime_status s = CheckBuffer(kFn, buffer, size); s != VTIME_OK) return s;
  return Guard(kFn, [&] {
    const std::string json = state::ToJson(state->model);
    // With its NUL: the bytes of a C string.
    const std::span<const std::uint8_t> text(reinterpret_cast<const std::uint8_t*>(json.c_str()),
                                             json.size() + 1);
    return CopyOut(kFn, text, buffer, size);
  });
}

const char* vtime_policy_name(uint32_t policy) noexcept {
  if (policy > std::uint32_t{VTIME_POLICY_WALLCLOCK}) return nullptr;
  // NameOf returns views of string literals, which are NUL-terminated.
  return state::NameOf(static_cast<state::Policy>(policy)).data();
}

vtime_status vtime_policy_parse(const char* name, vtime_policy* out) noexcept {
  constexpr std::string_view kFn = "vtime_policy_parse";
  if (name == nullptr) return NullArgument(kFn, "name");
  if (out == nullptr) return NullArgument(kFn, "out");
  return Guard(kFn, [&] {
    const auto policy = state::ParsePolicy(name);
    if (!policy) return FailWith(kFn, policy.error());
    *out = static_cast<vtime_policy>(*policy);
    return VTIME_OK;
  });
}

vtime_status vtime_plan_resume(const vtime_state* saved, uint32_t policy,
                               const vtime_capture_pair* destination,
                               uint64_t destination_frequency_hz, vtime_resume_plan* out) noexcept {
  constexpr std::string_view kFn = "vtime_plan_resume";
  if (!IsHandle(saved)) return BadHandle(kFn, "saved");
  if (destination == nullptr) return NullArgument(kFn, "destination");
  if (out == nullptr) return NullArgument(kFn, "out");
  if (policy > std::uint32_t{VTIME_POLICY_WALLCLOCK}) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn,
                    "policy is not VTIME_POLICY_FREEZE or VTIME_POLICY_WALLCLOCK");
  }
  return Guard(kFn, [&] {
    const state::CapturePair pair{destination->host_counter, destination->wall_clock_ns};
    const auto plan = state::PlanResume(saved->model, static_cast<state::Policy>(policy), pair,
                                        destination_frequency_hz);
    if (!plan) return FailWith(kFn, plan.error());
    *out = ToC(*plan);
    return VTIME_OK;
  });
}

}  // extern "C"
