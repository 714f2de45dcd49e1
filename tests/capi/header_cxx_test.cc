// vtime.h from C++ at the oldest standard the header promises (C++11), with
// the warnings a strict C++ VMM builds with: the header must not add any.
// It includes vtime.h alone, as a C++ VMM linking libvtime.so would.
#include <cstdint>
#include <cstdio>

#include "vtime/vtime.h"

int main() {
  static_assert(noexcept(vtime_version()), "the C API is noexcept for C++ callers");
  static_assert(VTIME_VERSION == VTIME_MAKE_VERSION(VTIME_VERSION_MAJOR, VTIME_VERSION_MINOR,
                                                    VTIME_VERSION_PATCH),
                "one version number");
  vtime_clock* clock = nullptr;
  if (vtime_clock_create(1000000, VTIME_HOST_LINUX_6_4, &clock) != VTIME_OK) return 1;
  std::uint64_t hz = 0;
  const vtime_status status = vtime_clock_frequency(clock, &hz);
  vtime_clock_destroy(clock);
  if (status != VTIME_OK || hz != 1000000 || vtime_version() != VTIME_VERSION) return 1;
  std::printf("vtime.h from C++11: %s\n", vtime_version_string());
  return 0;
}
