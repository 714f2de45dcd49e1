// The C API over the pure timer model: VmClock for vtime_clock,
// VcpuTimerState for vtime_vcpu, and EmulateSysRegAccess for trapped
// accesses. Each function checks its handles and pointers, calls the model
// once, and maps a Result's Error to a status and message.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>

#include "capi/boundary.h"
#include "vtime/arch/control.h"
#include "vtime/arch/esr.h"
#include "vtime/arch/sysreg.h"
#include "vtime/arch/timer.h"

namespace vtime::capi {
namespace {

using arch::TimerId;

constexpr std::uint32_t kHostFlags =
    VTIME_HOST_VM_OFFSET_API | VTIME_HOST_PHYSICAL_OFFSET | VTIME_HOST_ECV_CNTPOFF;
constexpr std::uint32_t kVcpuFlags = VTIME_VCPU_EL2 | VTIME_VCPU_ECV | VTIME_VCPU_ECV_CNTPOFF;

// The C enumerations mirror the C++ ones value for value, so the mapping is
// a cast; these keep the two from drifting apart.
static_assert(VTIME_TIMER_EL1_VIRTUAL == static_cast<int>(TimerId::kEl1Virtual));
static_assert(VTIME_TIMER_EL1_PHYSICAL == static_cast<int>(TimerId::kEl1Physical));
static_assert(VTIME_TIMER_EL2_VIRTUAL == static_cast<int>(TimerId::kEl2Virtual));
static_assert(VTIME_TIMER_EL2_PHYSICAL == static_cast<int>(TimerId::kEl2Physical));
static_assert(VTIME_OFFSET_SOURCE_NONE == static_cast<int>(arch::OffsetSource::kNone));
static_assert(VTIME_OFFSET_SOURCE_VCPU_CREATION ==
              static_cast<int>(arch::OffsetSource::kVcpuCreation));
static_assert(VTIME_OFFSET_SOURCE_COUNTER_WRITE ==
              static_cast<int>(arch::OffsetSource::kCounterWrite));
static_assert(VTIME_OFFSET_SOURCE_VM_OFFSET == static_cast<int>(arch::OffsetSource::kVmOffset));
static_assert(VTIME_PHYSICAL_UNAVAILABLE ==
              static_cast<int>(arch::PhysicalOffsetMechanism::kUnavailable));
static_assert(VTIME_PHYSICAL_CNTPOFF == static_cast<int>(arch::PhysicalOffsetMechanism::kCntpoff));
static_assert(VTIME_PHYSICAL_TRAP_AND_EMULATE ==
              static_cast<int>(arch::PhysicalOffsetMechanism::kTrapAndEmulate));
static_assert(VTIME_OUTCOME_READ == static_cast<int>(arch::AccessOutcome::kRead));
static_assert(VTIME_OUTCOME_WRITTEN == static_cast<int>(arch::AccessOutcome::kWritten));
static_assert(VTIME_OUTCOME_WRITE_IGNORED == static_cast<int>(arch::AccessOutcome::kWriteIgnored));
static_assert(VTIME_OUTCOME_UNDEFINED == static_cast<int>(arch::AccessOutcome::kUndefined));
static_assert(VTIME_OUTCOME_TRAP_TO_EL1 == static_cast<int>(arch::AccessOutcome::kTrapToEl1));
static_assert(VTIME_OUTCOME_TRAP_TO_EL2 == static_cast<int>(arch::AccessOutcome::kTrapToEl2));
static_assert(VTIME_EL0 == static_cast<int>(arch::ExceptionLevel::kEl0));
static_assert(VTIME_EL2 == static_cast<int>(arch::ExceptionLevel::kEl2));
static_assert(VTIME_SYSREG_CNTFRQ_EL0 == static_cast<int>(arch::SysReg::CNTFRQ_EL0));
static_assert(VTIME_SYSREG_CNTPOFF_EL2 == static_cast<int>(arch::SysReg::CNTPOFF_EL2));
static_assert(VTIME_SYSREG_CNTV_CVAL_EL02 == static_cast<int>(arch::SysReg::CNTV_CVAL_EL02));
static_assert(std::size_t{VTIME_SYSREG_CNTV_CVAL_EL02} + 1 == arch::kSysRegCount);
static_assert(VTIME_CTL_ENABLE == arch::ctl::kEnable && VTIME_CTL_IMASK == arch::ctl::kImask &&
              VTIME_CTL_ISTATUS == arch::ctl::kIstatus);

// The timer a C caller names, if the vCPU has it.
vtime_status CheckTimer(std::string_view fn, const vtime_vcpu* vcpu, std::uint32_t timer) {
  if (timer > std::uint32_t{VTIME_TIMER_EL2_PHYSICAL}) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, fn, "timer ", Decimal(timer),
                    " is not a vtime_timer (0..3)");
  }
  if (timer >= std::uint32_t{VTIME_TIMER_EL2_VIRTUAL} && !vcpu->model.features.el2) {
    return SetError(VTIME_ERR_UNSUPPORTED, fn, arch::NameOf(static_cast<TimerId>(timer)),
                    " timer: the vCPU has no EL2 (create it with VTIME_VCPU_EL2)");
  }
  return VTIME_OK;
}

