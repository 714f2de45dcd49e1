// The only file that talks to KVM. Constants newer than the build host's
// headers (Debian 12's are 6.1) are defined below, each once.
#include "vtime/backend/kvm.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

#include "vtime/hex.h"

#ifndef KVM_ARM_SET_COUNTER_OFFSET
// Linux 6.4: one counter offset for the whole VM.
struct kvm_arm_counter_offset {
  __u64 counter_offset;
  __u64 reserved;
};
#define KVM_ARM_SET_COUNTER_OFFSET _IOW(KVMIO, 0xb5, struct kvm_arm_counter_offset)
#endif
static_assert(sizeof(kvm_arm_counter_offset) == 16);
static_assert(KVM_ARM_SET_COUNTER_OFFSET == 0x4010AEB5);
static_assert(KVM_IRQ_LINE == 0x4008AE61);

// Every KVM number vtime/backend/kvm.h defines is the header's, wherever the
// build host's <linux/kvm.h> has it (the #ifdef ones are newer than 6.1).
namespace vtime::kvm {
static_assert(cap::kOneReg == KVM_CAP_ONE_REG);
static_assert(cap::kArmPsci02 == KVM_CAP_ARM_PSCI_0_2);
static_assert(cap::kArmUserIrq == KVM_CAP_ARM_USER_IRQ);
static_assert(cap::kArmVmIpaSize == KVM_CAP_ARM_VM_IPA_SIZE);
static_assert(cap::kArmIrqLineLayout2 == KVM_CAP_ARM_IRQ_LINE_LAYOUT_2);
static_assert(cap::kSteal == KVM_CAP_STEAL_TIME);
#ifdef KVM_CAP_COUNTER_OFFSET
static_assert(cap::kCounterOffset == KVM_CAP_COUNTER_OFFSET);
#endif
#ifdef KVM_CAP_ARM_EL2
static_assert(cap::kArmEl2 == KVM_CAP_ARM_EL2);
#endif

static_assert(reg::kCntvCtl == KVM_REG_ARM_TIMER_CTL);
static_assert(reg::kCntvct == KVM_REG_ARM_TIMER_CNT);
static_assert(reg::kCntvCval == KVM_REG_ARM_TIMER_CVAL);
static_assert(reg::kCntpCtl == KVM_REG_ARM_PTIMER_CTL);
static_assert(reg::kCntpCval == KVM_REG_ARM_PTIMER_CVAL);
static_assert(reg::kCntpct == KVM_REG_ARM_PTIMER_CNT);
static_assert(reg::kCntkctlEl1 == ARM64_SYS_REG(3, 0, 14, 1, 0));  // CNTKCTL_EL1
static_assert(reg::kMpidrEl1 == ARM64_SYS_REG(3, 0, 0, 0, 5));     // MPIDR_EL1
static_assert(reg::kStdHypBmap == KVM_REG_ARM_STD_HYP_BMAP);

static_assert(feature::kPowerOff == KVM_ARM_VCPU_POWER_OFF);
static_assert(feature::kPsci02 == KVM_ARM_VCPU_PSCI_0_2);
static_assert(feature::kPmuV3 == KVM_ARM_VCPU_PMU_V3);
#ifdef KVM_ARM_VCPU_HAS_EL2
static_assert(feature::kHasEl2 == KVM_ARM_VCPU_HAS_EL2);
#endif
static_assert(sizeof(VcpuInit::features) == sizeof(kvm_vcpu_init::features));

static_assert(vcpu_attr::kTimerCtrl == KVM_ARM_VCPU_TIMER_CTRL);
static_assert(vcpu_attr::kTimerIrqVtimer == KVM_ARM_VCPU_TIMER_IRQ_VTIMER);
static_assert(vcpu_attr::kTimerIrqPtimer == KVM_ARM_VCPU_TIMER_IRQ_PTIMER);
#ifdef KVM_ARM_VCPU_TIMER_IRQ_HVTIMER
static_assert(vcpu_attr::kTimerIrqHvtimer == KVM_ARM_VCPU_TIMER_IRQ_HVTIMER);
#endif
#ifdef KVM_ARM_VCPU_TIMER_IRQ_HPTIMER
static_assert(vcpu_attr::kTimerIrqHptimer == KVM_ARM_VCPU_TIMER_IRQ_HPTIMER);
#endif
static_assert(vcpu_attr::kPvtimeCtrl == KVM_ARM_VCPU_PVTIME_CTRL);
static_assert(vcpu_attr::kPvtimeIpa == KVM_ARM_VCPU_PVTIME_IPA);

static_assert(irq_level::kVtimer == KVM_ARM_DEV_EL1_VTIMER);
static_assert(irq_level::kPtimer == KVM_ARM_DEV_EL1_PTIMER);
static_assert(irq_level::kPmu == KVM_ARM_DEV_PMU);

static_assert(kMemLogDirtyPages == KVM_MEM_LOG_DIRTY_PAGES);
}  // namespace vtime::kvm

