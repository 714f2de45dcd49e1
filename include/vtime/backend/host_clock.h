// The host's time as a VMM sees it: the counter its VM offsets refer to, that
// counter's frequency, and the wall clock. The VMM takes "now" only from
// here, so that its guest-time logic runs against a fake clock in tests and
// against an emulated counter on hosts without one.
#pragma once

#include <cstdint>

#include "vtime/state/saved_state.h"
#include "vtime/units.h"

namespace vtime::backend {

/// A host clock. Thread-safe: vCPU threads and the main thread read it.
class HostClock {
 public:
  virtual ~HostClock() = default;
  /// The host count the VM offsets are subtracted from (on arm64 KVM: the
  /// physical counter as a VHE host reads it).
  [[nodiscard]] virtual HostCount Count() const = 0;
  /// The counter's frequency in Hz (CNTFRQ_EL0 as guests see it).
  [[nodiscard]] virtual std::uint64_t FrequencyHz() const = 0;
  /// The counter and CLOCK_REALTIME, read back to back (a capture pair).
  [[nodiscard]] virtual state::CapturePair CaptureNow() const = 0;
};

}  // namespace vtime::backend