// The bits a guest's own write keeps in CNTKCTL_EL1 and CNTHCTL_EL2, as
// EmulateSysRegAccess stores them for the vCPU's features.
std::uint64_t CntkctlDefined(const arch::VcpuFeatures& f) {
  return arch::cntkctl::kWritable | (f.ecv ? arch::cntkctl::kEvntis : 0);
}
std::uint64_t CnthctlDefined(const arch::VcpuFeatures& f) {
  return arch::cnthctl::kBase | (f.ecv ? arch::cnthctl::kEcvBits : 0) |
         (f.ecv_cntpoff ? arch::cnthctl::kEcv : 0);
}

// Where a vtime_vcpu_reg lives in the model (Model is the vCPU's model,
// const or not), if the vCPU has it, and the bits a restore may set.
template <class Model>
struct RegSlot {
  decltype(&std::declval<Model&>().cntkctl_el1) value = nullptr;
  std::uint64_t defined = ~std::uint64_t{0};
};

template <class Model>
vtime_status FindReg(std::string_view fn, Model& m, std::uint32_t reg, RegSlot<Model>& slot) {
  const bool el2 = m.features.el2;
  switch (reg) {
    case VTIME_VCPU_REG_CNTKCTL_EL1:
      slot = {&m.cntkctl_el1, CntkctlDefined(m.features)};
      return VTIME_OK;
    case VTIME_VCPU_REG_CNTHCTL_EL2:
      if (!el2) break;
      slot = {&m.cnthctl_el2, CnthctlDefined(m.features)};
      return VTIME_OK;
    case VTIME_VCPU_REG_CNTVOFF_EL2:
      if (!el2) break;
      slot.value = &m.cntvoff_el2.value;
      return VTIME_OK;
    case VTIME_VCPU_REG_CNTPOFF_EL2:
      if (!el2 || !m.features.ecv_cntpoff) {
        return SetError(VTIME_ERR_UNSUPPORTED, fn,
                        "CNTPOFF_EL2: the vCPU needs VTIME_VCPU_EL2 and VTIME_VCPU_ECV_CNTPOFF");
      }
      slot.value = &m.cntpoff_el2.value;
      return VTIME_OK;
    default:
      return SetError(VTIME_ERR_INVALID_ARGUMENT, fn, "register ", Decimal(reg),
                      " is not a vtime_vcpu_reg (0..3)");
  }
  return SetError(VTIME_ERR_UNSUPPORTED, fn,
                  "an EL2 register: the vCPU has no EL2 (create it with VTIME_VCPU_EL2)");
}

