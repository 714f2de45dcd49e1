#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "backend/kvm/host_counter.h"
#include "vtime/backend/guest_time.h"
#include "vtime/backend/kvm.h"
#include "vtime/backend/kvm_hypervisor.h"
#include "vtime/backend/registers.h"
#include "vtime/backend/vgic_state.h"

namespace vtime::kvm {

namespace {

namespace regs = backend::regs;

// The kick: KVM_RUN returns EINTR on it. It stays blocked in a vCPU thread
// except inside KVM_RUN (KVM_SET_SIGNAL_MASK), so no handler runs on the way
// out and the kick costs one exit; the pending signal is taken back after.
constexpr int kKickSignal = SIGUSR1;

static_assert(regs::Core(0) == 0x6030000000100000 && regs::Core(regs::kPc) == 0x6030000000100040,
              "vtime's core register ids are KVM's");
static_assert(regs::kCntvct == reg::kCntvct && regs::kCntvoffEl2 == reg::kCntvoffEl2 &&
                  regs::kMpidrEl1 == reg::kMpidrEl1,
              "vtime's time register ids are KVM's");
static_assert(backend::timer_line::kVirtual == irq_level::kVtimer &&
              backend::timer_line::kPhysical == irq_level::kPtimer);

void DrainKick() {
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, kKickSignal);
  const timespec zero{};
  while (sigtimedwait(&kick, nullptr, &zero) == kKickSignal) {
  }
}

class KvmClock final : public backend::HostClock {
 public:
  [[nodiscard]] HostCount Count() const override { return ReadHostCounter(); }
  [[nodiscard]] std::uint64_t FrequencyHz() const override { return ReadCounterFrequency(); }
  [[nodiscard]] state::CapturePair CaptureNow() const override { return CaptureHostNow(); }
};

class KvmVcpu final : public backend::Vcpu {
 public:
  KvmVcpu(kvm::Vcpu vcpu, bool el2, const backend::MmioHandler* mmio,
          const backend::TimerLineHandler* lines)
      : vcpu_(std::move(vcpu)), el2_(el2), mmio_(mmio), lines_(lines) {}

  [[nodiscard]] unsigned index() const override { return vcpu_.index(); }
  [[nodiscard]] int fd() const { return vcpu_.fd(); }

  Result<void> PrepareThread() override {
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, kKickSignal);
    pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
    sigset_t while_running;
    pthread_sigmask(SIG_BLOCK, nullptr, &while_running);
    sigdelset(&while_running, kKickSignal);
    return vcpu_.SetSignalMask(while_running);
  }
  void AttachThread(std::thread::native_handle_type thread) override {
    thread_ = thread;
    attached_.store(true, std::memory_order_release);
  }
  void RequestExit(bool on) override {
    exit_requested_ = on;
    vcpu_.SetImmediateExit(on);
  }
  void Kick() override {
    if (attached_.load(std::memory_order_acquire)) pthread_kill(thread_, kKickSignal);
  }

  Result<backend::Exit> Run() override {
    const bool requested = exit_requested_;
    auto exit = vcpu_.Run();
    if (!exit) return tl::unexpected(exit.error());
    // KVM reports the timers' levels at every exit and exits whenever they
    // change (seed 004); they reach the VMM before the MMIO is answered.
    if (!requested && *lines_) (*lines_)(index(), exit->device_irq_level);
    backend::Exit out;
    switch (exit->kind) {
      case kvm::ExitKind::kMmio: {
        out.kind = backend::ExitKind::kMmio;
        backend::MmioAccess access{exit->mmio_addr, exit->mmio_len, exit->mmio_write, 0};
        std::memcpy(&access.data, exit->mmio_data, exit->mmio_len > 8 ? 8 : exit->mmio_len);
        const std::uint64_t read = *mmio_ ? (*mmio_)(index(), access) : 0;
        if (!access.write) vcpu_.SetMmioReadData(read, exit->mmio_len);
        break;
      }
      case kvm::ExitKind::kInterrupted:
        out.kind = backend::ExitKind::kInterrupted;
        DrainKick();
        break;
      case kvm::ExitKind::kSystemShutdown:
        out.kind = backend::ExitKind::kShutdown;
        break;
      case kvm::ExitKind::kSystemReset:
        out.kind = backend::ExitKind::kReset;
        break;
      default:
        out.kind = backend::ExitKind::kOther;
        out.detail = "unexpected KVM exit reason " + std::to_string(exit->raw_reason);
        break;
    }
    return out;
  }

