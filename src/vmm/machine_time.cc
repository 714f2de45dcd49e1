#include "vmm/machine_impl.h"

namespace vtime::vmm::detail {

Result<void> VmMachine::ApplyCounterOffset(std::uint64_t offset) {
  return ApplyCounterOffsets(offset, offset);
}

Result<void> VmMachine::ApplyCounterOffsets(std::uint64_t virtual_offset,
                                            std::uint64_t physical_offset, bool record) {
  // The model decides what the host can do; ApplyOffsets only carries it to
  // KVM (one VM offset, or legacy counter-value writes on vCPU 0).
  auto done = vm_->ApplyOffsets(clock_, virtual_offset, physical_offset);
  if (!done) return tl::unexpected(done.error());
  counter_offset_ioctls_ += done->vm_offset_ioctls;
  counter_value_writes_ += done->counter_value_writes;
  if (record) RecordCurrentOffsets(host_.Count().value);
  return Ok();
}

void VmMachine::RecordCurrentOffsets(std::uint64_t at) {
  // From count `at` on the guest's counters are the host's minus what the
  // model now holds (what KVM took, legacy writes included).
  std::lock_guard lock(timeline_mutex_);
  RecordOffsets(timeline_, timeline_host_, at, clock_.virtual_offset().value,
                clock_.physical_offset().value);
}

std::string DefaultTimelineHost() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "host");
  std::string name = host;
  // One boot of one machine is one counter: its boot id tells two lab
  // machines of one host name apart, and a restart of the same machine.
  if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    char id[64] = {};
    if (std::fgets(id, sizeof id, f) != nullptr && std::strlen(id) >= 8) {
      name += " boot " + std::string(id, 8);
    }
    std::fclose(f);
  }
  return name;
}

void VmMachine::JoinTimeline(std::optional<trace::Timeline> restored) {
  timeline_on_ = !config_.timeline_path.empty() || restored.has_value();
  if (timeline_on_ &&
      (values_restore_ || config_.time_transfer == MachineConfig::TimeTransfer::kValues)) {
    // Counter values written per vCPU leave no offset that vtvmm knows.
    std::fprintf(stderr,
                 "vtvmm: no timeline: guest time carried by counter values has no known "
                 "offset\n");
    timeline_on_ = false;
    config_.timeline_path.clear();
  }
  if (restored) timeline_ = std::move(*restored);
  timeline_.vcpus = config_.cpus;
  // CNTVOFF_EL2 resets to 0, which is what the timeline assumes of a vCPU
  // with no nested-offset event; a restore sets what it restored.
  seen_cntvoff_.assign(config_.cpus, 0);
  const std::string name =
      config_.timeline_host.empty() ? DefaultTimelineHost() : config_.timeline_host;
  timeline_host_ = JoinTimelineHost(timeline_, name, host_.FrequencyHz(), host_.Count().value);
}

void VmMachine::CommitPause(std::uint64_t at) {
  std::lock_guard lock(timeline_mutex_);
  RecordPause(timeline_, timeline_host_, at);
}

void VmMachine::ObserveNestedOffset(unsigned index) {
  // What the VMM can see of a guest hypervisor's offset: KVM handles its
  // CNTVOFF_EL2 writes without an exit to user space, so vtvmm reads the
  // register at each exit of the vCPU and records a change at the exit
  // where it first sees it. A change between two exits is placed at the
  // later one; offsets set and replaced between two exits are not seen.
  auto voff = vcpus_[index]->GetRegister(regs::kCntvoffEl2);
  if (!voff) {
    NoteOnce(warned_probe_, "timeline: CNTVOFF_EL2: " + voff.error().Message());
    return;
  }
  // seen_cntvoff_[index] changes only on this vCPU's thread, or on the
  // main thread while this vCPU is paused (a capture) or not yet running.
  if (*voff == seen_cntvoff_[index]) return;
  std::lock_guard lock(timeline_mutex_);
  RecordNestedOffsetLocked(index, *voff, host_.Count().value);
}

void VmMachine::RecordNestedOffsetLocked(unsigned index, std::uint64_t cntvoff, std::uint64_t at) {
  RecordNestedOffset(timeline_, timeline_host_, index, cntvoff, at, seen_cntvoff_[index]);
}