constexpr std::string_view kEmulateTrap = "vtime_emulate_trap";
constexpr std::uint32_t kContextFlagsKnown =
    VTIME_CONTEXT_E2H | VTIME_CONTEXT_TGE | VTIME_CONTEXT_NV;

// The model's GuestContext is four bytes (EL, E2H, TGE, NV) in that order.
// Flag bits 0, 1, 2 go to bits 8, 16, 24 with one multiply: f * 0x408100
// places copies of f at bits 8, 15 and 22, which cannot carry into each
// other for f < 8, and the mask keeps bit 0 of the first copy, bit 1 of
// the second and bit 2 of the third.
static_assert(sizeof(arch::GuestContext) == 4 && offsetof(arch::GuestContext, e2h) == 1 &&
              offsetof(arch::GuestContext, tge) == 2 && offsetof(arch::GuestContext, nv) == 3);
static_assert(VTIME_CONTEXT_E2H == 1u << 0 && VTIME_CONTEXT_TGE == 1u << 1 &&
              VTIME_CONTEXT_NV == 1u << 2);
static_assert(std::endian::native == std::endian::little, "byte 0 of the word is the EL");
// Precondition: trap.el <= VTIME_EL2 and no unknown context flag.
static_assert(offsetof(vtime_emulation, outcome) == 8 && offsetof(vtime_emulation, sysreg) == 12 &&
              offsetof(vtime_emulation, rt) == 16 && offsetof(vtime_emulation, is_read) == 17 &&
              offsetof(vtime_emulation, reserved) == 18 && sizeof(vtime_emulation) == 24);
inline arch::GuestContext ContextOf(const vtime_trap& trap) {
  const std::uint32_t bytes = trap.el | ((trap.context_flags * 0x408100U) & 0x01010100U);
  return std::bit_cast<arch::GuestContext>(bytes);
}

// Which argument of vtime_emulate_trap is wrong, once its single check
// failed; out of line so that the hot path carries none of the messages.
[[gnu::cold, gnu::noinline]] vtime_status RefuseEmulation(const vtime_vcpu* vcpu,
                                                          const vtime_clock* clock,
                                                          const vtime_trap* trap,
                                                          const vtime_emulation* out) noexcept {
  if (!IsHandle(vcpu)) return BadHandle(kEmulateTrap, "vcpu");
  if (!IsHandle(clock)) return BadHandle(kEmulateTrap, "clock");
  if (trap == nullptr) return NullArgument(kEmulateTrap, "trap");
  if (out == nullptr) return NullArgument(kEmulateTrap, "out");
  if (trap->el > std::uint32_t{VTIME_EL2}) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kEmulateTrap, "trap->el is not VTIME_EL0, 1 or 2");
  }
  if ((trap->context_flags & ~kContextFlagsKnown) != 0) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kEmulateTrap,
                    "trap->context_flags has bits this version does not define "
                    "(VTIME_CONTEXT_*)");
  }
  return SetError(VTIME_ERR_INTERNAL, kEmulateTrap,
                  "arguments refused for no reason (a vtime bug)");
}

}  // namespace
}  // namespace vtime::capi

using namespace vtime::capi;  // NOLINT(google-build-using-namespace): the C entry points
using vtime::HostCount;
using vtime::Ticks;
namespace arch = vtime::arch;

