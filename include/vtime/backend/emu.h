// The emulated backend behind the seam (vtime/backend/hypervisor.h): each
// vCPU is a Unicorn (QEMU TCG) arm64 engine run on the VMM's vCPU thread,
// all of them over the same host memory, with every counter and timer access
// trapped into vtime's own model (src/arch). For hosts without arm64 KVM.
//
// How it keeps the seam's promises: MMIO is answered inside Run, on the
// vCPU's thread, without returning (Run never reports kMmio); the timer
// lines reach the TimerLineHandler from inside Run as soon as they change
// (a guest's timer write, a deadline passing, and before every MMIO access
// is answered); Run returns only for a kick, an exit request, PSCI
// SYSTEM_OFF/SYSTEM_RESET, or a failure (kOther). SetIrqLine may be called
// from any thread. The VMM destroys the vCPUs before their VM.
//
// What it is not: a full arm64 machine. There is no in-kernel interrupt
// controller (use the VMM's user-space GIC), no EL2, and no guest EL0 beyond
// what Unicorn itself gives (see src/backend/emu/vcpu.cc for the limits).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "vtime/backend/host_clock.h"
#include "vtime/backend/hypervisor.h"
#include "vtime/result.h"
#include "vtime/units.h"

namespace vtime::emu {

/// How the emulated hypervisor is made.
struct EmuOptions {
  /// The counter's frequency (CNTFRQ_EL0 as guests see it): 1 GHz, the lab's.
  std::uint64_t counter_frequency_hz = 1'000'000'000;
};

/// The highest counter frequency accepted (16 GHz): the count is computed
/// from nanoseconds in 64-bit arithmetic.
inline constexpr std::uint64_t kMaxCounterFrequencyHz = 16'000'000'000;

/// A host counter made from CLOCK_MONOTONIC at a frequency the VMM chooses,
/// and CLOCK_REALTIME as the wall clock.
class EmuHostClock final : public backend::HostClock {
 public:
  /// Precondition: 0 < frequency.hz() <= kMaxCounterFrequencyHz.
  explicit EmuHostClock(vtime::FrequencyHz frequency) : frequency_(frequency) {}

  /// CLOCK_MONOTONIC in ticks of the frequency (rounded down).
  [[nodiscard]] HostCount Count() const override;
  [[nodiscard]] std::uint64_t FrequencyHz() const override { return frequency_.hz(); }
  /// The count and CLOCK_REALTIME, read back to back.
  [[nodiscard]] state::CapturePair CaptureNow() const override;

  [[nodiscard]] vtime::FrequencyHz frequency() const { return frequency_; }
  /// The first instant (std::chrono::steady_clock, which is CLOCK_MONOTONIC)
  /// at which Count() reads `count` or more.
  [[nodiscard]] std::chrono::steady_clock::time_point TimeOf(HostCount count) const;

 private:
  vtime::FrequencyHz frequency_;
};

/// The Unicorn library's version ("2.0.1").
std::string UnicornVersion();

/// An emulated hypervisor. Refuses a frequency of 0 or above
/// kMaxCounterFrequencyHz (kInvalidArgument).
Result<std::unique_ptr<backend::Hypervisor>> CreateEmuHypervisor(EmuOptions options = {});

}  // namespace vtime::emu