namespace vtime::kvm {
namespace {

// Every syscall failure carries errno and what was being done.
tl::unexpected<Error> SysFail(std::string context, int err = errno) {
  return Fail(ErrorCode::kSystem, std::move(context), err);
}

// ioctl, retried on EINTR except where the caller wants to see it.
int Ioctl(int fd, unsigned long request, void* arg) {
  int r;
  do {
    r = ::ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

int IoctlValue(int fd, unsigned long request, unsigned long arg) {
  int r;
  do {
    r = ::ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

std::string OnVcpu(unsigned index) { return " on vCPU " + std::to_string(index); }

Result<void> AttrIoctl(int fd, unsigned long request, const char* what, std::uint32_t group,
                       std::uint64_t attr, const void* value, const std::string& where) {
  kvm_device_attr a{};
  a.group = group;
  a.attr = attr;
  a.addr = reinterpret_cast<std::uint64_t>(value);
  if (Ioctl(fd, request, &a) < 0) {
    return SysFail(std::string(what) + " group " + std::to_string(group) + " attr " +
                   std::to_string(attr) + where);
  }
  return Ok();
}

Result<bool> HasAttrIoctl(int fd, std::uint32_t group, std::uint64_t attr,
                          const std::string& where) {
  kvm_device_attr a{};
  a.group = group;
  a.attr = attr;
  if (Ioctl(fd, KVM_HAS_DEVICE_ATTR, &a) == 0) return true;
  if (errno == ENXIO) return false;
  return SysFail("KVM_HAS_DEVICE_ATTR group " + std::to_string(group) + " attr " +
                 std::to_string(attr) + where);
}

}  // namespace

namespace reg {

// vtime's ids (vtime/backend/registers.h) are these.
static_assert(Core(0) == (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
                          (offsetof(kvm_regs, regs.regs) / sizeof(__u32))));
static_assert(Core(kPc) == (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
                            (offsetof(kvm_regs, regs.pc) / sizeof(__u32))));
static_assert(Core(31) == (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
                           (offsetof(kvm_regs, regs.sp) / sizeof(__u32))));
static_assert(Pstate() == (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
                           (offsetof(kvm_regs, regs.pstate) / sizeof(__u32))));
static_assert(backend::regs::SpEl1() == (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
                                         (offsetof(kvm_regs, sp_el1) / sizeof(__u32))));
static_assert(backend::regs::ElrEl1() == (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
                                          (offsetof(kvm_regs, elr_el1) / sizeof(__u32))));
static_assert(backend::regs::SpsrEl1() == (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |
                                           (offsetof(kvm_regs, spsr) / sizeof(__u32))));
static_assert(backend::regs::Vreg(0) == (KVM_REG_ARM64 | KVM_REG_SIZE_U128 | KVM_REG_ARM_CORE |
                                         (offsetof(kvm_regs, fp_regs.vregs) / sizeof(__u32))));
static_assert(backend::regs::Fpsr() == (KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_CORE |
                                        (offsetof(kvm_regs, fp_regs.fpsr) / sizeof(__u32))));
static_assert(backend::regs::Fpcr() == (KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_CORE |
                                        (offsetof(kvm_regs, fp_regs.fpcr) / sizeof(__u32))));

std::string Name(std::uint64_t id) {
  switch (id) {
    case kCntvCtl:
      return "TIMER_CTL (CNTV_CTL_EL0)";
    case kCntvct:
      return "TIMER_CNT (CNTVCT_EL0)";
    case kCntvCval:
      return "TIMER_CVAL (CNTV_CVAL_EL0)";
    case kCntpCtl:
      return "PTIMER_CTL (CNTP_CTL_EL0)";
    case kCntpCval:
      return "PTIMER_CVAL (CNTP_CVAL_EL0)";
    case kCntpct:
      return "PTIMER_CNT (CNTPCT_EL0)";
    case kCntkctlEl1:
      return "CNTKCTL_EL1";
    case kCntvoffEl2:
      return "CNTVOFF_EL2";
    case kCnthctlEl2:
      return "CNTHCTL_EL2";
    case kCnthpCtl:
      return "CNTHP_CTL_EL2";
    case kCnthpCval:
      return "CNTHP_CVAL_EL2";
    case kCnthvCtl:
      return "CNTHV_CTL_EL2";
    case kCnthvCval:
      return "CNTHV_CVAL_EL2";
    case kStdHypBmap:
      return "STD_HYP_BMAP";
    default:
      break;
  }
  if (id == Core(kPc)) return "PC";
  if (id == Pstate()) return "PSTATE";
  for (unsigned n = 0; n < 32; ++n) {
    if (id == Core(n)) return n == 31 ? "SP" : "X" + std::to_string(n);
  }
  return "register " + Hex(id);
}

}  // namespace reg

std::string Capabilities::Describe() const {
  auto yes = [](bool b) { return b ? std::string("yes") : std::string("no"); };
  return "KVM API version " + std::to_string(api_version) + "\n" + "ONE_REG: " + yes(one_reg) +
         "\n" + "PSCI 0.2: " + yes(psci_0_2) + "\n" +
         "ARM_USER_IRQ: " + (user_irq ? "version " + std::to_string(user_irq) : "no") + "\n" +
         "VM IPA size: " + (vm_ipa_size ? std::to_string(vm_ipa_size) + " bits" : "40 bits") +
         "\n" + "IRQ_LINE layout 2: " + yes(irq_line_layout_2) + "\n" +
         "STEAL_TIME (PV time): " + yes(steal_time) + "\n" +
         "COUNTER_OFFSET: " + yes(counter_offset) + "\n" +
         "nested virtualization (EL2): " + yes(el2) + "\n";
}

Result<System> System::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::string hint;
    if (err == ENOENT) hint = ": no KVM on this host (is this an arm64 host with KVM enabled?)";
    if (err == EACCES) hint = ": permission denied (run as root or join the kvm group)";
    return SysFail("opening " + path + hint, err);
  }
  System system{Fd(fd)};
  auto version = system.GetApiVersion();
  if (!version) return tl::unexpected(version.error());
  if (*version != KVM_API_VERSION) {
    return Fail(ErrorCode::kUnsupported, path + ": KVM API version " + std::to_string(*version) +
                                             ", expected " + std::to_string(KVM_API_VERSION));
  }
  return system;
}

Result<int> System::GetApiVersion() const {
  const int r = IoctlValue(fd_.get(), KVM_GET_API_VERSION, 0);
  if (r < 0) return SysFail("KVM_GET_API_VERSION");
  return r;
}

Result<int> System::CheckExtension(int capability) const {
  const int r = IoctlValue(fd_.get(), KVM_CHECK_EXTENSION, static_cast<unsigned long>(capability));
  if (r < 0) return SysFail("KVM_CHECK_EXTENSION " + std::to_string(capability));
  return r;
}

Result<std::size_t> System::GetVcpuMmapSize() const {
  const int r = IoctlValue(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (r < 0) return SysFail("KVM_GET_VCPU_MMAP_SIZE");
  return static_cast<std::size_t>(r);
}

Result<Capabilities> System::Probe() const {
  Capabilities caps;
  auto version = GetApiVersion();
  if (!version) return tl::unexpected(version.error());
  caps.api_version = *version;
  auto check = [this](int c) -> Result<int> { return CheckExtension(c); };
  struct Item {
    int cap;
    int* out;
  };
  int one_reg = 0, psci = 0, layout2 = 0, steal = 0, offset = 0, el2 = 0;
  for (const Item& item :
       {Item{cap::kOneReg, &one_reg}, Item{cap::kArmPsci02, &psci},
        Item{cap::kArmUserIrq, &caps.user_irq}, Item{cap::kArmVmIpaSize, &caps.vm_ipa_size},
        Item{cap::kArmIrqLineLayout2, &layout2}, Item{cap::kSteal, &steal},
        Item{cap::kCounterOffset, &offset}, Item{cap::kArmEl2, &el2}}) {
    auto r = check(item.cap);
    if (!r) return tl::unexpected(r.error());
    *item.out = *r;
  }
  caps.one_reg = one_reg > 0;
  caps.psci_0_2 = psci > 0;
  caps.irq_line_layout_2 = layout2 > 0;
  caps.steal_time = steal > 0;
  caps.counter_offset = offset > 0;
  caps.el2 = el2 > 0;
  return caps;
}

Result<Vm> System::CreateVm(unsigned ipa_bits) const {
  auto run_size = GetVcpuMmapSize();
  if (!run_size) return tl::unexpected(run_size.error());
  const int fd = IoctlValue(fd_.get(), KVM_CREATE_VM, KVM_VM_TYPE_ARM_IPA_SIZE(ipa_bits));
  if (fd < 0) return SysFail("KVM_CREATE_VM (IPA bits " + std::to_string(ipa_bits) + ")");
  return Vm(Fd(fd), *run_size);
}

Result<int> Vm::CheckExtension(int capability) const {
  return borrowed::CheckExtension(fd_.get(), capability);
}

Result<void> Vm::SetUserMemoryRegion(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size,
                                     void* host, std::uint32_t flags) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<std::uint64_t>(host);
  if (Ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    return SysFail("KVM_SET_USER_MEMORY_REGION slot " + std::to_string(slot) + " at " + Hex(gpa) +
                   " size " + Hex(size));
  }
  return Ok();
}

Result<VcpuInit> Vm::PreferredTarget() const {
  kvm_vcpu_init init{};
  if (Ioctl(fd_.get(), KVM_ARM_PREFERRED_TARGET, &init) < 0) {
    return SysFail("KVM_ARM_PREFERRED_TARGET");
  }
  VcpuInit out;
  out.target = init.target;
  for (int i = 0; i < 7; ++i) out.features[i] = init.features[i];
  return out;
}

Result<Vcpu> Vm::CreateVcpu(unsigned index) {
  const int fd = IoctlValue(fd_.get(), KVM_CREATE_VCPU, index);
  if (fd < 0) return SysFail("KVM_CREATE_VCPU" + OnVcpu(index));
  Fd owned(fd);
  void* run = ::mmap(nullptr, run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (run == MAP_FAILED) return SysFail("mmap of kvm_run" + OnVcpu(index));
  return Vcpu(std::move(owned), index, run, run_size_);
}

Result<void> Vm::SetCounterOffset(std::uint64_t offset) {
  return borrowed::SetCounterOffset(fd_.get(), offset);
}

namespace borrowed {

Result<int> CheckExtension(int vm_fd, int capability) {
  const int r = IoctlValue(vm_fd, KVM_CHECK_EXTENSION, static_cast<unsigned long>(capability));
  if (r < 0) return SysFail("KVM_CHECK_EXTENSION (VM) " + std::to_string(capability));
  return r;
}

Result<std::uint64_t> GetOneReg(int vcpu_fd, unsigned index, std::uint64_t id) {
  std::uint64_t value = 0;
  kvm_one_reg r{id, reinterpret_cast<std::uint64_t>(&value)};
  if (Ioctl(vcpu_fd, KVM_GET_ONE_REG, &r) < 0) {
    return SysFail("KVM_GET_ONE_REG " + reg::Name(id) + OnVcpu(index));
  }
  return value;
}

Result<void> SetOneReg(int vcpu_fd, unsigned index, std::uint64_t id, std::uint64_t value) {
  kvm_one_reg r{id, reinterpret_cast<std::uint64_t>(&value)};
  if (Ioctl(vcpu_fd, KVM_SET_ONE_REG, &r) < 0) {
    return SysFail("KVM_SET_ONE_REG " + reg::Name(id) + " = " + Hex(value) + OnVcpu(index));
  }
  return Ok();
}

Result<bool> HasAttr(int vcpu_fd, unsigned index, std::uint32_t group, std::uint64_t attr) {
  return HasAttrIoctl(vcpu_fd, group, attr, OnVcpu(index));
}

Result<void> GetAttr(int vcpu_fd, unsigned index, std::uint32_t group, std::uint64_t attr,
                     void* value) {
  return AttrIoctl(vcpu_fd, KVM_GET_DEVICE_ATTR, "KVM_GET_DEVICE_ATTR", group, attr, value,
                   OnVcpu(index));
}

Result<void> SetCounterOffset(int vm_fd, std::uint64_t offset) {
  kvm_arm_counter_offset arg{};
  arg.counter_offset = offset;
  arg.reserved = 0;
  if (Ioctl(vm_fd, KVM_ARM_SET_COUNTER_OFFSET, &arg) < 0) {
    const int err = errno;
    std::string hint;
    if (err == EBUSY) hint = ": a vCPU ioctl is in flight (pause every vCPU first)";
    if (err == EINVAL) hint = ": not supported by this kernel (needs Linux 6.4)";
    return SysFail("KVM_ARM_SET_COUNTER_OFFSET " + Hex(offset) + hint, err);
  }
  return Ok();
}

}  // namespace borrowed

Result<void> Vm::IrqLine(std::uint32_t irq, bool level) {
  kvm_irq_level arg{};
  arg.irq = irq;
  arg.level = level ? 1 : 0;
  if (Ioctl(fd_.get(), KVM_IRQ_LINE, &arg) < 0) {
    return SysFail("KVM_IRQ_LINE irq " + Hex(irq) + " level " + std::to_string(arg.level));
  }
  return Ok();
}

Result<void> Vm::GetDirtyLog(std::uint32_t slot, std::span<std::uint64_t> bitmap) {
  kvm_dirty_log log{};
  log.slot = slot;
  log.dirty_bitmap = bitmap.data();
  if (Ioctl(fd_.get(), KVM_GET_DIRTY_LOG, &log) < 0) {
    return SysFail("KVM_GET_DIRTY_LOG slot " + std::to_string(slot));
  }
  return Ok();
}

Result<void> Vm::SpiLine(std::uint32_t intid, bool level) {
  // irq field: type[27:24] = SPI, id[15:0] = the INTID itself.
  return IrqLine((std::uint32_t{KVM_ARM_IRQ_TYPE_SPI} << KVM_ARM_IRQ_TYPE_SHIFT) | (intid & 0xffff),
                 level);
}

Result<void> Vm::CpuIrqLine(unsigned vcpu, bool fiq, bool level) {
  // irq field: vcpu2_index[31:28] type[27:24] vcpu_index[23:16] id[15:0].
  const std::uint32_t irq =
      ((vcpu / 256U) << 28) | (std::uint32_t{KVM_ARM_IRQ_TYPE_CPU} << KVM_ARM_IRQ_TYPE_SHIFT) |
      ((vcpu % 256U) << 16) | (fiq ? KVM_ARM_IRQ_CPU_FIQ : KVM_ARM_IRQ_CPU_IRQ);
  return IrqLine(irq, level);
}

Result<Device> Vm::CreateDevice(std::uint32_t type) {
  kvm_create_device arg{};
  arg.type = type;
  if (Ioctl(fd_.get(), KVM_CREATE_DEVICE, &arg) < 0) {
    return SysFail("KVM_CREATE_DEVICE type " + std::to_string(type));
  }
  return Device(Fd(static_cast<int>(arg.fd)));
}

Result<Device> Vm::CreateVgicV3(std::uint64_t dist_base, std::uint64_t redist_base,
                                std::uint32_t nr_irqs) {
  auto dev = CreateDevice(KVM_DEV_TYPE_ARM_VGIC_V3);
  if (!dev) return dev;
  if (auto r = dev->SetAttr(KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &dist_base); !r)
    return tl::unexpected(r.error());
  if (auto r = dev->SetAttr(KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist_base);
      !r)
    return tl::unexpected(r.error());
  if (auto r = dev->SetAttr(KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs); !r)
    return tl::unexpected(r.error());
  return dev;
}

Result<void> Device::SetAttr(std::uint32_t group, std::uint64_t attr, const void* value) {
  return AttrIoctl(fd_.get(), KVM_SET_DEVICE_ATTR, "KVM_SET_DEVICE_ATTR", group, attr, value,
                   " on device");
}

Result<void> Device::GetAttr(std::uint32_t group, std::uint64_t attr, void* value) const {
  return AttrIoctl(fd_.get(), KVM_GET_DEVICE_ATTR, "KVM_GET_DEVICE_ATTR", group, attr, value,
                   " on device");
}

Result<bool> Device::HasAttr(std::uint32_t group, std::uint64_t attr) const {
  return HasAttrIoctl(fd_.get(), group, attr, " on device");
}

Vcpu::Vcpu(Fd fd, unsigned index, void* run, std::size_t run_size)
    : fd_(std::move(fd)), index_(index), run_(run), run_size_(run_size) {}

Vcpu::Vcpu(Vcpu&& other) noexcept
    : fd_(std::move(other.fd_)),
      index_(other.index_),
      run_(std::exchange(other.run_, nullptr)),
      run_size_(other.run_size_) {}

Vcpu::~Vcpu() {
  if (run_ != nullptr) ::munmap(run_, run_size_);
}

Result<void> Vcpu::Init(const VcpuInit& init) {
  kvm_vcpu_init arg{};
  arg.target = init.target;
  for (int i = 0; i < 7; ++i) arg.features[i] = init.features[i];
  if (Ioctl(fd_.get(), KVM_ARM_VCPU_INIT, &arg) < 0) {
    return SysFail("KVM_ARM_VCPU_INIT target " + std::to_string(init.target) + OnVcpu(index_));
  }
  return Ok();
}

Result<std::uint64_t> Vcpu::GetOneReg(std::uint64_t id) const {
  return borrowed::GetOneReg(fd_.get(), index_, id);
}

Result<void> Vcpu::SetOneReg(std::uint64_t id, std::uint64_t value) {
  return borrowed::SetOneReg(fd_.get(), index_, id, value);
}

Result<std::vector<std::uint64_t>> Vcpu::GetRegList() const {
  kvm_reg_list probe{};
  probe.n = 0;
  if (::ioctl(fd_.get(), KVM_GET_REG_LIST, &probe) == 0 || errno != E2BIG) {
    return SysFail("KVM_GET_REG_LIST (size)" + OnVcpu(index_));
  }
  std::vector<std::uint64_t> storage(probe.n + 1);
  auto* list = reinterpret_cast<kvm_reg_list*>(storage.data());
  list->n = probe.n;
  if (Ioctl(fd_.get(), KVM_GET_REG_LIST, list) < 0) {
    return SysFail("KVM_GET_REG_LIST" + OnVcpu(index_));
  }
  const auto count = static_cast<std::ptrdiff_t>(list->n);
  return std::vector<std::uint64_t>(storage.begin() + 1, storage.begin() + 1 + count);
}

Result<void> Vcpu::GetOneRegRaw(std::uint64_t id, std::span<std::uint8_t> value) const {
  if (value.size() != reg::Size(id)) {
    return Fail(ErrorCode::kInvalidArgument, "KVM_GET_ONE_REG " + reg::Name(id) + ": buffer of " +
                                                 std::to_string(value.size()) + " bytes for a " +
                                                 std::to_string(reg::Size(id)) + "-byte register");
  }
  kvm_one_reg r{id, reinterpret_cast<std::uint64_t>(value.data())};
  if (Ioctl(fd_.get(), KVM_GET_ONE_REG, &r) < 0) {
    return SysFail("KVM_GET_ONE_REG " + reg::Name(id) + OnVcpu(index_));
  }
  return Ok();
}

Result<void> Vcpu::SetOneRegRaw(std::uint64_t id, std::span<const std::uint8_t> value) {
  if (value.size() != reg::Size(id)) {
    return Fail(ErrorCode::kInvalidArgument, "KVM_SET_ONE_REG " + reg::Name(id) + ": " +
                                                 std::to_string(value.size()) + " bytes for a " +
                                                 std::to_string(reg::Size(id)) + "-byte register");
  }
  kvm_one_reg r{id, reinterpret_cast<std::uint64_t>(value.data())};
  if (Ioctl(fd_.get(), KVM_SET_ONE_REG, &r) < 0) {
    return SysFail("KVM_SET_ONE_REG " + reg::Name(id) + OnVcpu(index_));
  }
  return Ok();
}

Result<std::uint32_t> Vcpu::GetMpState() const {
  kvm_mp_state st{};
  if (Ioctl(fd_.get(), KVM_GET_MP_STATE, &st) < 0)
    return SysFail("KVM_GET_MP_STATE" + OnVcpu(index_));
  return st.mp_state;
}

Result<void> Vcpu::SetMpState(std::uint32_t state) {
  kvm_mp_state st{};
  st.mp_state = state;
  if (Ioctl(fd_.get(), KVM_SET_MP_STATE, &st) < 0) {
    return SysFail("KVM_SET_MP_STATE " + std::to_string(state) + OnVcpu(index_));
  }
  return Ok();
}

Result<void> Vcpu::SetAttr(std::uint32_t group, std::uint64_t attr, const void* value) {
  return AttrIoctl(fd_.get(), KVM_SET_DEVICE_ATTR, "KVM_SET_DEVICE_ATTR", group, attr, value,
                   OnVcpu(index_));
}

Result<void> Vcpu::GetAttr(std::uint32_t group, std::uint64_t attr, void* value) const {
  return borrowed::GetAttr(fd_.get(), index_, group, attr, value);
}

Result<bool> Vcpu::HasAttr(std::uint32_t group, std::uint64_t attr) const {
  return borrowed::HasAttr(fd_.get(), index_, group, attr);
}

Result<void> Vcpu::SetTimerPpi(std::uint64_t timer, int ppi) {
  if (ppi < 16 || ppi > 31) {
    return Fail(ErrorCode::kOutOfRange,
                "timer PPI " + std::to_string(ppi) + " is not a PPI (16..31)" + OnVcpu(index_));
  }
  return SetAttr(vcpu_attr::kTimerCtrl, timer, &ppi);
}

Result<int> Vcpu::GetTimerPpi(std::uint64_t timer) const {
  int ppi = 0;
  if (auto r = GetAttr(vcpu_attr::kTimerCtrl, timer, &ppi); !r) return tl::unexpected(r.error());
  return ppi;
}

Result<void> Vcpu::SetPvtimeIpa(std::uint64_t ipa) {
  return SetAttr(vcpu_attr::kPvtimeCtrl, vcpu_attr::kPvtimeIpa, &ipa);
}

Result<std::uint64_t> Vcpu::GetPvtimeIpa() const {
  std::uint64_t ipa = 0;
  if (auto r = GetAttr(vcpu_attr::kPvtimeCtrl, vcpu_attr::kPvtimeIpa, &ipa); !r) {
    return tl::unexpected(r.error());
  }
  return ipa;
}

Result<Exit> Vcpu::Run() {
  auto* run = static_cast<kvm_run*>(run_);
  const int r = ::ioctl(fd_.get(), KVM_RUN, 0);
  Exit exit;
  exit.device_irq_level = run->s.regs.device_irq_level;
  if (r < 0) {
    if (errno == EINTR) {
      exit.kind = ExitKind::kInterrupted;
      exit.raw_reason = KVM_EXIT_INTR;
      return exit;
    }
    return SysFail("KVM_RUN" + OnVcpu(index_));
  }
  exit.raw_reason = run->exit_reason;
  switch (run->exit_reason) {
    case KVM_EXIT_MMIO:
      exit.kind = ExitKind::kMmio;
      exit.mmio_addr = run->mmio.phys_addr;
      exit.mmio_len = run->mmio.len;
      exit.mmio_write = run->mmio.is_write != 0;
      std::memcpy(exit.mmio_data, run->mmio.data, sizeof exit.mmio_data);
      break;
    case KVM_EXIT_HYPERCALL:
      exit.kind = ExitKind::kHypercall;
      break;
    case KVM_EXIT_SYSTEM_EVENT:
      if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
        exit.kind = ExitKind::kSystemShutdown;
      } else if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
        exit.kind = ExitKind::kSystemReset;
      } else {
        exit.kind = ExitKind::kSystemOther;
      }
      break;
    case KVM_EXIT_INTR:
      exit.kind = ExitKind::kInterrupted;
      break;
    case KVM_EXIT_INTERNAL_ERROR:
      exit.kind = ExitKind::kInternalError;
      break;
    case KVM_EXIT_FAIL_ENTRY:
      exit.kind = ExitKind::kFailEntry;
      break;
    default:
      exit.kind = ExitKind::kOther;
      break;
  }
  return exit;
}

void Vcpu::SetMmioReadData(std::uint64_t value, std::uint32_t len) {
  auto* run = static_cast<kvm_run*>(run_);
  const std::uint32_t n = len > 8 ? 8 : len;
  std::memcpy(run->mmio.data, &value, n);  // little endian, as the guest loads it
}

void Vcpu::SetImmediateExit(bool value) {
  static_cast<kvm_run*>(run_)->immediate_exit = value ? 1 : 0;
}

Result<void> Vcpu::SetSignalMask(const sigset_t& blocked_while_running) {
  // The kernel's sigset for arm64 is 64 bits; glibc's sigset_t is larger
  // and starts with the same bits.
  constexpr std::uint32_t kKernelSigsetBytes = 8;
  alignas(kvm_signal_mask) std::uint8_t buf[sizeof(kvm_signal_mask) + kKernelSigsetBytes] = {};
  auto* mask = reinterpret_cast<kvm_signal_mask*>(buf);
  mask->len = kKernelSigsetBytes;
  std::memcpy(buf + sizeof(kvm_signal_mask), &blocked_while_running, kKernelSigsetBytes);
  if (::ioctl(fd_.get(), KVM_SET_SIGNAL_MASK, mask) < 0) {
    return SysFail("KVM_SET_SIGNAL_MASK" + OnVcpu(index_));
  }
  return Ok();
}

}  // namespace vtime::kvm
