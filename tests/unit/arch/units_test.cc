#include "vtime/units.h"

#include <gtest/gtest.h>

#include <limits>

namespace vtime {
namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
const FrequencyHz k1GHz{1'000'000'000};
const FrequencyHz k24MHz{24'000'000};
const FrequencyHz k19_2MHz{19'200'000};

TEST(Units, OneGigahertzIsOneTickPerNanosecond) {
  EXPECT_EQ(TicksToNanosecondsCeil(Ticks{12'345}, k1GHz), Nanoseconds{12'345});
  EXPECT_EQ(NanosecondsToTicksFloor(Nanoseconds{12'345}, k1GHz), Ticks{12'345});
}

TEST(Units, TicksToNanosecondsRoundsUpSoTimersNeverExpireEarly) {
  // 1 tick at 24 MHz is 41.67 ns: sleeping 41 ns would wake too early.
  EXPECT_EQ(TicksToNanosecondsCeil(Ticks{1}, k24MHz), Nanoseconds{42});
  EXPECT_EQ(TicksToNanosecondsCeil(Ticks{24}, k24MHz), Nanoseconds{1'000});
  EXPECT_EQ(TicksToNanosecondsCeil(Ticks{0}, k24MHz), Nanoseconds{0});
}

TEST(Units, NanosecondsToTicksRoundsDownToTheCountReached) {
  EXPECT_EQ(NanosecondsToTicksFloor(Nanoseconds{41}, k24MHz), Ticks{0});
  EXPECT_EQ(NanosecondsToTicksFloor(Nanoseconds{42}, k24MHz), Ticks{1});
  EXPECT_EQ(NanosecondsToTicksFloor(Nanoseconds{1'000'000'000}, k19_2MHz), Ticks{19'200'000});
}

TEST(Units, LargeValuesDoNotOverflow) {
  // ticks * 1e9 overflows 64 bits above ~1.8e10 ticks; the result must not.
  const Ticks ten_years_at_24mhz{24'000'000ULL * 3600 * 24 * 3650};
  EXPECT_EQ(TicksToNanosecondsCeil(ten_years_at_24mhz, k24MHz),
            Nanoseconds{1'000'000'000ULL * 3600 * 24 * 3650});
  EXPECT_EQ(NanosecondsToTicksFloor(Nanoseconds{1'000'000'000ULL * 3600 * 24 * 3650}, k24MHz),
            ten_years_at_24mhz);
}

TEST(Units, ConversionsSaturateInsteadOfWrapping) {
  EXPECT_EQ(TicksToNanosecondsCeil(Ticks{kMax}, k24MHz), Nanoseconds{kMax});
  EXPECT_EQ(NanosecondsToTicksFloor(Nanoseconds{kMax}, FrequencyHz{kMax}), Ticks{kMax});
  // At 1 Hz every tick is a second: far beyond 2^64 ns.
  EXPECT_EQ(TicksToNanosecondsCeil(Ticks{1ULL << 40}, FrequencyHz{1}), Nanoseconds{kMax});
}

TEST(Units, RoundTripNeverLosesATick) {
  for (const std::uint64_t t : {1ULL, 7ULL, 999ULL, 123'456'789ULL, 1ULL << 50}) {
    for (const FrequencyHz f : {k1GHz, k24MHz, k19_2MHz, FrequencyHz{62'500'000}}) {
      const Nanoseconds ns = TicksToNanosecondsCeil(Ticks{t}, f);
      EXPECT_GE(NanosecondsToTicksFloor(ns, f), Ticks{t}) << t << " @ " << f.hz();
    }
  }
}

TEST(Units, GuestViewAndOffsetForAreInverse) {
  const HostCount host{1'000};
  const Ticks guest{5'000};  // ahead of the host: the offset wraps
  const Ticks offset = OffsetFor(host, guest);
  EXPECT_EQ(GuestView(host, offset), guest);
  EXPECT_EQ(offset, Ticks{1'000 - 5'000ULL});
}

}  // namespace
}  // namespace vtime
