// The guest-physical layout vtvmm gives its guests: QEMU's `virt` machine's,
// so that programs written for it run unchanged.
#pragma once

#include <cstdint>

namespace vtime::vmm::layout {

inline constexpr std::uint64_t kGicDist = 0x08000000;    ///< GICD (v3: 64 KiB, v2: 4 KiB)
inline constexpr std::uint64_t kGicCpu = 0x08010000;     ///< GICv2 CPU interface (8 KiB)
inline constexpr std::uint64_t kGicRedist = 0x080A0000;  ///< GICv3 redistributors, 128 KiB each
inline constexpr std::uint64_t kGicRedistStride = 0x20000;
inline constexpr std::uint64_t kUart = 0x09000000;  ///< PL011
inline constexpr std::uint64_t kUartSize = 0x1000;
inline constexpr std::uint64_t kRtc = 0x09010000;  ///< PL031 real-time clock (as in QEMU)
inline constexpr std::uint64_t kRtcSize = 0x1000;
inline constexpr std::uint64_t kPvtime = 0x090A0000;  ///< stolen-time records, 64 B per vCPU
inline constexpr std::uint64_t kPvtimeSize = 0x10000;
inline constexpr std::uint64_t kTestExit = 0x090C0000;  ///< vtime test finisher (not in QEMU)
inline constexpr std::uint64_t kTestExitSize = 0x1000;
inline constexpr std::uint64_t kDebugPrint = 0x090D0000;  ///< vtime bulk print (not in QEMU)
inline constexpr std::uint64_t kRam = 0x40000000;
/// Where a raw image's first byte goes (and where it starts executing).
inline constexpr std::uint64_t kRawImageLoad = 0x40080000;

/// Default timer PPIs (INTIDs), as KVM and QEMU use them.
inline constexpr int kVtimerPpi = 27;
inline constexpr int kPtimerPpi = 30;
inline constexpr int kHvtimerPpi = 28;
inline constexpr int kHptimerPpi = 26;

}  // namespace vtime::vmm::layout
