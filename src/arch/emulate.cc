#include "vtime/arch/emulate.h"

#include "vtime/arch/control.h"

namespace vtime::arch {
namespace {

enum class Field : std::uint8_t { kTval, kCtl, kCval };

constexpr Emulation Undef() { return {AccessOutcome::kUndefined, 0}; }
constexpr Emulation ToEl1() { return {AccessOutcome::kTrapToEl1, 0}; }
constexpr Emulation ToEl2() { return {AccessOutcome::kTrapToEl2, 0}; }
constexpr Emulation ReadOf(std::uint64_t v) { return {AccessOutcome::kRead, v}; }
constexpr Emulation Written() { return {AccessOutcome::kWritten, 0}; }

// The bits a write to CNTKCTL_EL1 / CNTHCTL_EL2 keeps: the ones the guest's
// features define; the rest are RES0 (as KVM sanitises a guest hypervisor's
// CNTHCTL_EL2 by the ECV level it advertises).
std::uint64_t CntkctlWritable(const VcpuFeatures& f) {
  return cntkctl::kWritable | (f.ecv ? cntkctl::kEvntis : 0);
}
std::uint64_t CnthctlWritable(const VcpuFeatures& f) {
  return cnthctl::kBase | (f.ecv ? cnthctl::kEcvBits : 0) | (f.ecv_cntpoff ? cnthctl::kEcv : 0);
}

// Facts about where an access comes from, computed once per access.
struct Where {
  bool has_el2;        // the vCPU has virtual EL2
  bool at_el2;         // executing at (virtual) EL2
  bool e2h;            // the guest hypervisor runs with E2H = 1
  bool host_el0;       // EL0 of a VHE guest hypervisor's host (E2H and TGE set)
  bool tge_el0;        // EL0 with the guest hypervisor's TGE set (E2H either way)
  bool el2_view;       // EL0 timer names reach the EL2 timers (EL2 with E2H, or host EL0)
  bool under_l1;       // EL0/EL1 of a nested guest: the guest hypervisor's CNTHCTL_EL2 applies
  bool el2_regs_trap;  // EL1 of a guest whose hypervisor set HCR_EL2.NV
};

Where Locate(const VcpuTimerState& vcpu, const GuestContext& ctx) {
  Where w{};
  w.has_el2 = vcpu.features.el2;
  w.at_el2 = w.has_el2 && ctx.el == ExceptionLevel::kEl2;
  w.e2h = w.has_el2 && ctx.e2h;
  w.host_el0 = ctx.el == ExceptionLevel::kEl0 && w.e2h && ctx.tge;
  w.tge_el0 = ctx.el == ExceptionLevel::kEl0 && w.has_el2 && ctx.tge;
  w.el2_view = (w.at_el2 && w.e2h) || w.host_el0;
  w.under_l1 = w.has_el2 && !w.at_el2 && !w.host_el0;
  w.el2_regs_trap = w.has_el2 && ctx.el == ExceptionLevel::kEl1 && ctx.nv;
  return w;
}

// EL0 access control. Outside a guest hypervisor's host EL0, CNTKCTL_EL1
// decides; in host EL0 (E2H and TGE set) the EL0 bits of CNTHCTL_EL2, which
// share CNTKCTL's layout, decide.
bool El0Allowed(const VcpuTimerState& vcpu, const Where& w, std::uint64_t bits) {
  const std::uint64_t control = w.host_el0 ? vcpu.cnthctl_el2 : vcpu.cntkctl_el1;
  return (control & bits) != 0;
}

// With HCR_EL2.TGE set, EL1 is not in use: an EL0 denial is taken to EL2
// whatever E2H says (with E2H = 0 CNTKCTL_EL1 still decides; see above).
Emulation DenyEl0(const Where& w) { return w.tge_el0 ? ToEl2() : ToEl1(); }

// A nested guest's EL1 physical counter/timer controls in its hypervisor's
// CNTHCTL_EL2, at the positions its E2H selects.
bool L1AllowsPhysical(const VcpuTimerState& vcpu, const Where& w, bool timer) {
  std::uint64_t bit;
  if (w.e2h) {
    bit = timer ? cnthctl::kEl1Pten : cnthctl::kEl1Pcten;
  } else {
    bit = timer ? cnthctl::kEl1PcenE2h0 : cnthctl::kEl1PctenE2h0;
  }
  return (vcpu.cnthctl_el2 & bit) != 0;
}

bool L1TrapsVirtual(const VcpuTimerState& vcpu, bool timer) {
  if (!vcpu.features.ecv) return false;  // EL1TVT/EL1TVCT are RES0 without FEAT_ECV
  return (vcpu.cnthctl_el2 & (timer ? cnthctl::kEl1Tvt : cnthctl::kEl1Tvct)) != 0;
}

Emulation TimerAccess(Timer& timer, Field field, Ticks count, bool is_read, std::uint64_t value) {
  if (is_read) {
    switch (field) {
      case Field::kTval:
        return ReadOf(timer.ReadTval(count));
      case Field::kCtl:
        return ReadOf(timer.ReadCtl(count));
      case Field::kCval:
        return ReadOf(timer.cval().value);
    }
  }
  switch (field) {
    case Field::kTval:
      timer.WriteTval(count, value);
      break;
    case Field::kCtl:
      timer.WriteCtl(value);
      break;
    case Field::kCval:
      timer.WriteCval(Ticks{value});
      break;
  }
  return Written();
}

Emulation AccessTimer(VcpuTimerState& vcpu, TimerId id, Field field, const SysRegAccess& access,
                      std::uint64_t value, const EmulationEnv& env) {
  const TimerCounts counts = env.clock->CountsFor(env.now, vcpu.nested());
  return TimerAccess(vcpu.timers[id], field, counts[id], access.is_read, value);
}

// CNTP_* / CNTV_* by their EL0 names.
Emulation El0TimerName(VcpuTimerState& vcpu, const Where& w, const GuestContext& ctx, bool physical,
                       Field field, const SysRegAccess& access, std::uint64_t value,
                       const EmulationEnv& env) {
  if (ctx.el == ExceptionLevel::kEl0 &&
      !El0Allowed(vcpu, w, physical ? cntkctl::kEl0Pten : cntkctl::kEl0Vten)) {
    return DenyEl0(w);
  }
  if (w.under_l1) {
    if (physical && !L1AllowsPhysical(vcpu, w, /*timer=*/true)) return ToEl2();
    if (!physical && L1TrapsVirtual(vcpu, /*timer=*/true)) return ToEl2();
  }
  TimerId id;
  if (w.el2_view) {
    id = physical ? TimerId::kEl2Physical : TimerId::kEl2Virtual;
  } else {
    id = physical ? TimerId::kEl1Physical : TimerId::kEl1Virtual;
  }
  return AccessTimer(vcpu, id, field, access, value, env);
}

// CNTP_*_EL02 / CNTV_*_EL02: a VHE guest hypervisor reaching the EL1 timers.
Emulation El02TimerName(VcpuTimerState& vcpu, const Where& w, bool physical, Field field,
                        const SysRegAccess& access, std::uint64_t value, const EmulationEnv& env) {
  if (w.el2_regs_trap) return ToEl2();
  if (!w.at_el2 || !w.e2h) return Undef();
  return AccessTimer(vcpu, physical ? TimerId::kEl1Physical : TimerId::kEl1Virtual, field, access,
                     value, env);
}

Emulation El2TimerName(VcpuTimerState& vcpu, const Where& w, bool physical, Field field,
                       const SysRegAccess& access, std::uint64_t value, const EmulationEnv& env) {
  if (w.el2_regs_trap) return ToEl2();
  if (!w.at_el2) return Undef();
  return AccessTimer(vcpu, physical ? TimerId::kEl2Physical : TimerId::kEl2Virtual, field, access,
                     value, env);
}

Emulation Counter(const VcpuTimerState& vcpu, const Where& w, const GuestContext& ctx,
                  bool physical, bool self_synchronised, const SysRegAccess& access,
                  const EmulationEnv& env) {
  if (self_synchronised && !vcpu.features.ecv) return Undef();
  if (!access.is_read) return Undef();  // the counters are read-only
  if (ctx.el == ExceptionLevel::kEl0 &&
      !El0Allowed(vcpu, w, physical ? cntkctl::kEl0Pcten : cntkctl::kEl0Vcten)) {
    return DenyEl0(w);
  }
  if (w.under_l1) {
    if (physical && !L1AllowsPhysical(vcpu, w, /*timer=*/false)) return ToEl2();
    if (!physical && L1TrapsVirtual(vcpu, /*timer=*/false)) return ToEl2();
  }
  const NestedOffsets nested = vcpu.nested();
  const Ticks physical_count = env.clock->PhysicalCount(env.now);
  if (physical) {
    // A guest hypervisor's CNTPOFF_EL2 applies below it, never to itself.
    return ReadOf((w.under_l1 ? physical_count - nested.cntpoff_el2 : physical_count).value);
  }
  // The virtual offset is treated as 0 in the EL2&0 regime of a VHE guest
  // hypervisor (at EL2 with E2H, or in its host EL0).
  if (w.el2_view) return ReadOf(physical_count.value);
  return ReadOf(env.clock->VirtualCount(env.now, nested).value);
}

}  // namespace

std::string_view NameOf(AccessOutcome outcome) {
  switch (outcome) {
    case AccessOutcome::kRead:
      return "read";
    case AccessOutcome::kWritten:
      return "written";
    case AccessOutcome::kWriteIgnored:
      return "write ignored";
    case AccessOutcome::kUndefined:
      return "UNDEFINED";
    case AccessOutcome::kTrapToEl1:
      return "trap to EL1";
    case AccessOutcome::kTrapToEl2:
      return "trap to EL2";
  }
  return "unknown";
}

NestedOffsets VcpuTimerState::nested() const {
  NestedOffsets n;
  if (!features.el2) return n;
  n.enabled = true;
  n.cntvoff_el2 = cntvoff_el2;
  if (features.ecv_cntpoff && (cnthctl_el2 & cnthctl::kEcv) != 0) n.cntpoff_el2 = cntpoff_el2;
  return n;
}

void VcpuTimerState::Reset() {
  timers.Reset();
  cntkctl_el1 = 0;
  cnthctl_el2 = 0;
  cntvoff_el2 = Ticks{0};
  cntpoff_el2 = Ticks{0};
}

Emulation EmulateSysRegAccess(const SysRegAccess& access, std::uint64_t write_value,
                              VcpuTimerState& vcpu, const GuestContext& context,
                              const EmulationEnv& env) {
  if (!access.reg) return Undef();
  const Where w = Locate(vcpu, context);
  const bool is_read = access.is_read;
  const std::uint64_t v = write_value;

  switch (*access.reg) {
    case SysReg::CNTFRQ_EL0:
      if (!is_read) {
        // Only the highest implemented EL may write CNTFRQ_EL0; for a guest
        // the frequency is the host's, so such a write changes nothing.
        const bool highest = w.has_el2 ? w.at_el2 : context.el == ExceptionLevel::kEl1;
        return highest ? Emulation{AccessOutcome::kWriteIgnored, 0} : Undef();
      }
      if (context.el == ExceptionLevel::kEl0 &&
          !El0Allowed(vcpu, w, cntkctl::kEl0Pcten | cntkctl::kEl0Vcten)) {
        return DenyEl0(w);
      }
      return ReadOf(env.cntfrq.hz());

    case SysReg::CNTPCT_EL0:
      return Counter(vcpu, w, context, true, false, access, env);
    case SysReg::CNTPCTSS_EL0:
      return Counter(vcpu, w, context, true, true, access, env);
    case SysReg::CNTVCT_EL0:
      return Counter(vcpu, w, context, false, false, access, env);
    case SysReg::CNTVCTSS_EL0:
      return Counter(vcpu, w, context, false, true, access, env);

    case SysReg::CNTKCTL_EL1: {
      if (context.el == ExceptionLevel::kEl0) return Undef();
      // With E2H, CNTKCTL_EL1 at EL2 names CNTHCTL_EL2.
      if (w.at_el2 && w.e2h) {
        if (is_read) return ReadOf(vcpu.cnthctl_el2);
        vcpu.cnthctl_el2 = v & CnthctlWritable(vcpu.features);
        return Written();
      }
      if (is_read) return ReadOf(vcpu.cntkctl_el1);
      vcpu.cntkctl_el1 = v & CntkctlWritable(vcpu.features);
      return Written();
    }
    case SysReg::CNTKCTL_EL12:
      if (w.el2_regs_trap) return ToEl2();
      if (!w.at_el2 || !w.e2h) return Undef();
      if (is_read) return ReadOf(vcpu.cntkctl_el1);
      vcpu.cntkctl_el1 = v & CntkctlWritable(vcpu.features);
      return Written();

    case SysReg::CNTP_TVAL_EL0:
      return El0TimerName(vcpu, w, context, true, Field::kTval, access, v, env);
    case SysReg::CNTP_CTL_EL0:
      return El0TimerName(vcpu, w, context, true, Field::kCtl, access, v, env);
    case SysReg::CNTP_CVAL_EL0:
      return El0TimerName(vcpu, w, context, true, Field::kCval, access, v, env);
    case SysReg::CNTV_TVAL_EL0:
      return El0TimerName(vcpu, w, context, false, Field::kTval, access, v, env);
    case SysReg::CNTV_CTL_EL0:
      return El0TimerName(vcpu, w, context, false, Field::kCtl, access, v, env);
    case SysReg::CNTV_CVAL_EL0:
      return El0TimerName(vcpu, w, context, false, Field::kCval, access, v, env);

    case SysReg::CNTP_TVAL_EL02:
      return El02TimerName(vcpu, w, true, Field::kTval, access, v, env);
    case SysReg::CNTP_CTL_EL02:
      return El02TimerName(vcpu, w, true, Field::kCtl, access, v, env);
    case SysReg::CNTP_CVAL_EL02:
      return El02TimerName(vcpu, w, true, Field::kCval, access, v, env);
    case SysReg::CNTV_TVAL_EL02:
      return El02TimerName(vcpu, w, false, Field::kTval, access, v, env);
    case SysReg::CNTV_CTL_EL02:
      return El02TimerName(vcpu, w, false, Field::kCtl, access, v, env);
    case SysReg::CNTV_CVAL_EL02:
      return El02TimerName(vcpu, w, false, Field::kCval, access, v, env);

    case SysReg::CNTHP_TVAL_EL2:
      return El2TimerName(vcpu, w, true, Field::kTval, access, v, env);
    case SysReg::CNTHP_CTL_EL2:
      return El2TimerName(vcpu, w, true, Field::kCtl, access, v, env);
    case SysReg::CNTHP_CVAL_EL2:
      return El2TimerName(vcpu, w, true, Field::kCval, access, v, env);
    case SysReg::CNTHV_TVAL_EL2:
      return El2TimerName(vcpu, w, false, Field::kTval, access, v, env);
    case SysReg::CNTHV_CTL_EL2:
      return El2TimerName(vcpu, w, false, Field::kCtl, access, v, env);
    case SysReg::CNTHV_CVAL_EL2:
      return El2TimerName(vcpu, w, false, Field::kCval, access, v, env);

    case SysReg::CNTVOFF_EL2:
      if (w.el2_regs_trap) return ToEl2();
      if (!w.at_el2) return Undef();
      if (is_read) return ReadOf(vcpu.cntvoff_el2.value);
      vcpu.cntvoff_el2 = Ticks{v};
      return Written();
    case SysReg::CNTPOFF_EL2:
      // Exists only with FEAT_ECV CNTPOFF, which KVM does not offer guests.
      if (!vcpu.features.ecv_cntpoff) return Undef();
      if (w.el2_regs_trap) return ToEl2();
      if (!w.at_el2) return Undef();
      if (is_read) return ReadOf(vcpu.cntpoff_el2.value);
      vcpu.cntpoff_el2 = Ticks{v};
      return Written();
    case SysReg::CNTHCTL_EL2:
      if (w.el2_regs_trap) return ToEl2();
      if (!w.at_el2) return Undef();
      if (is_read) return ReadOf(vcpu.cnthctl_el2);
      vcpu.cnthctl_el2 = v & CnthctlWritable(vcpu.features);
      return Written();
  }
  return Undef();
}

}  // namespace vtime::arch