extern "C" {

// ---- the VM clock ----------------------------------------------------------

vtime_status vtime_clock_create(uint64_t cntfrq_hz, uint32_t host_flags,
                                vtime_clock** out) noexcept {
  constexpr std::string_view kFn = "vtime_clock_create";
  if (out == nullptr) return NullArgument(kFn, "out");
  *out = nullptr;
  if (!vtime::FrequencyHz::Valid(cntfrq_hz)) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn,
                    "cntfrq_hz is 0 (a counter frequency in Hz, CNTFRQ_EL0)");
  }
  if ((host_flags & ~kHostFlags) != 0) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn,
                    "host_flags has bits this version does not define (VTIME_HOST_*)");
  }
  return Guard(kFn, [&] {
    arch::HostTimerFeatures features;
    features.vm_offset_api = (host_flags & VTIME_HOST_VM_OFFSET_API) != 0;
    features.physical_offset = (host_flags & VTIME_HOST_PHYSICAL_OFFSET) != 0;
    features.ecv_cntpoff = (host_flags & VTIME_HOST_ECV_CNTPOFF) != 0;
    *out =
        new vtime_clock{kTag<vtime_clock>, arch::VmClock(features), vtime::FrequencyHz(cntfrq_hz)};
    return VTIME_OK;
  });
}

void vtime_clock_destroy(vtime_clock* clock) noexcept { DestroyHandle(clock); }

vtime_status vtime_clock_on_vcpu_created(vtime_clock* clock, uint64_t host_count) noexcept {
  if (!IsHandle(clock)) return BadHandle("vtime_clock_on_vcpu_created", "clock");
  clock->model.OnVcpuCreated(HostCount{host_count});
  return VTIME_OK;
}

vtime_status vtime_clock_write_counter(vtime_clock* clock, uint32_t counter, uint64_t value,
                                       uint64_t host_count, int nested_vcpu,
                                       vtime_counter_write_effect* effect) noexcept {
  constexpr std::string_view kFn = "vtime_clock_write_counter";
  if (!IsHandle(clock)) return BadHandle(kFn, "clock");
  if (counter != VTIME_COUNTER_VIRTUAL && counter != VTIME_COUNTER_PHYSICAL) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn,
                    "counter is not VTIME_COUNTER_VIRTUAL or VTIME_COUNTER_PHYSICAL");
  }
  return Guard(kFn, [&] {
    const auto kind = counter == VTIME_COUNTER_VIRTUAL ? arch::CounterKind::kVirtual
                                                       : arch::CounterKind::kPhysical;
    const auto done =
        clock->model.WriteCounterValue(kind, Ticks{value}, HostCount{host_count}, nested_vcpu != 0);
    if (!done) return FailWith(kFn, done.error());
    if (effect != nullptr) {
      *effect = *done == arch::CounterWriteEffect::kApplied ? VTIME_COUNTER_WRITE_APPLIED
                                                            : VTIME_COUNTER_WRITE_IGNORED;
    }
    return VTIME_OK;
  });
}

vtime_status vtime_clock_set_vm_offset(vtime_clock* clock, uint64_t offset) noexcept {
  constexpr std::string_view kFn = "vtime_clock_set_vm_offset";
  if (!IsHandle(clock)) return BadHandle(kFn, "clock");
  return Guard(kFn, [&] {
    const auto done = clock->model.SetVmOffset(Ticks{offset});
    return done ? VTIME_OK : FailWith(kFn, done.error());
  });
}

vtime_status vtime_clock_get_info(const vtime_clock* clock, vtime_clock_info* out) noexcept {
  constexpr std::string_view kFn = "vtime_clock_get_info";
  if (!IsHandle(clock)) return BadHandle(kFn, "clock");
  if (out == nullptr) return NullArgument(kFn, "out");
  const arch::VmClock& m = clock->model;
  *out = vtime_clock_info{};
  out->virtual_offset = m.virtual_offset().value;
  out->physical_offset = m.physical_offset().value;
  out->virtual_source = static_cast<std::uint32_t>(m.virtual_source());
  out->physical_source = static_cast<std::uint32_t>(m.physical_source());
  out->physical_mechanism = static_cast<std::uint32_t>(m.physical_mechanism());
  out->vm_offset_set = m.vm_offset_set() ? 1 : 0;
  out->physical_accesses_trap = m.PhysicalAccessesTrap() ? 1 : 0;
  return VTIME_OK;
}

