// The arm64 generic timer's virtual counter and its frequency, read from
// user space (CNTKCTL_EL1 lets EL0 read them on Linux). Elsewhere there is
// no counter: kHaveCounter is false and both read 0.
#pragma once

#include <cstdint>

namespace vtime::guest_tools {

#if defined(__aarch64__)
inline constexpr bool kHaveCounter = true;

// The isb keeps the counter read from being done early, ahead of the clock
// reads before it (the Arm ARM lets a CNTVCT read be speculated otherwise).
inline std::uint64_t ReadCntvct() {
  std::uint64_t value;
  asm volatile("isb\n\tmrs %0, cntvct_el0" : "=r"(value) : : "memory");
  return value;
}

inline std::uint64_t ReadCntfrq() {
  std::uint64_t value;
  asm volatile("mrs %0, cntfrq_el0" : "=r"(value));
  return value;
}
#else
inline constexpr bool kHaveCounter = false;
inline std::uint64_t ReadCntvct() { return 0; }
inline std::uint64_t ReadCntfrq() { return 0; }
#endif

}  // namespace vtime::guest_tools
