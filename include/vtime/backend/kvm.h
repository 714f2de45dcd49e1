// The Linux KVM arm64 backend: one small type per file-descriptor kind
// (system, VM, vCPU, device), one method per ioctl, errors that carry errno
// and say which ioctl, register and vCPU. The VM-offset rules are not here:
// they live in vtime::arch::VmClock; this layer only carries them to KVM.
// Only src/backend/kvm includes <linux/kvm.h>.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vtime/backend/registers.h"
#include "vtime/fd.h"
#include "vtime/pvtime/record.h"
#include "vtime/result.h"

namespace vtime::kvm {

/// An owned file descriptor (vtime/fd.h).
using Fd = vtime::Fd;

/// KVM capability numbers vtime uses (include/uapi/linux/kvm.h). Those newer
/// than the oldest supported build headers are defined here, once.
namespace cap {
inline constexpr int kOneReg = 70;
inline constexpr int kArmPsci02 = 102;
inline constexpr int kArmUserIrq = 144;
inline constexpr int kArmVmIpaSize = 165;
inline constexpr int kArmIrqLineLayout2 = 174;
inline constexpr int kSteal = 187;  // KVM_CAP_STEAL_TIME
inline constexpr int kCounterOffset = 227;
inline constexpr int kArmEl2 = 240;
}  // namespace cap

/// ONE_REG ids: vtime's register ids (vtime/backend/registers.h) are KVM's
/// arm64 ones, so the same names serve here.
namespace reg {
using backend::regs::Core;
using backend::regs::IsTimeRegister;
using backend::regs::kCnthctlEl2;
using backend::regs::kCnthpCtl;
using backend::regs::kCnthpCval;
using backend::regs::kCnthvCtl;
using backend::regs::kCnthvCval;
using backend::regs::kCntkctlEl1;
using backend::regs::kCntpct;
using backend::regs::kCntpCtl;
using backend::regs::kCntpCval;
using backend::regs::kCntvct;
using backend::regs::kCntvCtl;
using backend::regs::kCntvCval;
using backend::regs::kCntvoffEl2;
using backend::regs::kEl2TimeRegisters;
using backend::regs::kMpidrEl1;
using backend::regs::kPc;
using backend::regs::Pstate;
using backend::regs::Size;
inline constexpr std::uint64_t kStdHypBmap = 0x6030000000160001;  // KVM_REG_ARM_STD_HYP_BMAP
/// A readable name for a register id ("TIMER_CVAL (CNTV_CVAL_EL0)").
std::string Name(std::uint64_t id);
}  // namespace reg

/// The ioctls vtime issues on descriptors it does not own (a VMM's, through
/// the C API): the same calls the classes below make on their own, with
/// `index` naming the vCPU in errors.
namespace borrowed {
/// KVM_CHECK_EXTENSION on a VM descriptor.
Result<int> CheckExtension(int vm_fd, int capability);
/// KVM_ARM_SET_COUNTER_OFFSET: the one offset of both counters (Linux 6.4).
Result<void> SetCounterOffset(int vm_fd, std::uint64_t offset);
/// KVM_GET_ONE_REG / KVM_SET_ONE_REG of a 64-bit register.
Result<std::uint64_t> GetOneReg(int vcpu_fd, unsigned index, std::uint64_t id);
Result<void> SetOneReg(int vcpu_fd, unsigned index, std::uint64_t id, std::uint64_t value);
/// KVM_HAS_DEVICE_ATTR / KVM_GET_DEVICE_ATTR on a vCPU.
Result<bool> HasAttr(int vcpu_fd, unsigned index, std::uint32_t group, std::uint64_t attr);
Result<void> GetAttr(int vcpu_fd, unsigned index, std::uint32_t group, std::uint64_t attr,
                     void* value);
}  // namespace borrowed

/// What a host's KVM offers for guest time, probed once.
struct Capabilities {
  int api_version = 0;
  bool one_reg = false;
  bool psci_0_2 = false;
  int user_irq = 0;     ///< KVM_CAP_ARM_USER_IRQ version, 0 if absent
  int vm_ipa_size = 0;  ///< max IPA bits, 0 if fixed at 40
  bool irq_line_layout_2 = false;
  bool steal_time = false;
  bool counter_offset = false;
  bool el2 = false;  ///< nested virtualization
  /// One line per capability, for logs and `vtvmm --probe`.
  [[nodiscard]] std::string Describe() const;
};

/// The vCPU feature set for KVM_ARM_VCPU_INIT.
struct VcpuInit {
  std::uint32_t target = 0;
  std::uint32_t features[7] = {};
  void Set(unsigned feature) { features[feature / 32] |= 1U << (feature % 32); }
};
namespace feature {
inline constexpr unsigned kPowerOff = 0;
inline constexpr unsigned kPsci02 = 2;
inline constexpr unsigned kPmuV3 = 3;
inline constexpr unsigned kHasEl2 = 7;
}  // namespace feature

/// Attribute groups and ids on the vCPU fd.
namespace vcpu_attr {
inline constexpr std::uint32_t kTimerCtrl = 1;
inline constexpr std::uint64_t kTimerIrqVtimer = 0;
inline constexpr std::uint64_t kTimerIrqPtimer = 1;
inline constexpr std::uint64_t kTimerIrqHvtimer = 2;
inline constexpr std::uint64_t kTimerIrqHptimer = 3;
inline constexpr std::uint32_t kPvtimeCtrl = 2;
inline constexpr std::uint64_t kPvtimeIpa = 0;
}  // namespace vcpu_attr

/// The PV stolen-time record revisions KVM serves: revision 0 only, which it
/// writes when the guest calls PV_TIME_ST; it offers no way to ask for
/// another (nor to read back which one it serves).
inline constexpr std::uint32_t kPvtimeServedRevisions[] = {pvtime::kRevision0};

/// Bits of kvm_run.s.regs.device_irq_level (KVM_CAP_ARM_USER_IRQ).
namespace irq_level {
inline constexpr std::uint64_t kVtimer = 1U << 0;
inline constexpr std::uint64_t kPtimer = 1U << 1;
inline constexpr std::uint64_t kPmu = 1U << 2;
}  // namespace irq_level

/// Why KVM_RUN returned.
enum class ExitKind : std::uint8_t {
  kMmio,
  kHypercall,
  kSystemShutdown,
  kSystemReset,
  kSystemOther,
  kInterrupted,  ///< KVM_RUN failed with EINTR (a signal, or a user-irqchip line change)
  kInternalError,
  kFailEntry,
  kOther,
};

/// A decoded exit.
struct Exit {
  ExitKind kind = ExitKind::kOther;
  std::uint32_t raw_reason = 0;
  std::uint64_t mmio_addr = 0;
  std::uint32_t mmio_len = 0;
  bool mmio_write = false;
  std::uint8_t mmio_data[8] = {};
  std::uint64_t device_irq_level = 0;  ///< timer/PMU lines (user irqchip)
};

class Device;
class Vcpu;
class Vm;

/// KVM_MEM_LOG_DIRTY_PAGES, a SetUserMemoryRegion flag.
inline constexpr std::uint32_t kMemLogDirtyPages = 1;

/// /dev/kvm.
class System {
 public:
  /// Opens the KVM device; a clear error if it is missing or not usable.
  static Result<System> Open(const std::string& path = "/dev/kvm");
  /// Wraps an already open descriptor (tests feed a bad one).
  explicit System(Fd fd) : fd_(std::move(fd)) {}