vtime_status vtime_clock_frequency(const vtime_clock* clock, uint64_t* hz) noexcept {
  constexpr std::string_view kFn = "vtime_clock_frequency";
  if (!IsHandle(clock)) return BadHandle(kFn, "clock");
  if (hz == nullptr) return NullArgument(kFn, "hz");
  *hz = clock->cntfrq.hz();
  return VTIME_OK;
}

vtime_status vtime_clock_counts(const vtime_clock* clock, uint64_t host_count, uint64_t* cntvct,
                                uint64_t* cntpct) noexcept {
  constexpr std::string_view kFn = "vtime_clock_counts";
  if (!IsHandle(clock)) return BadHandle(kFn, "clock");
  if (cntvct == nullptr) return NullArgument(kFn, "cntvct");
  if (cntpct == nullptr) return NullArgument(kFn, "cntpct");
  *cntvct = clock->model.VirtualCount(HostCount{host_count}).value;
  *cntpct = clock->model.PhysicalCount(HostCount{host_count}).value;
  return VTIME_OK;
}

// ---- one vCPU's timers -----------------------------------------------------

vtime_status vtime_vcpu_create(uint32_t feature_flags, vtime_vcpu** out) noexcept {
  constexpr std::string_view kFn = "vtime_vcpu_create";
  if (out == nullptr) return NullArgument(kFn, "out");
  *out = nullptr;
  if ((feature_flags & ~kVcpuFlags) != 0) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn,
                    "feature_flags has bits this version does not define (VTIME_VCPU_*)");
  }
  return Guard(kFn, [&] {
    auto* vcpu = new vtime_vcpu{kTag<vtime_vcpu>, {}};
    vcpu->model.features.el2 = (feature_flags & VTIME_VCPU_EL2) != 0;
    vcpu->model.features.ecv = (feature_flags & VTIME_VCPU_ECV) != 0;
    vcpu->model.features.ecv_cntpoff = (feature_flags & VTIME_VCPU_ECV_CNTPOFF) != 0;
    vcpu->model.Reset();
    *out = vcpu;
    return VTIME_OK;
  });
}

void vtime_vcpu_destroy(vtime_vcpu* vcpu) noexcept { DestroyHandle(vcpu); }

vtime_status vtime_vcpu_reset(vtime_vcpu* vcpu) noexcept {
  if (!IsHandle(vcpu)) return BadHandle("vtime_vcpu_reset", "vcpu");
  vcpu->model.Reset();
  return VTIME_OK;
}

vtime_status vtime_vcpu_get_timer(const vtime_vcpu* vcpu, uint32_t timer, uint64_t* ctl,
                                  uint64_t* cval) noexcept {
  constexpr std::string_view kFn = "vtime_vcpu_get_timer";
  if (!IsHandle(vcpu)) return BadHandle(kFn, "vcpu");
  if (ctl == nullptr) return NullArgument(kFn, "ctl");
  if (cval == nullptr) return NullArgument(kFn, "cval");
  if (const vtime_status s = CheckTimer(kFn, vcpu, timer); s != VTIME_OK) return s;
  const arch::Timer& t = vcpu->model.timers[static_cast<TimerId>(timer)];
  *ctl = t.ctl();
  *cval = t.cval().value;
  return VTIME_OK;
}

vtime_status vtime_vcpu_set_timer(vtime_vcpu* vcpu, uint32_t timer, uint64_t ctl,
                                  uint64_t cval) noexcept {
  constexpr std::string_view kFn = "vtime_vcpu_set_timer";
  if (!IsHandle(vcpu)) return BadHandle(kFn, "vcpu");
  if (const vtime_status s = CheckTimer(kFn, vcpu, timer); s != VTIME_OK) return s;
  if ((ctl & ~arch::ctl::kWritable) != 0) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn,
                    "ctl has bits other than ENABLE and IMASK (ISTATUS is derived, never "
                    "restored)");
  }
  arch::Timer& t = vcpu->model.timers[static_cast<TimerId>(timer)];
  t.WriteCtl(ctl);
  t.WriteCval(Ticks{cval});
  return VTIME_OK;
}