  Result<std::uint64_t> GetRegister(std::uint64_t id) override { return vcpu_.GetOneReg(id); }
  Result<void> SetRegister(std::uint64_t id, std::uint64_t value) override {
    return vcpu_.SetOneReg(id, value);
  }
  Result<std::vector<backend::RegisterBytes>> SaveRegisters(bool counter_values) override {
    auto list = vcpu_.GetRegList();
    if (!list) return tl::unexpected(list.error());
    std::vector<backend::RegisterBytes> out;
    for (std::uint64_t id : *list) {
      const bool by_value = counter_values && (id == regs::kCntvct || id == regs::kCntpct);
      if (regs::IsTimeRegister(id) && !by_value) continue;
      backend::RegisterBytes rv{id, std::vector<std::uint8_t>(regs::Size(id))};
      if (auto r = vcpu_.GetOneRegRaw(id, rv.bytes); !r) return tl::unexpected(r.error());
      out.push_back(std::move(rv));
    }
    return out;
  }
  Result<void> RestoreRegister(const backend::RegisterBytes& reg) override {
    return vcpu_.SetOneRegRaw(reg.id, reg.bytes);
  }
  Result<std::uint32_t> GetPowerState() override { return vcpu_.GetMpState(); }
  Result<void> SetPowerState(std::uint32_t state) override { return vcpu_.SetMpState(state); }
  Result<state::VcpuTime> CaptureTimers() override {
    return CaptureVcpuTimers(vcpu_.fd(), index(), el2_);
  }
  Result<unsigned> RestoreTimers(const state::VcpuTime& time) override {
    return RestoreVcpuTimers(vcpu_.fd(), index(), time);
  }

 private:
  kvm::Vcpu vcpu_;
  bool el2_;
  const backend::MmioHandler* mmio_;
  const backend::TimerLineHandler* lines_;
  pthread_t thread_{};
  std::atomic<bool> attached_{false};
  std::atomic<bool> exit_requested_{false};
};

class KvmVm final : public backend::Vm {
 public:
  KvmVm(kvm::Vm vm, std::optional<Device> vgic, std::uint32_t gic_irqs)
      : vm_(std::move(vm)), vgic_(std::move(vgic)), gic_irqs_(gic_irqs) {}

  Result<void> MapMemory(std::uint32_t slot, std::uint64_t gpa, std::span<std::uint8_t> host,
                         bool dirty_log) override {
    return vm_.SetUserMemoryRegion(slot, gpa, host.size(), host.data(),
                                   dirty_log ? kMemLogDirtyPages : 0);
  }
  Result<void> DirtyLog(std::uint32_t slot, std::span<std::uint64_t> bitmap) override {
    return vm_.GetDirtyLog(slot, bitmap);
  }
  void SetMmioHandler(backend::MmioHandler handler) override { mmio_ = std::move(handler); }
  void SetTimerLineHandler(backend::TimerLineHandler handler) override {
    lines_ = std::move(handler);
  }
  // KVM traps no GIC system register to user space (no user_gic_sysregs).
  void SetSysRegHandler(backend::SysRegHandler /*handler*/) override {}

