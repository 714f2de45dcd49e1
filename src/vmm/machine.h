// vtvmm's machine: a VM in QEMU virt's layout with guest RAM, a PL011, PSCI
// (in the backend), the vtime test finisher, optional PV stolen time, and
// either the backend's GICv3 or a GICv2-style controller emulated here that
// takes the timer lines the backend reports. It runs on any backend behind
// the seam (vtime/backend/hypervisor.h: KVM, or the emulated one) and
// names none of them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "vmm/boot.h"
#include "vmm/device_tree.h"
#include "vmm/guest_memory.h"
#include "vmm/handover.h"
#include "vmm/layout.h"
#include "vmm/link.h"
#include "vmm/snapshot.h"
#include "vtime/backend/hypervisor.h"
#include "vtime/result.h"
#include "vtime/state/policy.h"

namespace vtime::vmm {

/// Turns a connected socket into the migration link: plain TCP, or TLS
/// after a handshake that authenticates the peer.
using SecureLink = std::function<Result<std::unique_ptr<Link>>(Fd)>;

/// How the machine is put together.
struct MachineConfig {
  unsigned cpus = 1;
  std::uint64_t ram_size = 256ULL << 20;
  IrqChip irqchip = IrqChip::kKernel;
  /// vCPUs with KVM_ARM_VCPU_HAS_EL2 (--el2): the guest starts at vEL2, a
  /// guest hypervisor. Needs KVM_CAP_ARM_EL2 (a kernel with nested
  /// virtualization booted with kvm-arm.mode=nested) and the in-kernel vGIC.
  bool el2 = false;
  /// The VM counter offset (guest count = host count - offset). Without it
  /// KVM's own rules apply (the guest's virtual counter starts near 0).
  std::optional<std::uint64_t> counter_offset;
  /// Carry the offset with legacy counter-value writes even where KVM has
  /// the VM offset API (to compare the two, and to test the fallback).
  bool legacy_counter_writes = false;
  bool pvtime = true;
  std::uint64_t pvtime_base = layout::kPvtime;
  int vtimer_ppi = layout::kVtimerPpi;
  int ptimer_ppi = layout::kPtimerPpi;
  /// How the image is read: an ELF or raw program, or (--kernel) an arm64
  /// Linux Image placed by its header.
  ImageFormat image_format = ImageFormat::kProgram;
  /// An initrd (--initrd) for RAM below the device tree; empty: none. The
  /// bytes must outlive the machine.
  std::span<const std::uint8_t> initrd;
  /// The kernel command line (--append): /chosen/bootargs.
  std::string bootargs;
  /// Watchdog in seconds (0: none).
  unsigned timeout_s = 0;
  /// Where a snapshot is written when one is asked for (SIGUSR2, or
  /// snapshot_after_ms of running). The VM stops once it is written.
  std::string snapshot_path;
  unsigned snapshot_after_ms = 0;
  /// Resume this snapshot instead of loading an image; its machine settings
  /// replace the ones above.
  const MachineSnapshot* restore = nullptr;
  state::Policy policy = state::Policy::kFreeze;
  /// Live migration (stop-and-copy): on SIGUSR2, or after migrate_after_ms,
  /// send the VM to a vtvmm waiting with --incoming at this ADDRESS:PORT. The
  /// source stops only when the destination has restored it; otherwise the
  /// guest keeps running here.
  std::string migrate_to;
  unsigned migrate_after_ms = 0;
  /// Test fault on the migration stream: 0 none, 1 corrupt, 2 truncate.
  int migrate_fault = 0;
  /// Pre-copy (live) migration: RAM is sent while the guest runs, then what
  /// it dirtied, round by round; the guest pauses only for the last dirty
  /// pages and its registers. Off: stop-and-copy (the version 1 stream,
  /// which older destinations take).
  bool precopy = true;
  /// How a snapshot carries guest time. kOffsets (vtime): the offsets and one
  /// capture pair. kValues: what other VMMs do today, for comparison: each
  /// vCPU's CNTVCT/CNTPCT read at pause and written back per vCPU at restore
  /// (each write samples "now"; the last one wins VM-wide).
  enum class TimeTransfer : std::uint8_t { kOffsets, kValues };
  TimeTransfer time_transfer = TimeTransfer::kOffsets;
  /// A Unix socket taking one-line commands while the guest runs:
  /// "snapshot FILE", "migrate ADDRESS:PORT", "stats" (see vtvmm --help).
  std::string monitor_path;
  /// Console input: stdin reaches the guest through the PL011's receive
  /// side (raw, with Ctrl-A x to quit, when stdin and stdout are a terminal).
  bool console_input = true;
  /// Which device carries the console. kPl011: the UART (two exits per
  /// byte). kVirtio: a virtio-mmio console as well (Linux's hvc0: one exit
  /// per batch), which then takes the console input; the UART stays for
  /// early output. A restore takes it from the snapshot.
  enum class Console : std::uint8_t { kPl011, kVirtio };
  Console console = Console::kPl011;
  /// How an outgoing migration secures its link (required to migrate).
  SecureLink secure_link;
  /// Testing: fails the source's side of the hand-over at a chosen step.
  HandoverHook handover_hook;
  /// The offset timeline (seed 002): every change of the guest's time this
  /// VMM makes, written to this file (atomically) once the guest runs,
  /// after each pause and at the end; empty: not recorded, unless a
  /// restored snapshot carries one, which then carries on into the
  /// snapshots this VMM takes. Snapshots carry it in their section 11.
  std::string timeline_path;
  /// This host's name in the timeline (default: the host name and the
  /// first 8 digits of its boot id, which names one boot's counter).
  std::string timeline_host;
  /// Called on the main thread once every vCPU is entering the guest (a
  /// migration destination then tells the source it runs).
  std::function<void()> on_started;
};

/// The device tree's view of `config`: what the guest is told, by the
/// machine and by `vtvmm --dtb-dump` alike.
/// vtvmm's own GIC is a GICv3 (with the virtualization interface) for a
/// guest hypervisor, a GICv2 otherwise.
inline bool UsesUserGicV3(const MachineConfig& config) {
  return config.irqchip == IrqChip::kUser && config.el2;
}

inline MachineDescription DescribeMachine(const MachineConfig& config) {
  MachineDescription d;
  d.cpus = config.cpus;
  d.ram_size = config.ram_size;
  d.irqchip = config.irqchip;
  d.user_gic_v3 = UsesUserGicV3(config);
  d.vtimer_ppi = config.vtimer_ppi;
  d.ptimer_ppi = config.ptimer_ppi;
  d.bootargs = config.bootargs;
  d.virtio_console = config.console == MachineConfig::Console::kVirtio;
  return d;
}

/// Sends one monitor command to a running vtvmm and returns its reply.
Result<std::string> MonitorCommand(const std::string& socket_path, const std::string& command);

/// What a run did, for --stats and the lab's exit-per-interrupt figures.
struct RunStats {
  std::uint64_t exits = 0;  ///< returns of a vCPU's Run (KVM_RUN), all vCPUs
  std::uint64_t mmio_exits = 0;
  std::uint64_t intr_exits = 0;       ///< kInterrupted returns (line changes, kicks)
  std::uint64_t irq_line_raises = 0;  ///< IRQ inputs raised (user irqchip)
  /// Kicks of a vCPU whose line another thread changed (user irqchip): a
  /// line is set only on its own vCPU's thread, outside Run.
  std::uint64_t irq_line_kicks = 0;
  std::uint64_t timer_line_rises = 0;       ///< rising edges of the reported timer lines
  std::uint64_t counter_offset_ioctls = 0;  ///< VM offsets set (KVM_ARM_SET_COUNTER_OFFSET)
  std::uint64_t counter_value_writes = 0;   ///< counter-value writes (TIMER_CNT/PTIMER_CNT)
  std::uint64_t timer_register_writes = 0;  ///< CTL/CVAL/CNTKCTL writes (restore)
  std::uint64_t trace_marks = 0;            ///< 8-byte writes to the trace marker
  /// The counter probes (layout::kVirtualCountProbe): "" when the guest
  /// wrote none, else " counter_probes=N probes_ahead=A
  /// probe_window_ticks=MIN..MAX probe_window_us=MIN..MAX", A the values
  /// ahead of the model, the window over the others.
  std::string probes;
  /// Per vCPU: " vcpuN_run_delay_ns=D vcpuN_stolen_ns=S", the host
  /// scheduler's run delay of its thread (schedstat) next to the stolen
  /// time its PV-time record holds ("off" without PV time).
  std::string steal;
};

/// How the guest ended.
enum class GuestEnd : std::uint8_t {
  kPowerOff,
  kReset,
  kTestExit,
  kTimeout,
  kSnapshot,
  kMigrated,
  kError
};

struct RunResult {
  GuestEnd end = GuestEnd::kError;
  int status = 0;  ///< exit status for vtvmm (test finisher value, 0 on power-off)
  std::string detail;
  bool started = false;  ///< the vCPUs entered the guest (else it never ran here)
};

class Machine {
 public:
  /// Builds the VM on `hypervisor` and loads `image` (or restores
  /// config.restore); nothing runs yet. `ram`: guest memory already holding the restored RAM (a
  /// migration's pages), used as it is instead of a copy.
  static Result<std::unique_ptr<Machine>> Create(std::unique_ptr<backend::Hypervisor> hypervisor,
                                                 const MachineConfig& config,
                                                 std::span<const std::uint8_t> image,
                                                 std::optional<GuestMemory> ram = std::nullopt);
  virtual ~Machine() = default;
  /// Runs every vCPU (one thread each) until the guest powers off, resets,
  /// exits through the test finisher, the watchdog fires, or an error. Every
  /// thread is joined on every path; failures come back as values.
  virtual Result<RunResult> Run() = 0;
  [[nodiscard]] virtual RunStats stats() const = 0;
  /// Capabilities line for logs.
  [[nodiscard]] virtual std::string Describe() const = 0;
  /// After a restore, before running: the guest-visible timer state as the
  /// backend now holds it (CTL and CVAL of each vCPU's timers, read back) and the
  /// counts the guest resumes at. Restoring one snapshot twice must give the
  /// same text.
  [[nodiscard]] virtual Result<std::string> RestoredTimeReport() = 0;
};

}  // namespace vtime::vmm
