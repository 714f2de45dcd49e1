// The emulated hypervisor and its VM: guest memory shared by every vCPU's
// engine, the dirty log, the VM offsets and the vCPUs' IRQ inputs.
#include <algorithm>
#include <string>

#include "backend/emu/emu_internal.h"
#include "vtime/backend/emu.h"
#include "vtime/hex.h"

namespace vtime::emu {
namespace {

constexpr std::uint64_t kPageSize = 4096;

class EmuHypervisor final : public backend::Hypervisor {
 public:
  explicit EmuHypervisor(vtime::FrequencyHz frequency)
      : clock_(std::make_shared<EmuHostClock>(frequency)) {
    caps_.counter_offset = true;
    caps_.physical_counter_writes = true;
    caps_.backend_irqchip = false;
    caps_.user_irqchip = true;
    caps_.user_gic_sysregs = true;
    caps_.el2 = true;
    caps_.steal_time = true;
    caps_.pvtime_revisions = {0};
  }

  [[nodiscard]] std::string Name() const override { return "emu"; }
  [[nodiscard]] const backend::Capabilities& Caps() const override { return caps_; }
  [[nodiscard]] std::string Describe() const override {
    return "emulated arm64 (Unicorn " + UnicornVersion() + ", one TCG engine per vCPU)\n" +
           "counter: CLOCK_MONOTONIC at " + std::to_string(clock_->FrequencyHz()) +
           " Hz; every counter and timer access emulated by vtime's model\n" +
           "VM counter offset: yes (both counters)\n" +
           "interrupt controller: the VMM's (user irqchip); no in-kernel GIC\n" +
           "EL2: yes (vEL2 with VHE; the GIC's system registers go to the VMM)\n" +
           "PV stolen time: revision 0 (run delay from schedstat)\n";
  }
  [[nodiscard]] std::string Explain(backend::Feature feature) const override {
    switch (feature) {
      case backend::Feature::kBackendIrqChip:
        return "the emulated backend has no in-kernel GIC: use the user-space interrupt "
               "controller (--irqchip user)";
      case backend::Feature::kUserIrqChip:
        return "the emulated backend always has the user-space interrupt controller";
      case backend::Feature::kEl2:
        return "the emulated backend runs guest hypervisors at vEL2, with VHE";
      case backend::Feature::kStealTime:
        return "the emulated backend always serves PV stolen time (revision 0)";
    }
    return "unknown feature";
  }
  [[nodiscard]] const backend::HostClock& Clock() const override { return *clock_; }

  Result<std::unique_ptr<backend::Vm>> CreateVm(const backend::VmConfig& config) override {
    if (config.irqchip == backend::IrqChipKind::kBackend) {
      return Fail(ErrorCode::kUnsupported, Explain(backend::Feature::kBackendIrqChip));
    }
    return std::unique_ptr<backend::Vm>(std::make_unique<EmuVm>(clock_, config));
  }