  Result<std::unique_ptr<backend::Vcpu>> CreateVcpu(const backend::VcpuConfig& config) override {
    if (!target_) {
      auto target = vm_.PreferredTarget();
      if (!target) return tl::unexpected(target.error());
      target_ = *target;
    }
    auto vcpu = vm_.CreateVcpu(config.index);
    if (!vcpu) return tl::unexpected(vcpu.error());
    VcpuInit init = *target_;
    init.Set(feature::kPsci02);
    if (config.powered_off) init.Set(feature::kPowerOff);
    if (config.el2) init.Set(feature::kHasEl2);
    if (auto r = vcpu->Init(init); !r) return tl::unexpected(r.error());
    if (config.pvtime_ipa) {
      if (auto r = vcpu->SetPvtimeIpa(*config.pvtime_ipa); !r) return tl::unexpected(r.error());
    }
    if (vgic_) {
      if (auto r = vcpu->SetTimerPpi(vcpu_attr::kTimerIrqVtimer, config.vtimer_ppi); !r)
        return tl::unexpected(r.error());
      if (auto r = vcpu->SetTimerPpi(vcpu_attr::kTimerIrqPtimer, config.ptimer_ppi); !r)
        return tl::unexpected(r.error());
    }
    auto out = std::make_unique<KvmVcpu>(std::move(*vcpu), config.el2, &mmio_, &lines_);
    vcpus_.push_back(out.get());
    return out;
  }
  Result<void> FinishVcpus() override {
    if (!vgic_) return Ok();
    // KVM_DEV_ARM_VGIC_GRP_CTRL / KVM_DEV_ARM_VGIC_CTRL_INIT, after every vCPU exists.
    return vgic_->SetAttr(vgic::kGrpCtrl, vgic::kCtrlInit, nullptr);
  }

  Result<backend::OffsetWrites> ApplyOffsets(arch::VmClock& clock, std::uint64_t virtual_offset,
                                             std::uint64_t physical_offset) override {
    if (vcpus_.empty()) return Fail(ErrorCode::kBadState, "guest time: the VM has no vCPU yet");
    auto done =
        kvm::ApplyOffsets(clock, vm_.fd(), vcpus_.front()->fd(), virtual_offset, physical_offset);
    if (!done) return tl::unexpected(done.error());
    return backend::OffsetWrites{done->vm_offset_ioctls, done->counter_value_writes};
  }

  Result<void> SetIrqLine(unsigned vcpu, bool level) override {
    return vm_.CpuIrqLine(vcpu, /*fiq=*/false, level);
  }
  Result<void> SetVirtualIrqLine(unsigned /*vcpu*/, bool /*level*/) override {
    return Fail(ErrorCode::kUnsupported,
                "KVM has no virtual IRQ input from user space (a user-space GICv3)");
  }
  Result<void> SetSpiLine(std::uint32_t intid, bool level) override {
    return vm_.SpiLine(intid, level);
  }
  Result<std::vector<std::uint8_t>> SaveIrqChip() override {
    if (!vgic_) return std::vector<std::uint8_t>{};
    auto mpidrs = Mpidrs();
    if (!mpidrs) return tl::unexpected(mpidrs.error());
    auto gic = SaveVgicV3(*vgic_, *mpidrs, gic_irqs_);
    if (!gic) return tl::unexpected(gic.error());
    return EncodeVgicState(*gic);
  }
  Result<void> RestoreIrqChip(std::span<const std::uint8_t> bytes) override {
    if (!vgic_) {
      if (bytes.empty()) return Ok();
      return Fail(ErrorCode::kMalformed, "snapshot: a vGIC state for a VM without the vGIC");
    }
    auto state = DecodeVgicState(bytes);
    if (!state) return tl::unexpected(state.error());
    auto mpidrs = Mpidrs();
    if (!mpidrs) return tl::unexpected(mpidrs.error());
    return RestoreVgicV3(*vgic_, *mpidrs, *state);
  }

 private:
  Result<std::vector<std::uint64_t>> Mpidrs() {
    std::vector<std::uint64_t> out;
    for (KvmVcpu* vcpu : vcpus_) {
      auto mpidr = vcpu->GetRegister(regs::kMpidrEl1);
      if (!mpidr) return tl::unexpected(mpidr.error());
      out.push_back(*mpidr);
    }
    return out;
  }