void VmMachine::WriteTimeline() {
  if (config_.timeline_path.empty()) return;
  std::lock_guard lock(timeline_mutex_);
  if (timeline_.events.empty()) return;
  if (auto r = WriteFileAtomically(config_.timeline_path, timeline_.Encode()); !r) {
    std::fprintf(stderr, "vtvmm: the timeline was not written: %s\n", r.error().Message().c_str());
  }
}

state::CapturePair VmMachine::PauseCapturePair() const {
  const state::CapturePair now = host_.CaptureNow();
  std::uint64_t stopped = 0;
  for (std::uint64_t c : last_exit_count_) stopped = std::max(stopped, c);
  // No vCPU ran the guest, or a counter read that is not behind now: take now.
  if (stopped == 0 || stopped > now.host_counter) return now;
  // The wall clock at that count, from the one read now.
  const auto back =
      TicksToNanosecondsCeil(Ticks{now.host_counter - stopped}, FrequencyHz{host_.FrequencyHz()});
  return state::CapturePair{stopped, now.wall_clock_ns - static_cast<std::int64_t>(back.value)};
}

Result<void> VmMachine::ApplyResumePlan(const state::ResumePlan& plan, bool record) {
  return clock_.features().vm_offset_api
             ? ApplyCounterOffsets(plan.vm_offset, plan.vm_offset, record)
             : ApplyCounterOffsets(plan.virtual_offset, plan.physical_offset, record);
}

Result<void> VmMachine::FinishResume() {
  if (!restored_time_ || values_restore_) return Ok();
  // The offsets were set first thing in the restore, before CTL/CVAL; set
  // again now, from a capture pair taken at the last moment before the
  // vCPUs run, so the time spent restoring is not added to (or, under
  // freeze, lost from) the guest's step. The plan is the same function of
  // the saved state, so the guest-visible counts do not change.
  resumed_at_ = host_.CaptureNow();
  auto plan = state::PlanResume(*restored_time_, config_.policy, resumed_at_, host_.FrequencyHz());
  if (!plan) return tl::unexpected(plan.error());
  // Recorded by the main thread once the guest runs (Run), not here
  // between the final offset and KVM_RUN.
  if (auto r = ApplyResumePlan(*plan, /*record=*/false); !r) return r;
  offset_set_at_ = host_.Count().value;
  final_plan_ = *plan;
  return Ok();
}

Result<void> VmMachine::ReportRestoreStep() {
  // How far each vCPU's virtual counter already is from where it paused,
  // read after the offsets are set (vtime) or the values written (the
  // comparison method): the step the guest would see, up to the time the
  // vCPUs take to enter. One line, for the comparison table.
  if (!values_restore_) {
    auto plan =
        state::PlanResume(*restored_time_, config_.policy, host_.CaptureNow(), host_.FrequencyHz());
    if (!plan) return tl::unexpected(plan.error());
    // Provisional, as the restore's first: FinishResume sets (and records)
    // the final offsets.
    if (auto r = ApplyResumePlan(*plan, /*record=*/false); !r) return r;
  }
  std::int64_t lo = 0, hi = 0;
  for (unsigned i = 0; i < vcpus_.size(); ++i) {
    auto now = vcpus_[i]->GetRegister(regs::kCntvct);
    if (!now) return tl::unexpected(now.error());
    const auto step = static_cast<std::int64_t>(*now - paused_counts_[i]);
    lo = i == 0 ? step : std::min(lo, step);
    hi = i == 0 ? step : std::max(hi, step);
  }
  std::fprintf(stderr,
               "vtvmm: resume: %s, %zu vCPUs: CNTVCT minus its value at pause, read just before "
               "the vCPUs run: min %lld max %lld ticks; guest-time ioctls: %llu VM offset, "
               "%llu counter-value writes, %llu timer register writes\n",
               values_restore_ ? "per-vCPU counter values (comparison method)"
                               : "offsets and one capture pair (vtime)",
               vcpus_.size(), static_cast<long long>(lo), static_cast<long long>(hi),
               static_cast<unsigned long long>(counter_offset_ioctls_),
               static_cast<unsigned long long>(counter_value_writes_),
               static_cast<unsigned long long>(timer_register_writes_));
  return Ok();
}