vtime_status vtime_vcpu_get_reg(const vtime_vcpu* vcpu, uint32_t reg, uint64_t* value) noexcept {
  constexpr std::string_view kFn = "vtime_vcpu_get_reg";
  if (!IsHandle(vcpu)) return BadHandle(kFn, "vcpu");
  if (value == nullptr) return NullArgument(kFn, "value");
  RegSlot<const arch::VcpuTimerState> slot;
  if (const vtime_status s = FindReg(kFn, vcpu->model, reg, slot); s != VTIME_OK) return s;
  *value = *slot.value;
  return VTIME_OK;
}

vtime_status vtime_vcpu_set_reg(vtime_vcpu* vcpu, uint32_t reg, uint64_t value) noexcept {
  constexpr std::string_view kFn = "vtime_vcpu_set_reg";
  if (!IsHandle(vcpu)) return BadHandle(kFn, "vcpu");
  RegSlot<arch::VcpuTimerState> slot;
  if (const vtime_status s = FindReg(kFn, vcpu->model, reg, slot); s != VTIME_OK) return s;
  if ((value & ~slot.defined) != 0) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn,
                    "the value has bits the vCPU's features do not define (a guest's write "
                    "could not have stored them)");
  }
  *slot.value = value;
  return VTIME_OK;
}

vtime_status vtime_vcpu_next_deadline(const vtime_vcpu* vcpu, const vtime_clock* clock,
                                      uint64_t host_count, vtime_deadline* out) noexcept {
  constexpr std::string_view kFn = "vtime_vcpu_next_deadline";
  if (!IsHandle(vcpu)) return BadHandle(kFn, "vcpu");
  if (!IsHandle(clock)) return BadHandle(kFn, "clock");
  if (out == nullptr) return NullArgument(kFn, "out");
  const arch::VcpuTimerState& m = vcpu->model;
  const arch::TimerCounts counts = clock->model.CountsFor(HostCount{host_count}, m.nested());
  const std::optional<arch::Deadline> next = m.timers.NextDeadline(counts, m.active_timers());
  *out = vtime_deadline{};
  if (next) {
    out->delta_ticks = next->delta.value;
    out->delta_ns = vtime::TicksToNanosecondsCeil(next->delta, clock->cntfrq).value;
    out->timer = static_cast<std::uint32_t>(next->timer);
    out->pending = 1;
  }
  return VTIME_OK;
}

vtime_status vtime_vcpu_output_lines(const vtime_vcpu* vcpu, const vtime_clock* clock,
                                     uint64_t host_count, uint32_t* lines) noexcept {
  constexpr std::string_view kFn = "vtime_vcpu_output_lines";
  if (!IsHandle(vcpu)) return BadHandle(kFn, "vcpu");
  if (!IsHandle(clock)) return BadHandle(kFn, "clock");
  if (lines == nullptr) return NullArgument(kFn, "lines");
  const arch::VcpuTimerState& m = vcpu->model;
  const arch::TimerCounts counts = clock->model.CountsFor(HostCount{host_count}, m.nested());
  // The EL2 timers of a vCPU without EL2 are reset and stay so (set_timer
  // refuses them), so they never raise a line.
  *lines = m.timers.OutputLines(counts);
  return VTIME_OK;
}

// ---- trapped system-register accesses --------------------------------------

const char* vtime_sysreg_name(uint32_t reg) noexcept {
  if (reg >= arch::kSysRegCount) return nullptr;
  // NameOf returns views of string literals, which are NUL-terminated.
  return arch::NameOf(static_cast<arch::SysReg>(reg)).data();
}