  kvm::Vm vm_;
  std::optional<Device> vgic_;
  std::uint32_t gic_irqs_;
  std::optional<VcpuInit> target_;
  backend::MmioHandler mmio_;
  backend::TimerLineHandler lines_;
  // Owned by the VMM, which destroys them before the VM.
  std::vector<KvmVcpu*> vcpus_;
};

class KvmHypervisor final : public backend::Hypervisor {
 public:
  KvmHypervisor(System system, Capabilities caps) : system_(std::move(system)), kvm_caps_(caps) {
    caps_.counter_offset = caps.counter_offset;
    // KVM_CAP_COUNTER_OFFSET and a writable CNTPCT both came with Linux 6.4.
    caps_.physical_counter_writes = caps.counter_offset;
    caps_.backend_irqchip = true;
    caps_.user_irqchip = caps.user_irq >= 1;
    caps_.el2 = caps.el2;
    caps_.steal_time = caps.steal_time;
    caps_.pvtime_revisions.assign(std::begin(kPvtimeServedRevisions),
                                  std::end(kPvtimeServedRevisions));
  }
  [[nodiscard]] std::string Name() const override { return "kvm"; }
  [[nodiscard]] const backend::Capabilities& Caps() const override { return caps_; }
  [[nodiscard]] std::string Describe() const override { return kvm_caps_.Describe(); }
  [[nodiscard]] const backend::HostClock& Clock() const override { return clock_; }
  [[nodiscard]] std::string Explain(backend::Feature feature) const override {
    switch (feature) {
      case backend::Feature::kBackendIrqChip:
        return "KVM has no in-kernel vGICv3 here";
      case backend::Feature::kUserIrqChip:
        return "it needs KVM_CAP_ARM_USER_IRQ, which this kernel lacks";
      case backend::Feature::kEl2:
        return "no nested virtualization on this kernel (KVM_CAP_ARM_EL2 is 0; it needs a kernel "
               "with it, booted with kvm-arm.mode=nested)";
      case backend::Feature::kStealTime:
        return "PV stolen time is not supported by this kernel";
    }
    return "not supported by KVM here";
  }

  Result<std::unique_ptr<backend::Vm>> CreateVm(const backend::VmConfig& config) override {
    if (config.irqchip == backend::IrqChipKind::kUserV3) {
      return Fail(ErrorCode::kUnsupported,
                  "KVM gives user space no GICv3 system registers: a user-space irqchip is a "
                  "GICv2 here (or use the in-kernel vGICv3)");
    }
    auto vm = system_.CreateVm();
    if (!vm) return tl::unexpected(vm.error());
    std::optional<Device> vgic;
    if (config.irqchip == backend::IrqChipKind::kBackend) {
      auto gic = vm->CreateVgicV3(config.gic_dist_base, config.gic_redist_base, config.gic_irqs);
      if (!gic) return tl::unexpected(gic.error());
      vgic.emplace(std::move(*gic));
    }
    return std::make_unique<KvmVm>(std::move(*vm), std::move(vgic), config.gic_irqs);
  }

 private:
  System system_;
  Capabilities kvm_caps_;
  backend::Capabilities caps_;
  KvmClock clock_;
};

}  // namespace

Result<std::unique_ptr<backend::Hypervisor>> CreateKvmHypervisor(const std::string& path) {
  // The kick must interrupt KVM_RUN (no SA_RESTART) and do nothing else;
  // installed before any vCPU thread exists, so no kick ever meets the
  // default action (which ends the process).
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  sigemptyset(&sa.sa_mask);
  if (sigaction(kKickSignal, &sa, nullptr) != 0) {
    return Fail(ErrorCode::kSystem, "installing the vCPU kick signal handler", errno);
  }
  auto system = System::Open(path);
  if (!system) return tl::unexpected(system.error());
  auto caps = system->Probe();
  if (!caps) return tl::unexpected(caps.error());
  if (!caps->one_reg || !caps->psci_0_2) {
    return Fail(ErrorCode::kUnsupported, "this KVM lacks ONE_REG or PSCI 0.2");
  }
  return std::make_unique<KvmHypervisor>(std::move(*system), *caps);
}

}  // namespace vtime::kvm