 private:
  std::shared_ptr<EmuHostClock> clock_;
  backend::Capabilities caps_;
};

}  // namespace

std::string UnicornVersion() {
  unsigned major = 0;
  unsigned minor = 0;
  const unsigned full = uc_version(&major, &minor);
  return std::to_string(major) + "." + std::to_string(minor) + "." +
         std::to_string((full >> 8) & 0xff);
}

std::string UcError(uc_err err) {
  return "Unicorn error " + std::to_string(static_cast<int>(err)) + " (" + uc_strerror(err) + ")";
}

Result<std::unique_ptr<backend::Hypervisor>> CreateEmuHypervisor(EmuOptions options) {
  if (!FrequencyHz::Valid(options.counter_frequency_hz) ||
      options.counter_frequency_hz > kMaxCounterFrequencyHz) {
    return Fail(ErrorCode::kInvalidArgument,
                "emulated counter frequency " + std::to_string(options.counter_frequency_hz) +
                    " Hz: must be 1 Hz .. " + std::to_string(kMaxCounterFrequencyHz) + " Hz");
  }
  if (!uc_arch_supported(UC_ARCH_ARM64)) {
    return Fail(ErrorCode::kUnsupported, "this Unicorn library was built without arm64");
  }
  return std::unique_ptr<backend::Hypervisor>(
      std::make_unique<EmuHypervisor>(vtime::FrequencyHz(options.counter_frequency_hz)));
}

void MemoryRegion::MarkDirty(std::uint64_t address, std::uint64_t size) {
  if (size == 0 || address + size <= gpa || address >= end()) return;
  const std::uint64_t first = (std::max(address, gpa) - gpa) / kPageSize;
  const std::uint64_t last = (std::min(address + size, end()) - 1 - gpa) / kPageSize;
  for (std::uint64_t page = first; page <= last; ++page) {
    dirty[page / 64].fetch_or(std::uint64_t{1} << (page % 64), std::memory_order_relaxed);
  }
}

EmuVm::EmuVm(std::shared_ptr<const EmuHostClock> clock, const backend::VmConfig& config)
    : clock_(std::move(clock)),
      clock_model_(arch::HostTimerFeatures{
          .vm_offset_api = true, .physical_offset = true, .ecv_cntpoff = false}),
      gic_sysregs_(config.irqchip == backend::IrqChipKind::kUserV3) {}

EmuVm::~EmuVm() = default;

Result<void> EmuVm::MapMemory(std::uint32_t slot, std::uint64_t gpa, std::span<std::uint8_t> host,
                              bool dirty_log) {
  std::unique_lock lock(mu_);
  for (auto& r : regions_) {
    if (r->slot != slot) continue;
    if (r->gpa != gpa || r->host.data() != host.data() || r->host.size() != host.size()) {
      return Fail(ErrorCode::kUnsupported, "memory slot " + std::to_string(slot) +
                                               " is mapped already: the emulated backend "
                                               "cannot move or resize a slot");
    }
    const bool starts = dirty_log && !r->logging.load();
    if (starts) {
      for (std::size_t i = 0; i < r->dirty_words; ++i) r->dirty[i].store(0);
    }
    r->logging.store(dirty_log);
    const std::uint64_t generation = layout_generation_.fetch_add(1) + 1;
    for (EmuVcpu* v : vcpus_) {
      if (v != nullptr) v->Resync();
    }
    if (starts) {
      MemoryRegion* region = r.get();
      const std::vector<EmuVcpu*> vcpus = vcpus_;
      lock.unlock();
      AwaitWriteHooks(*region, vcpus, generation);
    }
    return Ok();
  }
  const auto addr = reinterpret_cast<std::uintptr_t>(host.data());
  if (host.empty() || host.size() % kPageSize != 0 || gpa % kPageSize != 0 ||
      addr % kPageSize != 0) {
    return Fail(ErrorCode::kInvalidArgument,
                "memory slot " + std::to_string(slot) + " at " + Hex(gpa) + ", " +
                    std::to_string(host.size()) +
                    " bytes: address, size and host memory must be 4 KiB aligned and non-empty");
  }
  if (gpa + host.size() < gpa || gpa + host.size() > (std::uint64_t{1} << 40)) {
    return Fail(ErrorCode::kOutOfRange, "memory slot " + std::to_string(slot) + " at " + Hex(gpa) +
                                            " ends beyond the 40-bit IPA space");
  }
  for (const auto& r : regions_) {
    if (gpa < r->end() && r->gpa < gpa + host.size()) {
      return Fail(ErrorCode::kInvalidArgument, "memory slot " + std::to_string(slot) + " at " +
                                                   Hex(gpa) + " overlaps slot " +
                                                   std::to_string(r->slot) + " at " + Hex(r->gpa));
    }
  }
  auto region = std::make_unique<MemoryRegion>();
  region->slot = slot;
  region->gpa = gpa;
  region->host = host;
  region->dirty_words = (host.size() / kPageSize + 63) / 64;
  region->dirty = std::make_unique<std::atomic<std::uint64_t>[]>(region->dirty_words);
  for (std::size_t i = 0; i < region->dirty_words; ++i) region->dirty[i].store(0);
  region->logging.store(dirty_log);
  MemoryRegion* added = region.get();
  regions_.push_back(std::move(region));
  std::sort(regions_.begin(), regions_.end(),
            [](const auto& a, const auto& b) { return a->gpa < b->gpa; });
  const std::uint64_t generation = layout_generation_.fetch_add(1) + 1;
  for (EmuVcpu* v : vcpus_) {
    if (v != nullptr) v->Resync();
  }
  if (dirty_log) {
    const std::vector<EmuVcpu*> vcpus = vcpus_;
    lock.unlock();
    AwaitWriteHooks(*added, vcpus, generation);
  }
  return Ok();
}

void EmuVm::AwaitWriteHooks(MemoryRegion& region, const std::vector<EmuVcpu*>& vcpus,
                            std::uint64_t generation) {
  // Logging starts when MapMemory returns: every vCPU in the guest has its
  // write hook by then. One that cannot be waited for (MapMemory called from
  // inside its own Run) gets the whole slot marked dirty instead.
  for (EmuVcpu* v : vcpus) {
    if (v != nullptr && !v->AwaitLayout(generation))
      region.MarkDirty(region.gpa, region.host.size());
  }
}

Result<void> EmuVm::DirtyLog(std::uint32_t slot, std::span<std::uint64_t> bitmap) {
  std::lock_guard lock(mu_);
  for (auto& r : regions_) {
    if (r->slot != slot) continue;
    if (!r->logging.load()) {
      return Fail(ErrorCode::kBadState,
                  "memory slot " + std::to_string(slot) + " does not log dirty pages");
    }
    if (bitmap.size() < r->dirty_words) {
      return Fail(ErrorCode::kInvalidArgument,
                  "dirty log of slot " + std::to_string(slot) + ": the bitmap holds " +
                      std::to_string(bitmap.size() * 64) + " pages, the slot has " +
                      std::to_string(r->host.size() / kPageSize));
    }
    for (std::size_t i = 0; i < r->dirty_words; ++i) bitmap[i] = r->dirty[i].exchange(0);
    return Ok();
  }
  return Fail(ErrorCode::kInvalidArgument, "dirty log: no memory slot " + std::to_string(slot));
}

std::vector<MemoryRegion*> EmuVm::Regions(std::uint64_t* generation) {
  std::lock_guard lock(mu_);
  *generation = layout_generation_.load();
  std::vector<MemoryRegion*> out;
  out.reserve(regions_.size());
  for (auto& r : regions_) out.push_back(r.get());
  return out;
}

std::uint8_t* EmuVm::HostPointer(std::uint64_t gpa, std::uint64_t size, MemoryRegion** region) {
  std::lock_guard lock(mu_);
  for (auto& r : regions_) {
    if (gpa >= r->gpa && gpa + size <= r->end() && gpa + size >= gpa) {
      if (region != nullptr) *region = r.get();
      return r->host.data() + (gpa - r->gpa);
    }
  }
  return nullptr;
}

arch::VmClock EmuVm::ClockCopy(std::uint64_t* generation) {
  std::lock_guard lock(mu_);
  *generation = clock_generation_.load();
  return clock_model_;
}

Result<std::unique_ptr<backend::Vcpu>> EmuVm::CreateVcpu(const backend::VcpuConfig& config) {
  {
    std::lock_guard lock(mu_);
    if (config.index != vcpus_.size()) {
      return Fail(ErrorCode::kInvalidArgument, "vCPU " + std::to_string(config.index) +
                                                   ": vCPUs are created in order, next is " +
                                                   std::to_string(vcpus_.size()));
    }
  }
  auto vcpu = EmuVcpu::Create(*this, config);
  if (!vcpu) return tl::unexpected(vcpu.error());
  std::lock_guard lock(mu_);
  // As KVM does before the VMM owns the offset: a new vCPU restarts the
  // virtual counter near 0 for the whole VM.
  clock_model_.OnVcpuCreated(clock_->Count());
  clock_generation_.fetch_add(1);
  vcpus_.push_back(vcpu->get());
  for (EmuVcpu* v : vcpus_) {
    if (v != nullptr) v->Resync();
  }
  return std::unique_ptr<backend::Vcpu>(std::move(*vcpu));
}

void EmuVm::ForgetVcpu(EmuVcpu* vcpu) {
  std::lock_guard lock(mu_);
  std::replace(vcpus_.begin(), vcpus_.end(), vcpu, static_cast<EmuVcpu*>(nullptr));
}

EmuVcpu* EmuVm::VcpuByMpidr(std::uint64_t mpidr) {
  std::lock_guard lock(mu_);
  for (EmuVcpu* v : vcpus_) {
    // Affinity fields only (Aff3 at [39:32], Aff2..Aff0 at [23:0]).
    constexpr std::uint64_t kAff = 0xff00ffffffULL;
    if (v != nullptr && (v->mpidr() & kAff) == (mpidr & kAff)) return v;
  }
  return nullptr;
}

Result<backend::OffsetWrites> EmuVm::ApplyOffsets(arch::VmClock& clock,
                                                  std::uint64_t virtual_offset,
                                                  std::uint64_t physical_offset) {
  backend::OffsetWrites done;
  std::lock_guard lock(mu_);
  if (clock.features().vm_offset_api) {
    // The backend first, then the VMM's model: it changes only once the
    // offset is in force here.
    if (auto r = clock_model_.SetVmOffset(Ticks{virtual_offset}); !r)
      return tl::unexpected(r.error());
    clock_generation_.fetch_add(1);
    for (EmuVcpu* v : vcpus_) {
      if (v != nullptr) v->Resync();
    }
    if (auto r = clock.SetVmOffset(Ticks{virtual_offset}); !r) return tl::unexpected(r.error());
    ++done.vm_offset_ioctls;
    return done;
  }
  // A VMM that models a host without the VM offset: the legacy counter-value
  // writes, one per counter, each from "now".
  for (const auto kind : {arch::CounterKind::kVirtual, arch::CounterKind::kPhysical}) {
    const bool physical = kind == arch::CounterKind::kPhysical;
    if (physical && !clock.features().physical_offset) break;
    const HostCount now = clock_->Count();
    const Ticks value = GuestView(now, Ticks{physical ? physical_offset : virtual_offset});
    if (auto r = clock_model_.WriteCounterValue(kind, value, now); !r) {
      return tl::unexpected(r.error());
    }
    clock_generation_.fetch_add(1);
    ++done.counter_value_writes;
    if (auto r = clock.WriteCounterValue(kind, value, now); !r) return tl::unexpected(r.error());
  }
  for (EmuVcpu* v : vcpus_) {
    if (v != nullptr) v->Resync();
  }
  return done;
}

Result<void> EmuVm::WriteCounterValue(arch::CounterKind kind, std::uint64_t value) {
  std::lock_guard lock(mu_);
  auto r = clock_model_.WriteCounterValue(kind, Ticks{value}, clock_->Count());
  if (!r) return tl::unexpected(r.error());
  clock_generation_.fetch_add(1);
  for (EmuVcpu* v : vcpus_) {
    if (v != nullptr) v->Resync();
  }
  return Ok();
}

Result<void> EmuVm::SetIrqLine(unsigned vcpu, bool level) {
  EmuVcpu* target = nullptr;
  {
    std::lock_guard lock(mu_);
    if (vcpu < vcpus_.size()) target = vcpus_[vcpu];
  }
  if (target == nullptr) {
    return Fail(ErrorCode::kInvalidArgument,
                "IRQ line of vCPU " + std::to_string(vcpu) + ": no such vCPU");
  }
  target->SetIrqLine(level);
  return Ok();
}

Result<void> EmuVm::SetVirtualIrqLine(unsigned vcpu, bool level) {
  EmuVcpu* target = nullptr;
  {
    std::lock_guard lock(mu_);
    if (vcpu < vcpus_.size()) target = vcpus_[vcpu];
  }
  if (target == nullptr) {
    return Fail(ErrorCode::kInvalidArgument,
                "virtual IRQ line of vCPU " + std::to_string(vcpu) + ": no such vCPU");
  }
  target->SetVirtualIrqLine(level);
  return Ok();
}

Result<void> EmuVm::SetSpiLine(std::uint32_t intid, bool /*level*/) {
  return Fail(ErrorCode::kUnsupported,
              "SPI " + std::to_string(intid) +
                  ": the emulated backend has no in-kernel interrupt controller (the VMM's "
                  "user-space GIC takes device lines)");
}

Result<void> EmuVm::RestoreIrqChip(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return Ok();
  return Fail(ErrorCode::kMalformed,
              "snapshot: an in-kernel GIC state for the emulated backend, which has none");
}

}  // namespace vtime::emu