  /// KVM_GET_API_VERSION.
  Result<int> GetApiVersion() const;
  /// KVM_CHECK_EXTENSION on the system fd: 0 if absent, else its value.
  Result<int> CheckExtension(int capability) const;
  /// KVM_GET_VCPU_MMAP_SIZE: size of the kvm_run area.
  Result<std::size_t> GetVcpuMmapSize() const;
  /// All capabilities vtime cares about.
  Result<Capabilities> Probe() const;
  /// KVM_CREATE_VM with an IPA size (0 = the default 40 bits).
  Result<Vm> CreateVm(unsigned ipa_bits = 0) const;

 private:
  Fd fd_;
};

/// A VM fd.
class Vm {
 public:
  Vm(Fd fd, std::size_t run_size) : fd_(std::move(fd)), run_size_(run_size) {}
  [[nodiscard]] int fd() const { return fd_.get(); }

  /// KVM_CHECK_EXTENSION on the VM fd.
  Result<int> CheckExtension(int capability) const;
  /// KVM_SET_USER_MEMORY_REGION: map `size` bytes at host `host` to `gpa`.
  Result<void> SetUserMemoryRegion(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size,
                                   void* host, std::uint32_t flags = 0);
  /// KVM_ARM_PREFERRED_TARGET.
  Result<VcpuInit> PreferredTarget() const;
  /// KVM_CREATE_VCPU (and maps its kvm_run area).
  Result<Vcpu> CreateVcpu(unsigned index);
  /// KVM_ARM_SET_COUNTER_OFFSET: one offset for every vCPU's virtual and
  /// physical counter. EBUSY while a vCPU ioctl runs; EINVAL before 6.4.
  Result<void> SetCounterOffset(std::uint64_t offset);
  /// KVM_IRQ_LINE with the raw arm64 irq layout.
  Result<void> IrqLine(std::uint32_t irq, bool level);
  /// KVM_IRQ_LINE for a vCPU's IRQ (fiq=false) or FIQ input (user irqchip).
  Result<void> CpuIrqLine(unsigned vcpu, bool fiq, bool level);
  /// KVM_IRQ_LINE for the in-kernel vGIC's shared peripheral interrupt
  /// `intid` (32 and up): the level of a device's line.
  Result<void> SpiLine(std::uint32_t intid, bool level);
  /// KVM_GET_DIRTY_LOG: the pages of memslot `slot` written since the last
  /// call (or since logging was turned on), one bit per 4 KiB page in
  /// `bitmap`, which must hold at least that many bits; it also clears the
  /// log. Needs the slot registered with kMemLogDirtyPages.
  Result<void> GetDirtyLog(std::uint32_t slot, std::span<std::uint64_t> bitmap);
  /// KVM_CREATE_DEVICE.
  Result<Device> CreateDevice(std::uint32_t type);
  /// Creates and initialises an in-kernel GICv3 with `nr_irqs` interrupts.
  Result<Device> CreateVgicV3(std::uint64_t dist_base, std::uint64_t redist_base,
                              std::uint32_t nr_irqs);