Result<MachineSnapshot> VmMachine::Capture(bool with_ram) {
  MachineSnapshot s;
  s.cpus = config_.cpus;
  s.ram_size = ram_.size();
  s.irqchip = config_.irqchip;
  s.pvtime = pvtime_.has_value();
  s.pvtime_base = pvtime_ ? config_.pvtime_base : 0;
  s.vtimer_ppi = static_cast<std::uint32_t>(config_.vtimer_ppi);
  s.ptimer_ppi = static_cast<std::uint32_t>(config_.ptimer_ppi);
  // Guest time: the offsets vtvmm applied and one capture pair, never a
  // counter value read per vCPU.
  state::SavedState& t = s.time;
  t.counter_frequency_hz = host_.FrequencyHz();
  t.offset_api = clock_.vm_offset_set() ? state::OffsetApi::kVmOffset
                 : clock_.virtual_source() == arch::OffsetSource::kCounterWrite
                     ? state::OffsetApi::kLegacyCounterWrites
                     : state::OffsetApi::kNone;
  t.virtual_offset = clock_.virtual_offset().value;
  t.physical_offset = clock_.physical_offset().value;
  t.pause = PauseCapturePair();
  for (unsigned i = 0; i < vcpus_.size(); ++i) {
    backend::Vcpu& vcpu = *vcpus_[i];
    auto timers = vcpu.CaptureTimers();
    if (!timers) return tl::unexpected(timers.error());
    state::VcpuTime vt = *timers;
    if (pvtime_) {
      // The revision saved is the one the backend served, never the
      // guest-writable word in the record; the count has no other copy
      // than the record.
      auto rec =
          pvtime::ReadRecord({pvtime_->data() + pvtime::RecordOffset(i), pvtime::kRecordSize});
      if (!rec) return tl::unexpected(rec.error());
      vt.pvtime.enabled = true;
      vt.pvtime.ipa = config_.pvtime_base + pvtime::RecordOffset(i);
      vt.pvtime.revision = caps_.pvtime_revisions.front();
      vt.pvtime.stolen_ns = rec->stolen_ns;
    }
    t.vcpus.push_back(vt);

    VcpuSnapshot vs;
    // The comparison method saves the counters by value, like other VMMs.
    auto regs = vcpu.SaveRegisters(config_.time_transfer == MachineConfig::TimeTransfer::kValues);
    if (!regs) return tl::unexpected(regs.error());
    for (backend::RegisterBytes& r : *regs) {
      vs.registers.push_back(RegisterValue{r.id, std::move(r.bytes)});
    }
    auto mp = vcpu.GetPowerState();
    if (!mp) return tl::unexpected(mp.error());
    vs.mp_state = *mp;
    s.vcpus.push_back(std::move(vs));
  }
  if (backend_gic_) {
    auto gic = vm_->SaveIrqChip();
    if (!gic) return tl::unexpected(gic.error());
    s.vgic = std::move(*gic);
  }
  if (gic_) {
    std::lock_guard lock(gic_mutex_);
    s.user_gic = gic_->Save();
  }
  if (gic3_) {
    return Fail(ErrorCode::kUnsupported,
                "vtvmm's GICv3 (--el2 with its own irqchip) is not in snapshots yet");
  }
  {
    std::lock_guard lock(uart_mutex_);
    s.uart = uart_.Save();
    if (virtio_console_) s.virtio_console = virtio_console_->Save();
    s.debug_print_addr = debug_print_.address();
  }
  {
    std::lock_guard lock(rtc_mutex_);
    s.rtc = rtc_.Save();
  }
  if (timeline_on_) {
    std::unique_lock lock(timeline_mutex_);
    // A guest hypervisor's offsets as they are at the pause, where a
    // change came after the vCPU's last exit.
    for (unsigned i = 0; i < t.vcpus.size() && i < seen_cntvoff_.size(); ++i) {
      if (t.vcpus[i].nested)
        RecordNestedOffsetLocked(i, t.vcpus[i].cntvoff_el2, t.pause.host_counter);
    }
    trace::Timeline paused = timeline_;
    lock.unlock();
    RecordPause(paused, timeline_host_, t.pause.host_counter);
    s.timeline = paused.Encode();
  }
  if (with_ram) s.ram.assign(ram_.data(), ram_.data() + ram_.size());
  if (pvtime_) s.pvtime_region.assign(pvtime_->data(), pvtime_->data() + pvtime_->size());
  return s;
}

