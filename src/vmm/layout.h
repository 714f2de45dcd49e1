// The guest-physical layout vtvmm gives its guests: QEMU's `virt` machine's,
// so that programs written for it run unchanged.
#pragma once

#include <cstdint>

#include "vtime/pvtime/record.h"

namespace vtime::vmm::layout {

/// GICD: the in-kernel GICv3's (kGicDistSizeV3), or the user-space GIC's
/// (UserGic::kDistSize, with its CPU interface at kGicCpu, UserGic::kCpuSize).
inline constexpr std::uint64_t kGicDist = 0x08000000;
inline constexpr std::uint64_t kGicDistSizeV3 = 0x10000;
inline constexpr std::uint64_t kGicCpu = 0x08010000;
inline constexpr std::uint64_t kGicRedist = 0x080A0000;  ///< GICv3 redistributors, one per vCPU
inline constexpr std::uint64_t kGicRedistStride = 0x20000;
inline constexpr std::uint64_t kUart = 0x09000000;  ///< PL011
inline constexpr std::uint64_t kUartSize = 0x1000;
inline constexpr std::uint64_t kRtc = 0x09010000;  ///< PL031 real-time clock (as in QEMU)
inline constexpr std::uint64_t kRtcSize = 0x1000;
/// The PV stolen-time records' region (vCPU i's at pvtime::RecordOffset(i)):
/// one 64 KiB page, as the PV-time documentation advises.
inline constexpr std::uint64_t kPvtime = 0x090A0000;
inline constexpr std::uint64_t kPvtimeSize = 0x10000;
inline constexpr std::uint64_t kTestExit = 0x090C0000;  ///< vtime test finisher (not in QEMU)
inline constexpr std::uint64_t kTestExitSize = 0x1000;
inline constexpr std::uint64_t kDebugPrint = 0x090D0000;  ///< vtime bulk print (not in QEMU)
/// vtime trace marker (not in QEMU): a guest stores its CNTVCT to offset 0
/// (one 8-byte write) at a moment it marks in its own trace; the host's
/// kvm:kvm_mmio event for that exit carries the value, which ties the two
/// traces together. vtvmm only counts the writes; the page reads as zero.
inline constexpr std::uint64_t kTraceMarker = 0x090E0000;
inline constexpr std::uint64_t kTraceMarkerSize = 0x1000;
/// Counter probes in the trace marker's page: a guest stores the count it
/// has just read (one 8-byte write), CNTVCT as EL1 reads it (a nested guest
/// included) to the first, CNTPCT to the second. vtvmm reads the host
/// counter at that exit and checks the value against what its model of the
/// VM's offsets (and, at vEL2, the vCPU's CNTVOFF_EL2 read from KVM)
/// predicts then: never ahead of it, behind by the read window only.
inline constexpr std::uint64_t kVirtualCountProbe = kTraceMarker + 0x10;
inline constexpr std::uint64_t kPhysicalCountProbe = kTraceMarker + 0x18;
/// virtio-mmio console (--console virtio): the first slot of QEMU virt's
/// virtio-mmio window.
inline constexpr std::uint64_t kVirtioConsole = 0x0a000000;
inline constexpr std::uint64_t kRam = 0x40000000;
/// Guest RAM sizes vtvmm accepts (--memory, snapshots, migrations).
inline constexpr std::uint64_t kMinRam = 16ULL << 20;
inline constexpr std::uint64_t kMaxRam = 64ULL << 30;
/// Where a raw image's first byte goes (and where it starts executing).
inline constexpr std::uint64_t kRawImageLoad = 0x40080000;

/// The most vCPUs a vtvmm machine has (--cpus, snapshots, migration). vtvmm's
/// own bound: the layout itself would take more (below).
inline constexpr unsigned kMaxVcpus = 64;
static_assert(kGicRedist + kMaxVcpus * kGicRedistStride <= kUart,
              "the redistributors of kMaxVcpus vCPUs must fit below the UART");
static_assert(kMaxVcpus <= pvtime::RecordCapacity(kPvtimeSize),
              "the PV time records of kMaxVcpus vCPUs must fit in their region");

/// Default timer PPIs (INTIDs), as KVM and QEMU use them.
inline constexpr int kVtimerPpi = 27;
inline constexpr int kPtimerPpi = 30;
inline constexpr int kHvtimerPpi = 28;
inline constexpr int kHptimerPpi = 26;

}  // namespace vtime::vmm::layout