 private:
  Fd fd_;
  std::size_t run_size_;
};

/// A device fd (vGIC).
class Device {
 public:
  explicit Device(Fd fd) : fd_(std::move(fd)) {}
  [[nodiscard]] int fd() const { return fd_.get(); }
  Result<void> SetAttr(std::uint32_t group, std::uint64_t attr, const void* value);
  Result<void> GetAttr(std::uint32_t group, std::uint64_t attr, void* value) const;
  Result<bool> HasAttr(std::uint32_t group, std::uint64_t attr) const;

 private:
  Fd fd_;
};

/// A vCPU fd and its kvm_run area.
class Vcpu {
 public:
  Vcpu(Fd fd, unsigned index, void* run, std::size_t run_size);
  Vcpu(Vcpu&& other) noexcept;
  Vcpu& operator=(Vcpu&&) = delete;
  ~Vcpu();
  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] unsigned index() const { return index_; }

  /// KVM_ARM_VCPU_INIT.
  Result<void> Init(const VcpuInit& init);
  /// KVM_GET_ONE_REG / KVM_SET_ONE_REG of a 64-bit register.
  Result<std::uint64_t> GetOneReg(std::uint64_t id) const;
  Result<void> SetOneReg(std::uint64_t id, std::uint64_t value);
  /// KVM_GET_REG_LIST.
  Result<std::vector<std::uint64_t>> GetRegList() const;
  /// KVM_GET_ONE_REG / KVM_SET_ONE_REG of a register of any size: `value`
  /// must hold exactly RegSize(id) bytes.
  Result<void> GetOneRegRaw(std::uint64_t id, std::span<std::uint8_t> value) const;
  Result<void> SetOneRegRaw(std::uint64_t id, std::span<const std::uint8_t> value);
  /// KVM_GET_MP_STATE / KVM_SET_MP_STATE (0 runnable, 5 stopped, ...).
  Result<std::uint32_t> GetMpState() const;
  Result<void> SetMpState(std::uint32_t state);
  /// KVM_{SET,GET,HAS}_DEVICE_ATTR on the vCPU.
  Result<void> SetAttr(std::uint32_t group, std::uint64_t attr, const void* value);
  Result<void> GetAttr(std::uint32_t group, std::uint64_t attr, void* value) const;
  Result<bool> HasAttr(std::uint32_t group, std::uint64_t attr) const;
  /// The timer PPI (16..31) of a timer attribute (vcpu_attr::kTimerIrq*).
  Result<void> SetTimerPpi(std::uint64_t timer, int ppi);
  Result<int> GetTimerPpi(std::uint64_t timer) const;
  /// The stolen-time record's IPA (64-byte aligned, inside a memslot).
  Result<void> SetPvtimeIpa(std::uint64_t ipa);
  Result<std::uint64_t> GetPvtimeIpa() const;
  /// KVM_RUN, decoded. EINTR is an exit (kInterrupted), not an error.
  Result<Exit> Run();
  /// Completes an MMIO read: the data the guest loads.
  void SetMmioReadData(std::uint64_t value, std::uint32_t len);
  /// Sets kvm_run.immediate_exit (a signal handler's way to stop KVM_RUN).
  void SetImmediateExit(bool value);
  /// KVM_SET_SIGNAL_MASK: the signals blocked while this vCPU runs the
  /// guest. A VMM that blocks its kick signal in the vCPU thread and leaves
  /// it open here has KVM_RUN return EINTR on a kick with the signal left
  /// pending, so no handler runs on the way out (the kick costs one exit).
  Result<void> SetSignalMask(const sigset_t& blocked_while_running);

 private:
  Fd fd_;
  unsigned index_;
  void* run_;
  std::size_t run_size_;
};

}  // namespace vtime::kvm