Result<std::string> VmMachine::PauseFor(std::uint64_t ms) {
  // A pause in place: the guest's time is captured as a snapshot would
  // capture it, and resumed under the policy as a restore would resume it,
  // with the same VM, so only the time away differs from a restore.
  PauseAll();
  auto snap = Capture(/*with_ram=*/false);
  if (!snap) {
    ResumeAll();
    return tl::unexpected(snap.error());
  }
  const timespec away{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1'000'000};
  timespec left{};
  for (timespec t = away; clock_nanosleep(CLOCK_MONOTONIC, 0, &t, &left) == EINTR;) t = left;
  const state::CapturePair now = host_.CaptureNow();
  auto plan = state::PlanResume(snap->time, config_.policy, now, host_.FrequencyHz());
  if (!plan) {
    ResumeAll();
    return tl::unexpected(plan.error());
  }
  CommitPause(snap->time.pause.host_counter);
  if (auto r = ApplyResumePlan(*plan); !r) {
    ResumeAll();
    return tl::unexpected(r.error());
  }
  ResumeAll();
  WriteTimeline();
  const std::uint64_t paused = snap->time.VirtualCountAtPause();
  return "paused " + std::to_string(ms) + " ms, resumed (policy " +
         std::string(state::NameOf(config_.policy)) + "): CNTVCT paused at " +
         std::to_string(paused) + ", resumes at " + std::to_string(plan->virtual_count_at_resume) +
         " (+" + std::to_string(plan->virtual_count_at_resume - paused) + " ticks); away " +
         std::to_string(now.wall_clock_ns - snap->time.pause.wall_clock_ns) +
         " ns by the wall clock";
}

Result<void> VmMachine::WriteSnapshot() {
  PauseAll();
  auto snap = Capture();
  if (!snap) return tl::unexpected(snap.error());
  auto bytes = EncodeSnapshot(*snap);
  if (!bytes) return tl::unexpected(bytes.error());
  if (auto r = WriteFileAtomically(config_.snapshot_path, *bytes); !r) return r;
  CommitPause(snap->time.pause.host_counter);
  Stop(GuestEnd::kSnapshot, 0,
       "snapshot of guest time at host counter " + std::to_string(snap->time.pause.host_counter) +
           " (guest CNTVCT " + std::to_string(snap->time.VirtualCountAtPause()) + ") written to " +
           config_.snapshot_path + " (" + std::to_string(bytes->size()) + " bytes)");
  return Ok();
}

void VmMachine::CheckCounterProbe(unsigned index, bool physical, std::uint64_t value) {
  // The host counter now, after the guest's read and its exit: the model's
  // count for it can only be at or past the guest's value.
  const HostCount now = host_.Count();
  arch::NestedOffsets nested;
  if (config_.el2) {
    // What the VMM can see of a guest hypervisor's offset: its CNTVOFF_EL2
    // as KVM holds it at this exit (the nested guest's, when it made it).
    auto voff = vcpus_[index]->GetRegister(regs::kCntvoffEl2);
    if (!voff) {
      NoteOnce(warned_probe_, "counter probe: " + voff.error().Message());
      return;
    }
    nested.enabled = true;
    nested.cntvoff_el2 = Ticks{*voff};
  }
  const std::uint64_t model =
      physical ? clock_.PhysicalCount(now).value : clock_.VirtualCount(now, nested).value;
  const std::uint64_t window = model - value;  // modulo 2^64
  std::lock_guard lock(probe_mutex_);
  ++probes_.count;
  if (static_cast<std::int64_t>(window) < 0) {
    ++probes_.ahead;
    return;
  }
  probes_.min_window = std::min(probes_.min_window, window);
  probes_.max_window = std::max(probes_.max_window, window);
}

std::string VmMachine::ProbeReport() const {
  std::lock_guard lock(probe_mutex_);
  if (probes_.count == 0) return "";
  std::string out = " counter_probes=" + std::to_string(probes_.count) +
                    " probes_ahead=" + std::to_string(probes_.ahead);
  if (probes_.count == probes_.ahead) return out + " probe_window=none";
  const FrequencyHz hz{host_.FrequencyHz()};
  auto us = [&hz](std::uint64_t ticks) {
    return std::to_string(TicksToNanosecondsCeil(Ticks{ticks}, hz).value / 1000);
  };
  return out + " probe_window_ticks=" + std::to_string(probes_.min_window) + ".." +
         std::to_string(probes_.max_window) + " probe_window_us=" + us(probes_.min_window) + ".." +
         us(probes_.max_window);
}

}  // namespace vtime::vmm::detail
