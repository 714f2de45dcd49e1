// A whole-VM snapshot of vtvmm: machine configuration, guest time (the
// vtime::state encoding: offsets plus the pause capture pair, timer CTL and
// CVAL; never counter values), every other vCPU register, the vGIC, guest RAM
// and the PV-time records. Pure: bytes in, bytes out; decoding refuses
// anything malformed with a one-line reason.
//
// File: the wire::Frame with magic "VTSNAP\0\0", version 1, whose payload is
// a sequence of sections { u32 tag, u32 reserved 0, u64 length, bytes }:
//   1 machine  u32 cpus (1..layout::kMaxVcpus), u64 ram_size, u8 irqchip (0 kernel, 1 user),
//              u8 pvtime, u64 pvtime_base, u32 vtimer_ppi, u32 ptimer_ppi
//   2 time     a vtime::state encoding (its own frame and checksum)
//   3 vcpu     u32 index, u32 mp_state, u32 count, then count x
//              { u64 register id, bytes of the register's size }
//              (one section per vCPU, indices 0..cpus-1 in order)
//   4 vgic     the backend's vGIC state encoding (kernel irqchip only)
//   5 ram      guest RAM, ram_size bytes
//   6 pvtime   the PV-time region (64 KiB) when pvtime is on
//   7 usergic  vtvmm's user-space GIC state (UserGic::Save; user irqchip
//              only; files from before it never have --irqchip user)
//   8 rtc      the PL031's guest-set state: i64 offset in seconds (counter
//              minus wall clock), u32 match, u32 load, u8 imsc, u8 ris;
//              written only when it differs from power-on, so a VM whose
//              guest never set its clock still decodes in a vtvmm from
//              before this section, and a file without it restores the
//              power-on state (the RTC reads the host's wall clock)
//   9 uart     the PL011's registers and receive FIFO (Pl011::Save);
//              optional: files from before it restore a UART at reset
//  10 virtio-console  the virtio console's transport and queue state
//              (VirtioConsole::Save) when the machine has one (--console
//              virtio); its rings are in guest RAM
//  11 timeline  the guest's offset timeline so far (trace::Timeline's file
//              form, its own frame and checksum), ending with the pause this
//              snapshot took; written only by a vtvmm that records one
//              (--timeline, or a restore of a snapshot that had one), so
//              snapshots without it still restore in a vtvmm from before it
//  12 debug-print  the bulk print device's ADDR register (u64), when not 0:
//              a snapshot taken between a guest's ADDR and LEN writes must
//              print that buffer on the other side (a vtvmm from before it
//              refuses such a snapshot as an unknown section)
// Every section appears once (vcpu once per vCPU); an unknown tag is refused.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/device_tree.h"
#include "vmm/layout.h"
#include "vmm/pl031.h"
#include "vtime/result.h"
#include "vtime/state/saved_state.h"

namespace vtime::vmm {

inline constexpr std::uint32_t kSnapshotVersion = 1;

struct RegisterValue {
  std::uint64_t id = 0;
  std::vector<std::uint8_t> bytes;  ///< the register's size, little endian
  friend bool operator==(const RegisterValue&, const RegisterValue&) = default;
};

struct VcpuSnapshot {
  std::uint32_t mp_state = 0;
  std::vector<RegisterValue> registers;  ///< all but the time registers
  friend bool operator==(const VcpuSnapshot&, const VcpuSnapshot&) = default;
};

struct MachineSnapshot {
  std::uint32_t cpus = 1;
  std::uint64_t ram_size = 0;
  IrqChip irqchip = IrqChip::kKernel;
  bool pvtime = false;
  std::uint64_t pvtime_base = 0;
  std::uint32_t vtimer_ppi = layout::kVtimerPpi;
  std::uint32_t ptimer_ppi = layout::kPtimerPpi;
  state::SavedState time;
  std::vector<VcpuSnapshot> vcpus;
  std::vector<std::uint8_t> vgic;
  std::vector<std::uint8_t> user_gic;  ///< UserGic::Save(), --irqchip user only
  std::vector<std::uint8_t> uart;      ///< Pl011::Save(); empty in older files
  /// VirtioConsole::Save() when the machine has a virtio console, else empty.
  std::vector<std::uint8_t> virtio_console;
  /// trace::Timeline::Encode() of the guest's timeline when the VMM records
  /// one, else empty.
  std::vector<std::uint8_t> timeline;
  /// DebugPrint's ADDR register; 0 in older files.
  std::uint64_t debug_print_addr = 0;
  std::vector<std::uint8_t> ram;
  std::vector<std::uint8_t> pvtime_region;
  /// The RTC as the guest set it. It counts the destination's wall clock
  /// plus this offset, whatever the time policy: a real RTC keeps running
  /// while its machine is off.
  Pl031State rtc;
  friend bool operator==(const MachineSnapshot&, const MachineSnapshot&) = default;
};

/// The size in bytes of a KVM register id (its KVM_REG_SIZE field).
std::size_t RegisterSize(std::uint64_t id);

/// Where guest RAM is: in the snapshot (files, stop-and-copy migration), or
/// sent on its own before it (pre-copy migration), when the ram section is
/// empty and `ram` stays empty; the rest of the format does not change.
enum class RamContents : std::uint8_t { kIncluded, kSentSeparately };

/// The most bytes a snapshot without RAM can take for `cpus` vCPUs (every
/// register list at its limit, the largest registers, the PV-time region
/// and room for the interrupt controller): what a migration destination
/// accepts, so that a peer cannot make it allocate more.
std::uint64_t MaxRamlessSnapshotBytes(std::uint32_t cpus);

Result<std::vector<std::uint8_t>> EncodeSnapshot(const MachineSnapshot& snapshot,
                                                 RamContents ram = RamContents::kIncluded);
Result<MachineSnapshot> DecodeSnapshot(std::span<const std::uint8_t> bytes,
                                       RamContents ram = RamContents::kIncluded);

}  // namespace vtime::vmm
