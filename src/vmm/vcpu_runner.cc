#include "vmm/machine_impl.h"

namespace vtime::vmm::detail {

void VmMachine::WaitForPeersOnCpu(unsigned index) {
  // A peer is on a CPU if its heartbeat moves while this thread watches;
  // one that does not move within a short look is off its CPU (or behind
  // this thread on this one), so yield and look again. More vCPUs than host
  // CPUs can never all be on one: after the bound, go anyway.
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto give_up = start + std::chrono::milliseconds(20);
  std::vector<std::uint64_t> seen(gate_beat_.size());
  auto done = [&](bool seen_all) {
    gate_peers_seen_ = seen_all;
    gate_peer_wait_us_ = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  };
  while (!stop_.load() && Clock::now() < give_up) {
    for (unsigned i = 0; i < seen.size(); ++i) seen[i] = gate_beat_[i].load();
    const auto look_until = Clock::now() + std::chrono::microseconds(200);
    bool all = false;
    while (!all && Clock::now() < look_until) {
      all = true;
      for (unsigned i = 0; i < seen.size() && all; ++i) {
        all = i == index || gate_beat_[i].load() != seen[i];
      }
    }
    if (all) return done(true);
    sched_yield();
  }
  done(false);
}

void VmMachine::ReportOwnResumePart() {
  // The resume's parts up to the guest: the final offset's ioctl (from the
  // capture pair it is computed from, where the guest's time restarts, to
  // KVM having it), then vtvmm's own part (from there to each vCPU's first
  // KVM_RUN). The kernel's part after that (the entry, stage-2 faults) and
  // the guest's are not in either.
  const FrequencyHz hz{host_.FrequencyHz()};
  auto us = [&hz](std::uint64_t from, std::uint64_t to) {
    return static_cast<double>(TicksToNanosecondsCeil(Ticks{to - from}, hz).value) / 1000.0;
  };
  std::string per_vcpu;
  std::uint64_t last = 0;
  // (The main thread waited for every first entry before calling this.)
  for (unsigned i = 0; i < first_entry_count_.size(); ++i) {
    const std::uint64_t entry = first_entry_count_[i].load();
    if (entry == 0 || entry < offset_set_at_) return;  // stopped before it ran
    last = std::max(last, entry);
    char one[48];
    std::snprintf(one, sizeof one, "%s%.1f (on CPU %d)", i == 0 ? "" : ", ",
                  us(offset_set_at_, entry), entry_cpu_[i].load());
    per_vcpu += one;
  }
  char peers[96] = "";
  if (first_entry_count_.size() > 1) {
    std::snprintf(peers, sizeof peers, "; it %s the others running after %.0f us",
                  gate_peers_seen_ ? "saw" : "did not see", gate_peer_wait_us_);
  }
  std::fprintf(
      stderr,
      "vtvmm: resume: the final offset's ioctl %.1f us (from its capture pair, set by vCPU "
      "%u%s); then vtvmm's own part %.1f us, to the last vCPU's first entry (per vCPU: "
      "%s us)\n",
      us(resumed_at_.host_counter, offset_set_at_), gate_setter_, peers, us(offset_set_at_, last),
      per_vcpu.c_str());
}

void VmMachine::UpdateIrqLinesLocked() {
  // KVM keeps a vCPU's line in its HCR_EL2.VI. KVM_IRQ_LINE sets or clears
  // that bit atomically, but loading the vCPU (each KVM_RUN, and each time
  // its thread is scheduled back in while inside KVM_RUN) rewrites the same
  // word with plain read-modify-writes of its trap bits (Linux 6.12). A
  // change made from another thread while the vCPU runs can so be undone,
  // and injected_ would then hide the loss for good: a vCPU that never sees
  // its interrupt (stop 22's CI run: a hard lockup, line 1 here, no IRQ
  // there). So a line changes only on its own vCPU's thread, outside
  // Run (the backend's KVM_RUN); another thread marks it stale and kicks that vCPU, which sets
  // it before entering again. Before the start gate opens no vCPU runs, and
  // any thread may set any line (a restore does).
  const bool running = started_.load(std::memory_order_acquire);
  for (unsigned c = 0; c < injected_.size(); ++c) {
    const bool own = !running || this_vcpu == static_cast<int>(c);
    if (own) line_stale_[c].store(false);  // settled below, whatever a kick was for
    const bool want = gic3_ ? gic3_->IrqLine(c) : gic_->IrqLine(c);
    // The GICv3's virtual interface too (the emulated backend takes its
    // lines from any thread, and is the only one with a GICv3 here).
    if (gic3_) {
      const bool virq = gic3_->VirqLine(c);
      if (virq != injected_virq_[c]) {
        if (auto r = vm_->SetVirtualIrqLine(c, virq); !r) {
          Stop(GuestEnd::kError, 1, r.error().Message());
          return;
        }
        injected_virq_[c] = virq;
      }
    }
    if (want == injected_[c]) continue;
    if (!own) {
      if (!line_stale_[c].exchange(true)) KickVcpu(c);
      continue;
    }
    if (auto r = vm_->SetIrqLine(c, want); !r) {
      Stop(GuestEnd::kError, 1, r.error().Message());
      return;
    }
    injected_[c] = want;
    if (want) ++irq_line_raises_;
  }
}

void VmMachine::KickVcpu(unsigned index) {
  // Under stop_mutex_ and only while not stopped: every vCPU thread then
  // still runs its loop (none returns before stop_ is set), so the signal
  // never goes to a thread that has ended.
  std::lock_guard lock(stop_mutex_);
  if (stop_.load() || index >= threads_) return;
  ++line_kicks_;
  vcpus_[index]->Kick();
}

void VmMachine::ApplyOwnIrqLine(unsigned index) {
  if (!line_stale_[index].load()) return;
  std::lock_guard lock(gic_mutex_);
  UpdateIrqLinesLocked();
}

void VmMachine::SyncTimerLines(unsigned index, std::uint64_t level) {
  // KVM reports the timers' output levels on every exit and exits whenever
  // they change (seed 004): forward changes only, never re-inject a level.
  std::lock_guard lock(gic_mutex_);
  const std::uint64_t old = timer_level_[index];
  if (level == old) return;
  timer_level_[index] = level;
  const std::uint64_t rose = level & ~old;
  if (rose & (backend::timer_line::kVirtual | backend::timer_line::kPhysical)) ++timer_line_rises_;
  auto set_ppi = [&](int ppi, std::uint64_t bit) {
    const auto intid = static_cast<unsigned>(ppi);
    if (gic3_) {
      gic3_->SetPpiLevel(index, intid, (level & bit) != 0);
    } else {
      gic_->SetPpiLevel(index, intid, (level & bit) != 0);
    }
  };
  set_ppi(config_.vtimer_ppi, backend::timer_line::kVirtual);
  set_ppi(config_.ptimer_ppi, backend::timer_line::kPhysical);
  if (config_.el2) {
    // The guest hypervisor's own timers, at the PPIs the device tree gives.
    set_ppi(MachineDescription{}.hvtimer_ppi, backend::timer_line::kHypVirtual);
    set_ppi(MachineDescription{}.hptimer_ppi, backend::timer_line::kHypPhysical);
  }
  UpdateIrqLinesLocked();
}

std::uint64_t VmMachine::StolenNs(unsigned index) const {
  if (!pvtime_) return 0;
  auto rec =
      pvtime::ReadRecord({pvtime_->data() + pvtime::RecordOffset(index), pvtime::kRecordSize});
  return rec ? rec->stolen_ns : 0;
}

std::string VmMachine::StealReport() const {
  // Live while the threads run (the monitor), final once they ended.
  std::string out;
  for (unsigned i = 0; i < vcpus_.size(); ++i) {
    const pid_t tid = i < vcpu_tids_.size() ? vcpu_tids_[i].load() : 0;
    const bool ended = i < final_run_delay_ns_.size();
    const std::uint64_t delay = tid != 0 ? RunDelayNs(tid) : ended ? final_run_delay_ns_[i] : 0;
    const std::uint64_t stolen = tid != 0 ? StolenNs(i) : ended ? final_stolen_ns_[i] : 0;
    out += " vcpu" + std::to_string(i) + "_run_delay_ns=" + std::to_string(delay) + " vcpu" +
           std::to_string(i) + "_stolen_ns=" + (pvtime_ ? std::to_string(stolen) : "off");
  }
  return out;
}

void VmMachine::VcpuLoop(unsigned index) {
  backend::Vcpu& vcpu = *vcpus_[index];
  this_vcpu = static_cast<int>(index);
  vcpu_tids_[index].store(static_cast<pid_t>(::syscall(SYS_gettid)));
  // On every way out: this thread's run delay and its record's stolen time,
  // read while the thread still exists.
  struct Final {
    VmMachine* m;
    unsigned i;
    ~Final() {
      m->final_run_delay_ns_[i] = RunDelayNs(m->vcpu_tids_[i].load());
      m->final_stolen_ns_[i] = m->StolenNs(i);
      m->vcpu_tids_[i].store(0);
    }
  } final_figures{this, index};
  // A kick then makes Run return at once (on KVM: with no signal handler
  // on the way out), which keeps the guest's stop-to-capture time to one
  // exit.
  if (auto r = vcpu.PrepareThread(); !r) {
    Stop(GuestEnd::kError, 1, r.error().Message());
    return;
  }
  // Warm-up: a vCPU's first KVM_RUN does KVM's one-time set-up (timers,
  // vGIC resources) before looking at immediate_exit, so this one returns
  // without entering the guest. Then the start gate: the last vCPU thread
  // to reach it sets a restored VM's offsets for the last time and goes
  // straight into KVM_RUN, so neither that set-up nor a thread wake-up is
  // in the guest's step.
  vcpu.RequestExit(true);
  (void)vcpu.Run();
  bool last = false;
  {
    std::lock_guard lock(stop_mutex_);
    last = ++ready_ == vcpus_.size();
  }
  if (last) {
    // A restore that cannot set the guest's time does not start it. Between
    // the final offset and this thread's Run only a store: no wake-up
    // call, no lock (the others watch the flag, the main thread too). And
    // only once the others are on a CPU: one that shares this thread's CPU
    // would otherwise wait for this one's time slice in the guest to end
    // (milliseconds) before it could see the flag.
    gate_setter_ = index;
    if (restored_time_ && !values_restore_) WaitForPeersOnCpu(index);
    entry_cpu_[index].store(sched_getcpu(), std::memory_order_relaxed);
    if (auto resumed = FinishResume(); !resumed) {
      Stop(GuestEnd::kError, 1, resumed.error().Message());
      return;
    }
    started_.store(true, std::memory_order_release);
  } else {
    // The gate opens within the time the last thread takes to arrive and
    // set the offset (milliseconds): yielding, not sleeping, so that this
    // thread enters the guest right after it opens, not a wake-up later.
    // Spinning on the flag in user space sees it open within a few loads;
    // a yield now and then (a system call, tens of microseconds in the lab)
    // lets a thread that shares this CPU run meanwhile.
    entry_cpu_[index].store(sched_getcpu(), std::memory_order_relaxed);
    for (std::uint32_t spins = 1;
         !started_.load(std::memory_order_acquire) && !stop_.load(std::memory_order_relaxed);
         ++spins) {
      gate_beat_[index].fetch_add(1, std::memory_order_relaxed);
      if (spins % 4096 == 0) {
        sched_yield();
        // (A system call on arm64: here, not between the gate and Run.)
        entry_cpu_[index].store(sched_getcpu(), std::memory_order_relaxed);
      }
    }
    if (stop_.load()) return;
  }
  vcpu.RequestExit(false);
  bool first_entry = true;
  while (!stop_.load()) {
    if (pause_.load()) {
      // With an exit requested, Run completes a pending MMIO or other
      // operation and returns at once: the registers are then final.
      vcpu.RequestExit(true);
      (void)vcpu.Run();
      std::unique_lock lock(stop_mutex_);
      ++parked_;
      parked_cv_.notify_all();
      resume_cv_.wait(lock, [this] { return !pause_.load() || stop_.load(); });
      --parked_;
      parked_cv_.notify_all();
      if (stop_.load()) return;
      vcpu.RequestExit(false);
      continue;
    }
    // A kick for a line another thread changed interrupts the Run below
    // if it comes after this check (the signal stays pending until then).
    if (user_gic()) ApplyOwnIrqLine(index);
    if (first_entry) {
      first_entry = false;
      first_entry_count_[index].store(host_.Count().value);
    }
    auto exit = vcpu.Run();
    last_exit_count_[index] = host_.Count().value;
    ++exits_;
    if (!exit) {
      Stop(GuestEnd::kError, 1, exit.error().Message());
      return;
    }
    // (Timer lines and MMIO reached SyncTimerLines and HandleMmio inside Run.)
    if (config_.el2 && timeline_on_) ObserveNestedOffset(index);
    switch (exit->kind) {
      case backend::ExitKind::kMmio:
        ++mmio_exits_;
        break;
      case backend::ExitKind::kInterrupted:
        ++intr_exits_;
        break;
      case backend::ExitKind::kShutdown:
        Stop(GuestEnd::kPowerOff, 0, "PSCI SYSTEM_OFF from vCPU " + std::to_string(index));
        return;
      case backend::ExitKind::kReset:
        Stop(GuestEnd::kReset, 0, "PSCI SYSTEM_RESET from vCPU " + std::to_string(index));
        return;
      default:
        Stop(GuestEnd::kError, 1, "vCPU " + std::to_string(index) + ": " + exit->detail);
        return;
    }
  }
}

}  // namespace vtime::vmm::detail
