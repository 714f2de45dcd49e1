#include "unit/backend/emu_machine.h"

#include <sys/mman.h>

#include <condition_variable>
#include <cstring>
#include <thread>

#include "vmm/boot.h"
#include "vmm/layout.h"
#include "vtime/backend/registers.h"

namespace vtime::emu::testing {
namespace {

namespace regs = backend::regs;
constexpr std::uint64_t kPstateEl1hMasked = 0x3c5;
constexpr std::uint64_t kPstateEl2hMasked = 0x3c9;

}  // namespace

HostMemory::HostMemory(std::size_t size) : size_(size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  data_ = p == MAP_FAILED ? nullptr : static_cast<std::uint8_t*>(p);
  if (data_ == nullptr) size_ = 0;
}

HostMemory::~HostMemory() {
  if (data_ != nullptr) munmap(data_, size_);
}

Result<std::unique_ptr<Machine>> Machine::Create(const MachineConfig& config) {
  std::unique_ptr<Machine> m(new Machine(config));
  auto hv = CreateEmuHypervisor();
  if (!hv) return tl::unexpected(hv.error());
  m->hv_ = std::move(*hv);
  m->ram_ = std::make_unique<HostMemory>(config.ram_size);
  m->pvtime_ = std::make_unique<HostMemory>(vmm::layout::kPvtimeSize);
  if (m->ram_->bytes().empty() || m->pvtime_->bytes().empty()) {
    return Fail(ErrorCode::kSystem, "test machine: no memory for guest RAM");
  }
  m->offset_ = config.vm_offset.value_or(m->hv_->Clock().Count().value);
  if (auto r = m->Build(); !r) return tl::unexpected(r.error());
  return m;
}

Machine::~Machine() {
  vcpus_.clear();
  vm_.reset();
}

Result<void> Machine::Build() {
  vcpus_.clear();
  vm_.reset();
  clock_ = arch::VmClock{};
  auto vm = hv_->CreateVm(backend::VmConfig{.irqchip = backend::IrqChipKind::kUser});
  if (!vm) return tl::unexpected(vm.error());
  vm_ = std::move(*vm);
  if (auto r = vm_->MapMemory(0, vmm::layout::kRam, ram_->bytes()); !r) return r;
  if (auto r = vm_->MapMemory(1, vmm::layout::kPvtime, pvtime_->bytes()); !r) return r;
  vm_->SetMmioHandler(
      [this](unsigned vcpu, const backend::MmioAccess& access) { return Mmio(vcpu, access); });
  vm_->SetTimerLineHandler([this](unsigned vcpu, std::uint64_t levels) {
    std::lock_guard lock(mu_);
    ++line_reports_;
    gic_->SetPpiLevel(vcpu, static_cast<unsigned>(vmm::layout::kVtimerPpi),
                      (levels & backend::timer_line::kVirtual) != 0);
    gic_->SetPpiLevel(vcpu, static_cast<unsigned>(vmm::layout::kPtimerPpi),
                      (levels & backend::timer_line::kPhysical) != 0);
    UpdateIrqLines();
  });
  auto gic = vmm::UserGic::Create(vmm::UserGicConfig{config_.cpus, 64});
  if (!gic) return tl::unexpected(gic.error());
  gic_.emplace(std::move(*gic));
  irq_lines_.assign(config_.cpus, false);
  for (unsigned i = 0; i < config_.cpus; ++i) {
    backend::VcpuConfig vc;
    vc.index = i;
    vc.powered_off = i > 0;
    vc.el2 = config_.el2;
    if (config_.pvtime) vc.pvtime_ipa = vmm::layout::kPvtime + pvtime::RecordOffset(i);
    auto vcpu = vm_->CreateVcpu(vc);
    if (!vcpu) return tl::unexpected(vcpu.error());
    vcpus_.push_back(std::move(*vcpu));
  }
  if (auto r = vm_->FinishVcpus(); !r) return r;
  auto applied = vm_->ApplyOffsets(clock_, offset_, offset_);
  if (!applied) return tl::unexpected(applied.error());
  return Ok();
}

Result<void> Machine::LoadProgram(std::span<const std::uint8_t> elf) {
  program_.assign(elf.begin(), elf.end());
  return Boot();
}

Result<void> Machine::Boot() {
  std::memset(ram_->bytes().data(), 0, ram_->bytes().size());
  vmm::BootRequest req;
  req.image = program_;
  req.format = vmm::ImageFormat::kProgram;
  req.machine.cpus = config_.cpus;
  req.machine.ram_size = config_.ram_size;
  req.machine.irqchip = vmm::IrqChip::kUser;
  auto boot = vmm::LoadBoot(req, vmm::RamView{vmm::layout::kRam, ram_->bytes()});
  if (!boot) return tl::unexpected(boot.error());
  entry_ = boot->image.entry;
  x0_ = boot->data.dtb;
  if (auto r = vcpus_[0]->SetRegister(regs::Pstate(),
                                      config_.el2 ? kPstateEl2hMasked : kPstateEl1hMasked);
      !r)
    return r;
  if (auto r = vcpus_[0]->SetRegister(regs::Core(0), x0_); !r) return r;
  return vcpus_[0]->SetRegister(regs::Core(regs::kPc), entry_);
}

Result<void> Machine::LoadCode(std::uint64_t gpa, std::span<const std::uint32_t> words) {
  if (gpa < vmm::layout::kRam || gpa + words.size() * 4 > vmm::layout::kRam + config_.ram_size) {
    return Fail(ErrorCode::kOutOfRange, "test code outside RAM");
  }
  std::memcpy(ram_->bytes().data() + (gpa - vmm::layout::kRam), words.data(), words.size() * 4);
  if (auto r = vcpus_[0]->SetRegister(regs::Pstate(),
                                      config_.el2 ? kPstateEl2hMasked : kPstateEl1hMasked);
      !r)
    return r;
  return vcpus_[0]->SetRegister(regs::Core(regs::kPc), gpa);
}

void Machine::UpdateIrqLines() {
  for (unsigned c = 0; c < config_.cpus; ++c) {
    const bool level = gic_->IrqLine(c);
    if (level == irq_lines_[c]) continue;
    irq_lines_[c] = level;
    (void)vm_->SetIrqLine(c, level);
  }
}

std::uint64_t Machine::Mmio(unsigned vcpu, const backend::MmioAccess& a) {
  namespace layout = vmm::layout;
  std::lock_guard lock(mu_);
  if (a.address >= layout::kUart && a.address < layout::kUart + layout::kUartSize) {
    if (a.write && a.address == layout::kUart) output_.push_back(static_cast<char>(a.data & 0xff));
    return 0;  // UARTFR: never full
  }
  if (a.address >= layout::kTestExit && a.address < layout::kTestExit + layout::kTestExitSize) {
    if (a.write && !finisher_) {
      finisher_ = static_cast<std::uint32_t>(a.data);
      stopping_.store(true);
      for (auto& v : vcpus_) v->RequestExit(true);
    }
    return 0;
  }
  const auto size = a.size;
  if (a.address >= layout::kGicDist && a.address < layout::kGicDist + vmm::UserGic::kDistSize) {
    const std::uint64_t off = a.address - layout::kGicDist;
    std::uint64_t value = 0;
    if (a.write) {
      gic_->DistWrite(vcpu, off, static_cast<std::uint32_t>(a.data), size);
    } else {
      value = gic_->DistRead(vcpu, off, size);
    }
    UpdateIrqLines();
    return value;
  }
  if (a.address >= layout::kGicCpu && a.address < layout::kGicCpu + vmm::UserGic::kCpuSize) {
    const std::uint64_t off = a.address - layout::kGicCpu;
    std::uint64_t value = 0;
    if (a.write) {
      gic_->CpuWrite(vcpu, off, static_cast<std::uint32_t>(a.data), size);
    } else {
      value = gic_->CpuRead(vcpu, off, size);
    }
    UpdateIrqLines();
    return value;
  }
  return 0;  // RAZ/WI, the bulk print device included (the guest falls back to the UART)
}

void Machine::StopAll() {
  stopping_.store(true);
  for (auto& v : vcpus_) v->RequestExit(true);
}

RunResult Machine::Run(std::chrono::milliseconds timeout) {
  return RunUntil(std::chrono::steady_clock::now() + timeout, /*pause=*/false);
}

RunResult Machine::RunFor(std::chrono::milliseconds duration) {
  return RunUntil(std::chrono::steady_clock::now() + duration, /*pause=*/true);
}

std::vector<std::uint8_t> Machine::SaveGic() {
  std::lock_guard lock(mu_);
  return gic_->Save();
}

Result<void> Machine::RestoreGic(std::span<const std::uint8_t> bytes) {
  auto gic = vmm::UserGic::Restore(bytes);
  if (!gic) return tl::unexpected(gic.error());
  std::lock_guard lock(mu_);
  gic_.emplace(std::move(*gic));
  UpdateIrqLines();
  return Ok();
}

RunResult Machine::RunUntil(std::chrono::steady_clock::time_point deadline, bool pause) {
  RunResult result;
  const auto start = std::chrono::steady_clock::now();
  for (auto& v : vcpus_) v->RequestExit(false);
  for (;;) {
    std::mutex done_mu;
    std::condition_variable done_cv;
    unsigned running = config_.cpus;
    bool reset = false;
    std::string error;
    stopping_.store(false);
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < config_.cpus; ++i) {
      threads.emplace_back([&, i] {
        backend::Vcpu& v = *vcpus_[i];
        if (auto r = v.PrepareThread(); !r) {
          std::lock_guard lock(done_mu);
          error = r.error().Message();
        }
        while (error.empty()) {
          auto exit = v.Run();
          if (!exit) {
            std::lock_guard lock(done_mu);
            error = exit.error().Message();
            break;
          }
          if (exit->kind == backend::ExitKind::kInterrupted ||
              exit->kind == backend::ExitKind::kMmio) {
            if (stopping_.load()) break;
            continue;
          }
          std::lock_guard lock(done_mu);
          if (exit->kind == backend::ExitKind::kShutdown) result.shutdown = true;
          if (exit->kind == backend::ExitKind::kReset) reset = true;
          if (exit->kind == backend::ExitKind::kOther) error = exit->detail;
          break;
        }
        StopAll();
        std::lock_guard lock(done_mu);
        --running;
        done_cv.notify_all();
      });
    }
    {
      std::unique_lock lock(done_mu);
      if (!done_cv.wait_until(lock, deadline, [&] { return running == 0; })) {
        (pause ? result.paused : result.timed_out) = true;
        lock.unlock();
        StopAll();
      }
    }
    for (auto& t : threads) t.join();
    if (!error.empty()) result.error = error;
    if (!reset || result.timed_out || result.paused || !error.empty() || finisher_) break;
    ++result.resets;
    // SYSTEM_RESET: a new VM, the same offset, the same program.
    if (auto r = Build(); !r) {
      result.error = "reset: " + r.error().Message();
      break;
    }
    if (auto r = Boot(); !r) {
      result.error = "reset: " + r.error().Message();
      break;
    }
  }
  result.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::lock_guard lock(mu_);
  result.output = output_;
  result.finisher = finisher_;
  result.timer_line_reports = line_reports_;
  return result;
}

}  // namespace vtime::emu::testing
