// The PL031 real-time clock, as a pure model: its counter is the wall clock
// "now" the caller passes in (Unix seconds; vtvmm passes the host's
// CLOCK_REALTIME) plus the offset the guest chose by writing the load
// register. The model reads no clock itself, so tests control time.
//
// Registers (32-bit, at these offsets; everything else in the 4 KiB frame
// reads as zero and ignores writes, reported through `known`):
//   0x000 RTCDR    counter, read only: now + offset (mod 2^32)
//   0x004 RTCMR    match value, read/write
//   0x008 RTCLR    load: a write makes the counter read the value written
//                  from now on; a read returns the last value written
//   0x00C RTCCR    bit 0 "started": always 1 (the clock runs from power-on,
//                  as a battery-backed one does); writes are ignored, as a
//                  started PL031 ignores them until reset
//   0x010 RTCIMSC  bit 0: the match interrupt is unmasked
//   0x014 RTCRIS   bit 0: the counter reached the match value (latched)
//   0x018 RTCMIS   RTCRIS & RTCIMSC
//   0x01C RTCICR   write bit 0 to clear RTCRIS
//   0xFE0-0xFFC    PrimeCell IDs: peripheral 0x00041031, component 0xB105F00D
// The match latch is evaluated on accesses: it is set once the counter has
// passed the match value since the previous access. vtvmm does not raise
// the interrupt line (it has no deadline timer for it), so an alarm is seen
// only by a guest that reads RTCRIS/RTCMIS; Linux reads the time, sets it,
// and reads the alarm registers without needing the line.
#pragma once

#include <cstdint>
#include <optional>

namespace vtime::vmm {

/// What a PL031 holds across a snapshot: the guest's choices only.
struct Pl031State {
  std::int64_t offset_s = 0;  ///< counter minus the wall clock, in seconds
  std::uint32_t match = 0;    ///< RTCMR
  std::uint32_t load = 0;     ///< RTCLR as last written
  bool imsc = false;          ///< RTCIMSC bit 0
  bool ris = false;           ///< RTCRIS bit 0
  /// True for the state at power-on (snapshots omit it then).
  [[nodiscard]] bool IsReset() const { return *this == Pl031State{}; }
  friend bool operator==(const Pl031State&, const Pl031State&) = default;
};

class Pl031 {
 public:
  static constexpr std::uint64_t kSize = 0x1000;

  /// A register read at wall-clock second `now_s`. `known` is cleared for
  /// offsets that hold no register (they read as zero).
  std::uint32_t Read(std::uint64_t offset, std::int64_t now_s, bool* known);
  /// A register write at `now_s`; writes to read-only or absent registers
  /// are ignored (`known` cleared for absent ones).
  void Write(std::uint64_t offset, std::uint32_t value, std::int64_t now_s, bool* known);
  /// The interrupt output (RTCMIS bit 0) as of the last access.
  [[nodiscard]] bool InterruptLine() const { return state_.ris && state_.imsc; }

  [[nodiscard]] Pl031State Save() const { return state_; }
  /// Takes a saved state; the match latch is evaluated afresh from the next
  /// access (a match that fell while the VM was saved is not seen).
  void Restore(const Pl031State& state) {
    state_ = state;
    last_count_.reset();
  }

 private:
  std::uint32_t Count(std::int64_t now_s) const;
  void Advance(std::int64_t now_s);

  Pl031State state_;
  std::optional<std::uint32_t> last_count_;  // the counter at the previous access
};

}  // namespace vtime::vmm
