// Strong types for quantities that must not mix: host counter readings,
// guest-view counter ticks, nanoseconds and counter frequencies.
#pragma once

#include <compare>
#include <cstdint>

namespace vtime {

/// A reading of the host's physical counter (CNTPCT as the host sees it).
/// All "now" in the pure model arrives as one of these: the model reads no
/// clock itself.
struct HostCount {
  std::uint64_t value = 0;
  friend constexpr auto operator<=>(HostCount, HostCount) = default;
};

/// A count of generic-timer ticks: a guest-view counter value, a CVAL, an
/// offset or a difference of counts. Arithmetic is modulo 2^64, as the
/// architecture defines it for a 64-bit counter.
struct Ticks {
  std::uint64_t value = 0;
  friend constexpr auto operator<=>(Ticks, Ticks) = default;
  friend constexpr Ticks operator+(Ticks a, Ticks b) { return Ticks{a.value + b.value}; }
  friend constexpr Ticks operator-(Ticks a, Ticks b) { return Ticks{a.value - b.value}; }
};

/// A guest counter value derived from a host reading and an offset:
/// guest = host - offset (mod 2^64).
constexpr Ticks GuestView(HostCount host, Ticks offset) { return Ticks{host.value - offset.value}; }

/// The offset that makes a host reading look like a given guest value.
constexpr Ticks OffsetFor(HostCount host, Ticks guest_value) {
  return Ticks{host.value - guest_value.value};
}

/// A duration in nanoseconds.
struct Nanoseconds {
  std::uint64_t value = 0;
  friend constexpr auto operator<=>(Nanoseconds, Nanoseconds) = default;
};

/// A counter frequency in Hz (CNTFRQ_EL0). Never zero: construct it with
/// FrequencyHz::Of, which a caller checks, or from a validated source.
class FrequencyHz {
 public:
  /// A frequency, or nothing if hz is zero (a counter that does not count).
  static constexpr bool Valid(std::uint64_t hz) { return hz != 0; }
  /// Precondition: Valid(hz).
  explicit constexpr FrequencyHz(std::uint64_t hz) : hz_(hz) {}
  [[nodiscard]] constexpr std::uint64_t hz() const { return hz_; }
  friend constexpr auto operator<=>(FrequencyHz, FrequencyHz) = default;

 private:
  std::uint64_t hz_;
};

/// The time the counter needs to advance by `ticks` at `freq`, rounded UP so
/// that a host timer armed for it never expires before the counter got there.
/// Saturates at 2^64-1 ns instead of overflowing.
Nanoseconds TicksToNanosecondsCeil(Ticks ticks, FrequencyHz freq);

/// How many whole ticks the counter advances in `ns` at `freq`, rounded DOWN
/// (the count actually reached). Saturates at 2^64-1 ticks.
Ticks NanosecondsToTicksFloor(Nanoseconds ns, FrequencyHz freq);

/// A guest physical address (IPA).
struct GuestPhysAddr {
  std::uint64_t value = 0;
  friend constexpr auto operator<=>(GuestPhysAddr, GuestPhysAddr) = default;
};

}  // namespace vtime