vtime_status vtime_decode_trap(uint64_t esr, vtime_sysreg_access* out) noexcept {
  constexpr std::string_view kFn = "vtime_decode_trap";
  if (out == nullptr) return NullArgument(kFn, "out");
  return Guard(kFn, [&] {
    const auto access = arch::DecodeSysRegTrap(esr);
    if (!access) return FailWith(kFn, access.error());
    *out = vtime_sysreg_access{};
    out->sysreg =
        access->reg ? static_cast<std::uint32_t>(*access->reg) : std::uint32_t{VTIME_SYSREG_NONE};
    out->op0 = access->encoding.op0;
    out->op1 = access->encoding.op1;
    out->crn = access->encoding.crn;
    out->crm = access->encoding.crm;
    out->op2 = access->encoding.op2;
    out->rt = access->rt;
    out->is_read = access->is_read ? 1 : 0;
    return VTIME_OK;
  });
}

vtime_status vtime_encode_trap(uint32_t reg, int is_read, uint8_t rt, uint64_t* esr) noexcept {
  constexpr std::string_view kFn = "vtime_encode_trap";
  if (esr == nullptr) return NullArgument(kFn, "esr");
  if (reg >= arch::kSysRegCount) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn, "reg is not a register vtime models");
  }
  if (rt > arch::kXzr) {
    return SetError(VTIME_ERR_INVALID_ARGUMENT, kFn, "rt is above 31 (X0..X30, 31 for XZR)");
  }
  *esr = arch::EncodeSysRegTrap(arch::EncodingOf(static_cast<arch::SysReg>(reg)), is_read != 0, rt);
  return VTIME_OK;
}

vtime_status vtime_emulate_trap(vtime_vcpu* vcpu, const vtime_clock* clock, const vtime_trap* trap,
                                vtime_emulation* out) noexcept {
  // The hottest call of the API: one branch for all the argument checks,
  // and the messages built out of line, keep its frame as small as the C++
  // path's (see bench/capi_bench.cc).
  if (!IsHandle(vcpu) || !IsHandle(clock) || trap == nullptr || out == nullptr ||
      trap->el > std::uint32_t{VTIME_EL2} || (trap->context_flags & ~kContextFlagsKnown) != 0)
      [[unlikely]] {
    return RefuseEmulation(vcpu, clock, trap, out);
  }
  return Guard(kEmulateTrap, [&] {
    const auto access = arch::DecodeSysRegTrap(trap->esr);
    if (!access) [[unlikely]] {
      return FailWith(kEmulateTrap, access.error());
    }
    const arch::GuestContext context = ContextOf(*trap);
    const arch::EmulationEnv env{&clock->model, HostCount{trap->host_count}, clock->cntfrq};
    const arch::Emulation e =
        arch::EmulateSysRegAccess(*access, trap->write_value, vcpu->model, context, env);
    // Three 64-bit stores from registers: value; outcome and sysreg; rt,
    // is_read and the reserved bytes (0). (A struct built on the stack and
    // copied out in one piece costs a failed store-to-load forwarding.)
    const std::uint64_t sysreg =
        access->reg ? static_cast<std::uint32_t>(*access->reg) : std::uint32_t{VTIME_SYSREG_NONE};
    const std::uint64_t words[2] = {static_cast<std::uint64_t>(e.outcome) | sysreg << 32,
                                    std::uint64_t{access->rt} |
                                        std::uint64_t{access->is_read ? 1U : 0U} << 8};
    out->value = e.value;
    std::memcpy(&out->outcome, words, sizeof words);
    return VTIME_OK;
  });
}

const char* vtime_outcome_name(uint32_t outcome) noexcept {
  if (outcome > std::uint32_t{VTIME_OUTCOME_TRAP_TO_EL2}) return nullptr;
  return arch::NameOf(static_cast<arch::AccessOutcome>(outcome)).data();
}

}  // extern "C"
