// The Arm Generic Timer's per-vCPU timers as a pure model. A timer stores only
// CTL (ENABLE, IMASK) and CVAL; TVAL, ISTATUS and the output line are derived
// from them and from the count the timer compares against, which the caller
// passes in.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "vtime/units.h"

namespace vtime::arch {

/// CNTx_CTL bits.
namespace ctl {
inline constexpr std::uint64_t kEnable = 1U << 0;   ///< ENABLE
inline constexpr std::uint64_t kImask = 1U << 1;    ///< IMASK
inline constexpr std::uint64_t kIstatus = 1U << 2;  ///< ISTATUS (read-only)
/// The bits a write stores; ISTATUS and bits [63:3] are not stored.
inline constexpr std::uint64_t kWritable = kEnable | kImask;
}  // namespace ctl

/// One timer: CTL and CVAL, plus the rules that derive everything else.
class Timer {
 public:
  /// The stored CTL (ENABLE and IMASK only; never ISTATUS).
  [[nodiscard]] std::uint64_t ctl() const { return ctl_; }
  /// CVAL as stored: a 64-bit absolute count.
  [[nodiscard]] Ticks cval() const { return cval_; }

  [[nodiscard]] bool enabled() const { return (ctl_ & ctl::kEnable) != 0; }
  [[nodiscard]] bool masked() const { return (ctl_ & ctl::kImask) != 0; }

  /// MSR CNTx_CTL: keeps ENABLE and IMASK; ISTATUS is read-only and the
  /// other bits are RES0.
  void WriteCtl(std::uint64_t value) { ctl_ = value & ctl::kWritable; }
  /// MSR CNTx_CVAL: stored verbatim.
  void WriteCval(Ticks value) { cval_ = value; }
  /// MSR CNTx_TVAL: CVAL = count + SignExtend(value[31:0]) (mod 2^64).
  void WriteTval(Ticks count, std::uint64_t value);

  /// ISTATUS: the timer condition CVAL <= count (unsigned 64-bit). The Arm
  /// ARM leaves ISTATUS UNKNOWN while ENABLE is 0; vtime reports the
  /// condition regardless of ENABLE, as KVM does on an emulated read.
  [[nodiscard]] bool Istatus(Ticks count) const { return cval_ <= count; }
  /// The interrupt output line: ENABLE && ISTATUS && !IMASK.
  [[nodiscard]] bool Output(Ticks count) const { return enabled() && !masked() && Istatus(count); }
  /// MRS CNTx_CTL: stored bits plus ISTATUS.
  [[nodiscard]] std::uint64_t ReadCtl(Ticks count) const {
    return ctl_ | (Istatus(count) ? ctl::kIstatus : 0);
  }
  /// MRS CNTx_TVAL: (CVAL - count)[31:0], zero-extended as the register
  /// reads; the guest treats it as a signed 32-bit value (see TvalSigned).
  [[nodiscard]] std::uint64_t ReadTval(Ticks count) const {
    return (cval_ - count).value & 0xffffffffULL;
  }
  /// The signed 32-bit view of TVAL.
  [[nodiscard]] std::int32_t TvalSigned(Ticks count) const {
    return static_cast<std::int32_t>(static_cast<std::uint32_t>(ReadTval(count)));
  }

  /// Ticks from `count` until the output line rises: 0 if it is high now,
  /// nothing if it cannot rise without a register write (disabled or masked).
  [[nodiscard]] std::optional<Ticks> TicksUntilFire(Ticks count) const;

  /// Architectural reset: CTL = 0 (disabled, unmasked). CVAL is UNKNOWN at
  /// reset; vtime zeroes it so that state is deterministic.
  void Reset() {
    ctl_ = 0;
    cval_ = Ticks{0};
  }

  friend bool operator==(const Timer&, const Timer&) = default;

 private:
  std::uint64_t ctl_ = 0;
  Ticks cval_{0};
};

/// The four timers of a vCPU.
enum class TimerId : std::uint8_t {
  kEl1Virtual,   ///< CNTV_*_EL0 (PPI 27 by default under KVM)
  kEl1Physical,  ///< CNTP_*_EL0 (PPI 30)
  kEl2Virtual,   ///< CNTHV_*_EL2, nested virtualization (PPI 28)
  kEl2Physical,  ///< CNTHP_*_EL2, nested virtualization (PPI 26)
};
inline constexpr std::size_t kTimerCount = 4;
inline constexpr std::array<TimerId, kTimerCount> kAllTimers = {
    TimerId::kEl1Virtual, TimerId::kEl1Physical, TimerId::kEl2Virtual, TimerId::kEl2Physical};

/// "EL1 virtual" and so on.
std::string_view NameOf(TimerId id);

/// The count each of a vCPU's timers compares against, at one instant.
struct TimerCounts {
  std::array<Ticks, kTimerCount> of{};
  [[nodiscard]] Ticks operator[](TimerId id) const { return of[static_cast<std::size_t>(id)]; }
};

/// The earliest instant at which one of a vCPU's timer lines will rise.
struct Deadline {
  TimerId timer;  ///< Which timer fires first.
  Ticks delta;    ///< Ticks from now; 0 when a line is already high.
};

/// The timers of one vCPU.
class VcpuTimers {
 public:
  [[nodiscard]] Timer& operator[](TimerId id) { return timers_[static_cast<std::size_t>(id)]; }
  [[nodiscard]] const Timer& operator[](TimerId id) const {
    return timers_[static_cast<std::size_t>(id)];
  }

  /// The soonest deadline over the timers, or nothing if none can fire.
  /// Only the first `active` timers count (2 without nested virtualization).
  [[nodiscard]] std::optional<Deadline> NextDeadline(const TimerCounts& counts,
                                                     std::size_t active = kTimerCount) const;

  /// Bit i set when timer i's output line is high.
  [[nodiscard]] std::uint32_t OutputLines(const TimerCounts& counts) const;

  void Reset() {
    for (Timer& t : timers_) t.Reset();
  }

  friend bool operator==(const VcpuTimers&, const VcpuTimers&) = default;

 private:
  std::array<Timer, kTimerCount> timers_{};
};

}  // namespace vtime::arch
