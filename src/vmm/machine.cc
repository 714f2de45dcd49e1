#include "vmm/machine_impl.h"

namespace vtime::vmm::detail {

Result<void> VmMachine::CreateDevicesAndVcpus(const std::vector<std::uint64_t>* pvtime_ipas) {
  const unsigned n = config_.cpus;
  vm_->SetMmioHandler([this](unsigned index, const backend::MmioAccess& access) {
    return HandleMmio(index, access);
  });
  if (auto r = vm_->MapMemory(0, layout::kRam, ram_.writable()); !r) return r;
  if (pvtime_) {
    if (auto r = vm_->MapMemory(1, config_.pvtime_base, pvtime_->writable()); !r) return r;
  }
  backend_gic_ = config_.irqchip == IrqChip::kKernel;
  if (!backend_gic_ && UsesUserGicV3(config_)) {
    auto gic = UserGicV3::Create(UserGicConfig{.num_cpus = n, .num_irqs = 64});
    if (!gic) return tl::unexpected(gic.error());
    gic3_.emplace(std::move(*gic));
    injected_virq_.assign(n, false);
    vm_->SetSysRegHandler([this](unsigned index, const backend::SysRegAccess& access) {
      return Gic3SysReg(index, access);
    });
  } else if (!backend_gic_) {
    auto gic = UserGic::Create(UserGicConfig{.num_cpus = n, .num_irqs = 64});
    if (!gic) return tl::unexpected(gic.error());
    gic_.emplace(std::move(*gic));
  }
  if (!backend_gic_) {
    injected_.assign(n, false);
    line_stale_ = std::vector<std::atomic<bool>>(n);
    timer_level_.assign(n, 0);
    vm_->SetTimerLineHandler(
        [this](unsigned index, std::uint64_t levels) { SyncTimerLines(index, levels); });
  }
  vcpus_.reserve(n);
  for (unsigned i = 0; i < n; ++i) {
    backend::VcpuConfig vc{.index = i,
                           .powered_off = i != 0,  // started by PSCI CPU_ON
                           .el2 = config_.el2,
                           .pvtime_ipa = std::nullopt,
                           .vtimer_ppi = config_.vtimer_ppi,
                           .ptimer_ppi = config_.ptimer_ppi};
    if (pvtime_) {
      vc.pvtime_ipa = pvtime_ipas != nullptr ? (*pvtime_ipas)[i]
                                             : config_.pvtime_base + pvtime::RecordOffset(i);
    }
    auto vcpu = vm_->CreateVcpu(vc);
    if (!vcpu) return tl::unexpected(vcpu.error());
    // vCPU creation is where KVM's legacy rule resets the virtual offset.
    clock_.OnVcpuCreated(host_.Count());
    vcpus_.push_back(std::move(*vcpu));
  }
  return vm_->FinishVcpus();
}

Result<void> VmMachine::Build(std::span<const std::uint8_t> image) {
  // The image, the initrd and the device tree, placed as the guest's boot
  // protocol wants them (src/vmm/boot.h).
  auto placed =
      LoadBoot(BootRequest{image, config_.image_format, config_.initrd, DescribeMachine(config_)},
               RamView{layout::kRam, {ram_.data(), ram_.size()}});
  if (!placed) return tl::unexpected(placed.error());
  const std::uint64_t dtb_addr = placed->data.dtb;

  JoinTimeline(std::nullopt);
  if (auto r = CreateDevicesAndVcpus(nullptr); !r) return r;
  backend::Vcpu& boot = *vcpus_.front();
  if (auto r = boot.SetRegister(regs::Core(regs::kPc), placed->image.entry); !r) return r;
  if (auto r = boot.SetRegister(regs::Core(0), dtb_addr); !r) return r;
  // vtvmm always owns the offset, so that it knows every offset it applied
  // (seed 002) and can save guest time exactly; by default the guest's
  // counters start at 0.
  const std::uint64_t offset =
      config_.counter_offset ? *config_.counter_offset : host_.Count().value;
  return ApplyCounterOffset(offset);
}

Result<void> VmMachine::BuildFromSnapshot(const MachineSnapshot& snap) {
  std::memcpy(ram_.data(), snap.ram.data(), snap.ram.size());
  if (pvtime_) {
    std::memcpy(pvtime_->data(), snap.pvtime_region.data(), snap.pvtime_region.size());
    // The restored records win over the saved state (vtime/pvtime/restore.h
    // says why): a difference is reported, never written over.
    auto mismatches =
        pvtime::CompareRestored(snap.time, {pvtime_->data(), pvtime_->size()}, config_.pvtime_base);
    if (!mismatches) return Fail(ErrorCode::kMalformed, "snapshot: " + mismatches.error().context);
    const std::string report = pvtime::DescribeMismatches(*mismatches);
    if (!report.empty()) std::fprintf(stderr, "vtvmm: %s", report.c_str());
  }
  rtc_.Restore(snap.rtc);
  std::vector<std::uint64_t> ipas;
  for (const auto& v : snap.time.vcpus) ipas.push_back(v.pvtime.ipa);
  if (auto r = CreateDevicesAndVcpus(&ipas); !r) return r;
  if (gic_) {
    // The user-space GIC comes back whole; each vCPU's IRQ line follows it.
    auto gic = UserGic::Restore(snap.user_gic);
    if (!gic) return tl::unexpected(gic.error());
    if (gic->num_cpus() != vcpus_.size() || gic->num_irqs() != gic_->num_irqs()) {
      return Fail(ErrorCode::kMalformed,
                  "snapshot: the user GIC state is for " + std::to_string(gic->num_cpus()) +
                      " CPUs and " + std::to_string(gic->num_irqs()) + " interrupts, not " +
                      std::to_string(vcpus_.size()) + " and " + std::to_string(gic_->num_irqs()));
    }
    std::lock_guard lock(gic_mutex_);
    gic_.emplace(std::move(*gic));
    for (unsigned c = 0; c < injected_.size(); ++c) {
      const bool want = gic_->IrqLine(c);
      if (auto r = vm_->SetIrqLine(c, want); !r) return r;
      injected_[c] = want;
    }
    // Unknown until KVM reports them on the first exit: every level then
    // counts as a change and reaches the GIC, whatever it was at the save.
    timer_level_.assign(vcpus_.size(), ~std::uint64_t{0});
  }

  if (!snap.uart.empty()) {
    std::lock_guard lock(uart_mutex_);
    if (auto r = uart_.Restore(snap.uart); !r) return r;
  }
  {
    std::lock_guard lock(uart_mutex_);
    debug_print_.set_address(snap.debug_print_addr);
  }
  if (virtio_console_) {
    std::lock_guard lock(uart_mutex_);
    if (auto r = virtio_console_->Restore(snap.virtio_console); !r) return r;
    UpdateVirtioLineLocked();
  }
  for (const VcpuSnapshot& v : snap.vcpus) {
    std::uint64_t paused = snap.time.VirtualCountAtPause();
    for (const RegisterValue& reg : v.registers) {
      if (reg.id != regs::kCntvct) continue;
      values_restore_ = true;
      paused = LoadLe(reg.bytes.data(), 8);
    }
    paused_counts_.push_back(paused);
  }
  std::optional<trace::Timeline> restored_timeline;
  if (!snap.timeline.empty()) {
    auto timeline = trace::Timeline::Decode(snap.timeline);
    if (!timeline) return Fail(ErrorCode::kMalformed, "snapshot: " + timeline.error().context);
    restored_timeline = std::move(*timeline);
  }
  JoinTimeline(std::move(restored_timeline));
  for (std::size_t i = 0; i < snap.time.vcpus.size() && i < seen_cntvoff_.size(); ++i) {
    seen_cntvoff_[i] = snap.time.vcpus[i].cntvoff_el2;
  }
  if (values_restore_) {
    // The comparison method: no offsets, only the per-vCPU value writes in
    // the register loop below, each sampling "now" (KVM's legacy rule).
    clock_ = arch::VmClock(arch::HostTimerFeatures{
        .vm_offset_api = false, .physical_offset = caps_.physical_counter_writes});
  }
  // Guest time first: the offsets, then each timer's CTL and CVAL, so that
  // no CVAL is ever compared against a count it was not programmed for.
  const state::CapturePair here = host_.CaptureNow();
  auto plan = state::PlanResume(snap.time, config_.policy, here, host_.FrequencyHz());
  if (!plan) return tl::unexpected(plan.error());
  if (values_restore_) {
    // nothing: the counters come back by value below
  } else if (clock_.features().vm_offset_api) {
    if (auto r = ApplyCounterOffsets(plan->vm_offset, plan->vm_offset, false); !r) return r;
  } else {
    if (auto r = ApplyCounterOffsets(plan->virtual_offset, plan->physical_offset, false); !r)
      return r;
  }
  restored_plan_ = *plan;
  restored_time_ = snap.time;
  for (unsigned i = 0; i < vcpus_.size(); ++i) {
    backend::Vcpu& vcpu = *vcpus_[i];
    const state::VcpuTime& t = snap.time.vcpus[i];
    auto written = vcpu.RestoreTimers(t);
    if (!written) return tl::unexpected(written.error());
    timer_register_writes_ += *written;
    for (const RegisterValue& reg : snap.vcpus[i].registers) {
      if (auto r = vcpu.RestoreRegister(backend::RegisterBytes{reg.id, reg.bytes}); !r) return r;
      if (reg.id == regs::kCntvct || reg.id == regs::kCntpct) ++counter_value_writes_;
    }
    if (auto r = vcpu.SetPowerState(snap.vcpus[i].mp_state); !r) return r;
  }
  // The backend's GIC last, once every vCPU's registers are back.
  if (backend_gic_) return vm_->RestoreIrqChip(snap.vgic);
  return Ok();
}

Result<std::string> VmMachine::RestoredTimeReport() {
  if (!restored_plan_) return Fail(ErrorCode::kBadState, "this machine was not restored");
  std::string out = "restore: policy " + std::string(state::NameOf(config_.policy)) +
                    ", CNTVCT resumes at " +
                    std::to_string(restored_plan_->virtual_count_at_resume) + ", CNTPCT at " +
                    std::to_string(restored_plan_->physical_count_at_resume) + "\n";
  for (auto& vcpu : vcpus_) {
    out += "restore: vcpu" + std::to_string(vcpu->index());
    std::vector<std::pair<const char*, std::uint64_t>> shown_regs = {
        {"cntv_ctl", regs::kCntvCtl},
        {"cntv_cval", regs::kCntvCval},
        {"cntp_ctl", regs::kCntpCtl},
        {"cntp_cval", regs::kCntpCval},
        {"cntkctl_el1", regs::kCntkctlEl1}};
    if (config_.el2) {
      shown_regs.insert(shown_regs.end(), {{"cntvoff_el2", regs::kCntvoffEl2},
                                           {"cnthctl_el2", regs::kCnthctlEl2},
                                           {"cnthp_ctl", regs::kCnthpCtl},
                                           {"cnthp_cval", regs::kCnthpCval},
                                           {"cnthv_ctl", regs::kCnthvCtl},
                                           {"cnthv_cval", regs::kCnthvCval}});
    }
    for (const auto& [name, id] : shown_regs) {
      auto v = vcpu->GetRegister(id);
      if (!v) return tl::unexpected(v.error());
      // ISTATUS depends on when it is read, not on what was restored.
      const std::uint64_t shown =
          std::string_view(name).ends_with("_ctl") ? (*v & arch::ctl::kWritable) : *v;
      out += std::string(" ") + name + "=" + std::to_string(shown);
    }
    out += "\n";
  }
  return out;
}

void VmMachine::Stop(GuestEnd end, int status, std::string detail) {
  {
    std::lock_guard lock(stop_mutex_);
    if (stop_.load()) return;
    result_ = RunResult{end, status, std::move(detail)};
    stop_.store(true);
  }
  // Kick every vCPU out of KVM_RUN: immediate_exit catches a thread about to
  // enter, the signal one already inside.
  for (auto& vcpu : vcpus_) {
    vcpu->RequestExit(true);
    vcpu->Kick();
  }
  stopped_cv_.notify_all();
  resume_cv_.notify_all();
  parked_cv_.notify_all();  // PauseAll and the start gate wait there too
  uart_room_cv_.notify_all();
}

void VmMachine::PauseAll() {
  pause_.store(true);
  for (auto& vcpu : vcpus_) {
    vcpu->RequestExit(true);
    vcpu->Kick();
  }
  std::unique_lock lock(stop_mutex_);
  parked_cv_.wait(lock, [this] { return parked_ == vcpus_.size() || stop_.load(); });
}

void VmMachine::ResumeAll() {
  std::unique_lock lock(stop_mutex_);
  pause_.store(false);
  resume_cv_.notify_all();
  // Wait until every vCPU has left the pause, so that the next PauseAll
  // counts only vCPUs that parked for it.
  parked_cv_.wait(lock, [this] { return parked_ == 0 || stop_.load(); });
}

Result<RunResult> VmMachine::Run() {
  // Everything that can fail before the guest runs fails before any thread
  // exists: a destination then still says "failed" and the source resumes.
  if (!config_.monitor_path.empty()) {
    if (auto r = OpenMonitor(); !r) return tl::unexpected(r.error());
  }
  if (restored_time_) {
    if (auto r = ReportRestoreStep(); !r) return tl::unexpected(r.error());
  }
  last_exit_count_.assign(vcpus_.size(), 0);
  first_entry_count_ = std::vector<std::atomic<std::uint64_t>>(vcpus_.size());
  gate_beat_ = std::vector<std::atomic<std::uint64_t>>(vcpus_.size());
  entry_cpu_ = std::vector<std::atomic<int>>(vcpus_.size());
  for (auto& cpu : entry_cpu_) cpu.store(-1);
  vcpu_tids_ = std::vector<std::atomic<pid_t>>(vcpus_.size());
  final_run_delay_ns_.assign(vcpus_.size(), 0);
  final_stolen_ns_.assign(vcpus_.size(), 0);
  std::vector<std::thread> threads;
  threads.reserve(vcpus_.size());
  // From here every way out goes through join_all.
  auto join_all = [this, &threads]() {
    Stop(GuestEnd::kError, 1, "vtvmm stopped the guest");  // no-op once stopped
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
    if (console_input_.joinable()) console_input_.join();
  };
  std::string thread_error;
  {
    std::lock_guard lock(stop_mutex_);
    for (unsigned i = 0; i < vcpus_.size(); ++i) {
      try {
        threads.emplace_back([this, i] { VcpuLoop(i); });
      } catch (const std::system_error& e) {
        // The start gate never opens without every thread: those started
        // wait there until the Stop below.
        thread_error = "starting the thread of vCPU " + std::to_string(i) + ": " + e.what();
        break;
      }
      vcpus_[i]->AttachThread(threads.back().native_handle());
      ++threads_;
    }
  }
  if (!thread_error.empty()) {
    Stop(GuestEnd::kError, 1, thread_error);
    join_all();
    return Fail(ErrorCode::kSystem, thread_error);
  }
  bool started = false;
  // Rarely awake while the gate opens: a wake-up here preempts a vCPU
  // thread sharing this CPU, which can fall between the final offset and
  // its KVM_RUN (200 us and more in the lab with 1 ms polls).
  while (!started_.load(std::memory_order_acquire) && !stop_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  started = started_.load();
  if (started) {
    // Nothing else on this thread (the hand-over's message, console set-up,
    // printing) until every vCPU has entered the guest: on a host with few
    // CPUs it would take the CPU a vCPU thread needs to leave the start gate.
    for (unsigned i = 0; i < first_entry_count_.size(); ++i) {
      for (int waited = 0; first_entry_count_[i].load() == 0 && !stop_.load() && waited < 200;
           ++waited) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  }
  if (started && config_.on_started) config_.on_started();
  if (started && final_plan_) RecordCurrentOffsets(offset_set_at_);
  if (started) WriteTimeline();
  std::optional<RawTerminal> raw;
  if (started && config_.console_input) {
    raw.emplace();
    try {
      console_input_ = std::thread([this] { ConsoleInput(); });
    } catch (const std::system_error& e) {
      NoteOnce(warned_mmio_, std::string("no console input: ") + e.what());
    }
  }
  if (final_plan_) {
    // After the start: printing is slow and must not delay the guest.
    const std::int64_t away = resumed_at_.wall_clock_ns - restored_time_->pause.wall_clock_ns;
    std::fprintf(stderr,
                 "vtvmm: resumed (policy %s): CNTVCT paused at %llu, resumes at %llu; CNTPCT "
                 "paused at %llu, resumes at %llu (+%llu ticks); away %lld ns by the two "
                 "hosts' wall clocks%s\n",
                 state::NameOf(config_.policy).data(),
                 static_cast<unsigned long long>(restored_time_->VirtualCountAtPause()),
                 static_cast<unsigned long long>(final_plan_->virtual_count_at_resume),
                 static_cast<unsigned long long>(restored_time_->PhysicalCountAtPause()),
                 static_cast<unsigned long long>(final_plan_->physical_count_at_resume),
                 static_cast<unsigned long long>(final_plan_->advanced_ticks),
                 static_cast<long long>(away),
                 final_plan_->wall_clock_went_backwards
                     ? " (this host's clock is behind the pause: no time added)"
                     : "");
    ReportOwnResumePart();
  }
  if (!config_.snapshot_path.empty() || !config_.migrate_to.empty()) {
    struct sigaction snap {};
    snap.sa_handler = [](int) { g_snapshot_requested.store(true); };
    sigemptyset(&snap.sa_mask);
    sigaction(kSnapshotSignal, &snap, nullptr);
  }
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    if (monitor_.valid() && !stop_.load()) ServeMonitor();
    {
      std::unique_lock lock(stop_mutex_);
      if (stopped_cv_.wait_for(lock, std::chrono::milliseconds(20),
                               [this] { return stop_.load(); }))
        break;
    }
    const auto ran = std::chrono::steady_clock::now() - start;
    if (config_.timeout_s != 0 && ran >= std::chrono::seconds(config_.timeout_s)) {
      if (gic_) {
        // A guest that did not finish: where its interrupts stood, so that
        // a lost one shows.
        std::lock_guard lock(gic_mutex_);
        for (unsigned c = 0; c < vcpus_.size(); ++c) {
          std::string pending, active;
          for (unsigned intid = 0; intid < gic_->num_irqs(); ++intid) {
            if (gic_->IsPending(c, intid)) pending += " " + std::to_string(intid);
            if (gic_->IsActive(c, intid)) active += " " + std::to_string(intid);
          }
          std::fprintf(stderr,
                       "vtvmm: watchdog: user GIC cpu%u: irq line %d (injected %d), timer "
                       "levels %llu, running priority 0x%x, pending:%s, active:%s\n",
                       c, gic_->IrqLine(c) ? 1 : 0, injected_[c] ? 1 : 0,
                       static_cast<unsigned long long>(timer_level_[c]), gic_->RunningPriority(c),
                       pending.empty() ? " none" : pending.c_str(),
                       active.empty() ? " none" : active.c_str());
        }
      }
      Stop(GuestEnd::kTimeout, 124,
           "watchdog: the guest ran for " + std::to_string(config_.timeout_s) + " s");
      break;
    }
    const bool due = config_.snapshot_after_ms != 0 &&
                     ran >= std::chrono::milliseconds(config_.snapshot_after_ms);
    const bool migrate_due =
        config_.migrate_after_ms != 0 && ran >= std::chrono::milliseconds(config_.migrate_after_ms);
    if (!config_.migrate_to.empty() &&
        (migrate_due || (config_.snapshot_path.empty() && g_snapshot_requested.exchange(false)))) {
      config_.migrate_after_ms = 0;
      if (auto r = MigrateOut(); !r) {
        std::fprintf(stderr, "vtvmm: migration failed: %s; the guest keeps running here\n",
                     r.error().Message().c_str());
      }
      continue;
    }
    if (!config_.snapshot_path.empty() && (due || g_snapshot_requested.exchange(false))) {
      if (auto r = WriteSnapshot(); !r) {
        // A failed snapshot stops nothing: the guest keeps running.
        std::fprintf(stderr, "vtvmm: snapshot failed: %s\n", r.error().Message().c_str());
        ResumeAll();
        config_.snapshot_after_ms = 0;
      }
    }
  }
  join_all();
  WriteTimeline();
  {
    std::lock_guard lock(console_mutex_);
    if (!console_line_.empty()) {
      std::fwrite(console_line_.data(), 1, console_line_.size(), stdout);
      std::fputc('\n', stdout);
      console_line_.clear();
    }
    std::fflush(stdout);
  }
  RunResult out = result_;
  out.started = started;
  return out;
}

}  // namespace vtime::vmm::detail

namespace vtime::vmm {

using detail::kVgicNrIrqs;
using detail::VmMachine;

Result<std::unique_ptr<Machine>> Machine::Create(std::unique_ptr<backend::Hypervisor> hypervisor,
                                                 const MachineConfig& given,
                                                 std::span<const std::uint8_t> image,
                                                 std::optional<GuestMemory> given_ram) {
  if (!hypervisor) return Fail(ErrorCode::kInvalidArgument, "no backend to run the guest on");
  const backend::Capabilities& caps = hypervisor->Caps();
  MachineConfig config = given;
  if (config.restore != nullptr) {
    // The snapshot says what machine it was.
    const MachineSnapshot& snap = *config.restore;
    config.cpus = snap.cpus;
    config.ram_size = snap.ram_size;
    config.irqchip = snap.irqchip;
    config.pvtime = snap.pvtime;
    config.pvtime_base = snap.pvtime_base;
    config.vtimer_ppi = static_cast<int>(snap.vtimer_ppi);
    config.ptimer_ppi = static_cast<int>(snap.ptimer_ppi);
    config.counter_offset.reset();
    // A guest hypervisor's vCPUs come back at vEL2 (Validate made every
    // saved vCPU agree).
    config.el2 = !snap.time.vcpus.empty() && snap.time.vcpus[0].nested;
    config.console = snap.virtio_console.empty() ? MachineConfig::Console::kPl011
                                                 : MachineConfig::Console::kVirtio;
  }
  if (config.cpus == 0 || config.cpus > layout::kMaxVcpus) {
    return Fail(ErrorCode::kInvalidArgument, "--cpus " + std::to_string(config.cpus) + ": 1 to " +
                                                 std::to_string(layout::kMaxVcpus) +
                                                 " vCPUs are supported");
  }
  if (config.restore != nullptr) {
    // Refused here, before any VM exists, so that a migration source is told
    // why and keeps its guest running.
    if (auto r = pvtime::CheckServable(config.restore->time, caps.pvtime_revisions); !r) {
      return Fail(r.error().code, "restore: " + r.error().context);
    }
  }
  const std::string on = config.restore != nullptr ? "restore: the snapshot's VM uses " : "";
  if (config.irqchip == IrqChip::kUser && !caps.user_irqchip) {
    return Fail(ErrorCode::kUnsupported,
                (on.empty() ? "--irqchip user: " : on + "vtvmm's own GIC, and ") +
                    hypervisor->Explain(backend::Feature::kUserIrqChip));
  }
  if (config.irqchip == IrqChip::kKernel && !caps.backend_irqchip) {
    return Fail(ErrorCode::kUnsupported,
                (on.empty() ? "--irqchip kernel: " : on + "an in-kernel GIC, and ") +
                    hypervisor->Explain(backend::Feature::kBackendIrqChip));
  }
  if (config.el2 && !caps.el2) {
    return Fail(ErrorCode::kUnsupported,
                std::string(config.restore != nullptr
                                ? "restore: the saved vCPUs run at vEL2 (a guest hypervisor): "
                                : "--el2: ") +
                    hypervisor->Explain(backend::Feature::kEl2));
  }
  if (config.el2 && config.irqchip == IrqChip::kUser && !caps.user_gic_sysregs) {
    // vtvmm's GICv3 needs the guest's ICC_*/ICH_* accesses, which KVM
    // keeps to itself.
    return Fail(ErrorCode::kInvalidArgument,
                "--el2 needs --irqchip kernel on " + hypervisor->Name() +
                    ": a guest hypervisor needs a GICv3 with the virtualization interface, and "
                    "vtvmm's own GICv3 needs the GIC's system registers, which this backend does "
                    "not hand over");
  }
  if (config.pvtime && (!caps.steal_time || caps.pvtime_revisions.empty())) {
    return Fail(ErrorCode::kUnsupported,
                hypervisor->Explain(backend::Feature::kStealTime) + " (use --pvtime off)");
  }
  if (config.pvtime && (config.pvtime_base % layout::kPvtimeSize != 0 ||
                        (config.pvtime_base >= layout::kRam &&
                         config.pvtime_base < layout::kRam + config.ram_size))) {
    return Fail(ErrorCode::kInvalidArgument, "--pvtime-base " + Hex(config.pvtime_base) +
                                                 ": must be 64 KiB aligned and outside guest RAM");
  }
  if (given_ram && given_ram->size() != config.ram_size) {
    return Fail(ErrorCode::kBadState, "guest memory of " + std::to_string(given_ram->size()) +
                                          " bytes for a VM of " + std::to_string(config.ram_size));
  }
  Result<GuestMemory> ram = given_ram ? Result<GuestMemory>(std::move(*given_ram))
                                      : GuestMemory::Create(config.ram_size, "guest RAM");
  if (!ram) return tl::unexpected(ram.error());
  std::optional<GuestMemory> pvtime;
  if (config.pvtime) {
    auto region = GuestMemory::Create(layout::kPvtimeSize, "PV time records");
    if (!region) return tl::unexpected(region.error());
    pvtime.emplace(std::move(*region));
  }
  auto vm = hypervisor->CreateVm(backend::VmConfig{
      .irqchip = config.irqchip == IrqChip::kKernel ? backend::IrqChipKind::kBackend
                 : UsesUserGicV3(config)            ? backend::IrqChipKind::kUserV3
                                                    : backend::IrqChipKind::kUser,
      .gic_dist_base = layout::kGicDist,
      .gic_redist_base = layout::kGicRedist,
      .gic_irqs = kVgicNrIrqs});
  if (!vm) return tl::unexpected(vm.error());
  auto machine = std::make_unique<VmMachine>(config, std::move(hypervisor), std::move(*vm),
                                             std::move(*ram), std::move(pvtime));
  if (config.restore != nullptr) {
    if (auto r = machine->BuildFromSnapshot(*config.restore); !r) return tl::unexpected(r.error());
  } else if (auto r = machine->Build(image); !r) {
    return tl::unexpected(r.error());
  }
  return machine;
}

}  // namespace vtime::vmm
