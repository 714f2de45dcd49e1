#include "vmm/machine.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "vmm/debug_print.h"
#include "vmm/layout.h"
#include "vmm/loader.h"
#include "vmm/migration.h"
#include "vmm/pl011.h"
#include "vmm/pl031.h"
#include "vmm/timeline_record.h"
#include "vmm/virtio_console.h"
#include "vtime/arch/vm_clock.h"
#include "vtime/backend/registers.h"
#include "vtime/hex.h"
#include "vtime/pvtime/restore.h"
#include "vtime/vmm/user_gic.h"

namespace vtime::vmm {

namespace {

// The vCPU whose loop this thread runs (-1 on every other thread).
thread_local int this_vcpu = -1;
constexpr int kResumeSignal = SIGCONT;  // an operator's "resume" for a source in doubt
std::atomic<bool> g_resume_requested{false};
constexpr int kSnapshotSignal = SIGUSR2;
// The longest in-place pause the monitor takes (a day).
constexpr std::uint64_t kMaxPauseMs = 86'400'000;
std::atomic<bool> g_snapshot_requested{false};

std::uint64_t LoadLe(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  return v;
}

// Writes a file whole, through a temporary name, so a reader never sees half.
Result<void> WriteFileAtomically(const std::string& path, std::span<const std::uint8_t> bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Fail(ErrorCode::kSystem, "creating " + tmp, errno);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Fail(ErrorCode::kSystem, "writing " + tmp, err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return Fail(ErrorCode::kSystem, "flushing " + tmp, errno);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Fail(ErrorCode::kSystem, "renaming " + tmp + " to " + path, errno);
  }
  return Ok();
}
constexpr std::uint32_t kVgicNrIrqs = 128;

// While alive, a terminal on stdin (with one on stdout) passes every key to
// the guest as typed: no line editing, no echo, no signals from Ctrl-C
// (Ctrl-A x quits). Output processing stays, so lines still end as the
// terminal expects. Restored on destruction.
class RawTerminal {
 public:
  RawTerminal() {
    if (::isatty(STDIN_FILENO) != 1 || ::isatty(STDOUT_FILENO) != 1) return;
    if (::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_iflag &= ~static_cast<tcflag_t>(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR |
                                          ICRNL | IXON);
    raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  ~RawTerminal() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }

 private:
  termios saved_{};
  bool active_ = false;
};

// The scheduler's run delay of thread `tid` of this process, in ns: how long
// it waited runnable for a CPU (the second field of its schedstat), which is
// what KVM reports to the guest as stolen time. 0 if unknown.
std::uint64_t RunDelayNs(pid_t tid) {
  const std::string path = "/proc/self/task/" + std::to_string(tid) + "/schedstat";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128] = {};
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  unsigned long long on_cpu = 0, waited = 0;
  if (std::sscanf(buf, "%llu %llu", &on_cpu, &waited) != 2) return 0;
  return waited;
}

void NoteOnce(std::atomic<bool>& flag, const std::string& message) {
  if (!flag.exchange(true)) std::fprintf(stderr, "vtvmm: %s\n", message.c_str());
}

namespace regs = backend::regs;

class VmMachine final : public Machine {
 public:
  VmMachine(MachineConfig config, std::unique_ptr<backend::Hypervisor> hypervisor,
            std::unique_ptr<backend::Vm> vm, GuestMemory ram, std::optional<GuestMemory> pvtime)
      : config_(std::move(config)),
        hypervisor_(std::move(hypervisor)),
        host_(hypervisor_->Clock()),
        caps_(hypervisor_->Caps()),
        vm_(std::move(vm)),
        ram_(std::move(ram)),
        pvtime_(std::move(pvtime)),
        uart_([this](char c) { Console(c); }),
        virtio_console_(config_.console == MachineConfig::Console::kVirtio
                            ? std::optional<VirtioConsole>(
                                  std::in_place,
                                  GuestRam{layout::kRam, ram_.writable(),
                                           [this](std::uint64_t off, std::uint64_t len) {
                                             MarkDeviceWrite(off, len);
                                           }},
                                  [this](std::span<const std::uint8_t> b) { ConsoleBytes(b); })
                            : std::nullopt),
        debug_print_(
            ram_.bytes(), layout::kRam,
            [this](std::string_view text) {
              for (char c : text) Console(c);
            },
            [this](const std::string& why) { NoteOnce(warned_debug_print_, why); }),
        clock_(arch::HostTimerFeatures{
            .vm_offset_api = caps_.counter_offset && !config_.legacy_counter_writes,
            .physical_offset = caps_.physical_counter_writes,
            .ecv_cntpoff = false}) {}

  Result<void> Build(std::span<const std::uint8_t> image);
  Result<void> BuildFromSnapshot(const MachineSnapshot& snapshot);
  Result<RunResult> Run() override;
  Result<std::string> RestoredTimeReport() override;
  [[nodiscard]] RunStats stats() const override {
    RunStats s;
    s.exits = exits_.load();
    s.mmio_exits = mmio_exits_.load();
    s.intr_exits = intr_exits_.load();
    s.irq_line_raises = irq_line_raises_.load();
    s.irq_line_kicks = line_kicks_.load();
    s.timer_line_rises = timer_line_rises_.load();
    s.counter_offset_ioctls = counter_offset_ioctls_;
    s.counter_value_writes = counter_value_writes_;
    s.timer_register_writes = timer_register_writes_;
    s.trace_marks = trace_marks_.load();
    s.probes = ProbeReport();
    s.steal = StealReport();
    return s;
  }
  [[nodiscard]] std::string Describe() const override { return hypervisor_->Describe(); }

 private:
  void CheckCounterProbe(unsigned index, bool physical, std::uint64_t value);
  void ObserveNestedOffset(unsigned index);
  void RecordNestedOffsetLocked(unsigned index, std::uint64_t cntvoff, std::uint64_t at);
  [[nodiscard]] std::string ProbeReport() const;
  void Console(char c);
  void ConsoleBytes(std::span<const std::uint8_t> bytes);
  void ConsoleLocked(char c);
  void UpdateVirtioLineLocked();
  /// Room for console input now, on the device that takes it.
  std::size_t ConsoleRoomLocked();
  [[nodiscard]] std::uint64_t StolenNs(unsigned index) const;
  [[nodiscard]] std::string StealReport() const;
  void UpdateUartLineLocked();
  void ConsoleInput();
  void VcpuLoop(unsigned index);
  std::uint64_t HandleMmio(unsigned index, const backend::MmioAccess& access);
  using GicRead = std::uint32_t (UserGic::*)(unsigned, std::uint64_t, unsigned, bool*);
  using GicWrite = void (UserGic::*)(unsigned, std::uint64_t, std::uint32_t, unsigned, bool*);
  std::uint64_t GicAccess(unsigned index, const backend::MmioAccess& access, std::uint64_t offset,
                          GicRead read, GicWrite write, bool* known);
  void SyncTimerLines(unsigned index, std::uint64_t level);
  void UpdateIrqLinesLocked();
  void ApplyOwnIrqLine(unsigned index);
  void KickVcpu(unsigned index);
  void Stop(GuestEnd end, int status, std::string detail);
  Result<void> ApplyCounterOffset(std::uint64_t offset);
  // `record`: the offsets go into the timeline (not a restore's first,
  // provisional ones, which the final ones replace before the guest runs).
  Result<void> ApplyCounterOffsets(std::uint64_t virtual_offset, std::uint64_t physical_offset,
                                   bool record = true);
  // The timeline (seed 002): this host joins it, the guest paused, and the
  // file written (main thread; a failure is reported, never fatal).
  void JoinTimeline(std::optional<trace::Timeline> restored);
  void CommitPause(std::uint64_t at);
  void RecordCurrentOffsets(std::uint64_t at);
  void WriteTimeline();
  Result<void> CreateDevicesAndVcpus(const std::vector<std::uint64_t>* pvtime_ipas);
  void PauseAll();
  void ResumeAll();
  Result<void> OpenMonitor();
  void ServeMonitor();
  std::string MonitorReply(const std::string& line);
  Result<void> MigrateOut();
  Result<MachineSnapshot> Capture(bool with_ram = true);
  struct Precopy {
    bool logging = false;           // slot 0 logs dirty pages
    unsigned rounds = 0;            // rounds sent while the guest ran
    std::uint64_t pages_live = 0;   // pages sent while the guest ran
    std::uint64_t pages_paused = 0;  // pages sent while it was paused
    double first_pass_mib_s = 0;     // RAM's first copy over the link
    std::vector<std::uint64_t> dirty;  // fetched from KVM, not sent yet
  };
  Result<void> PrecopyWhileRunning(Link& link, StreamFault fault, Precopy& p);
  bool AwaitOperator(const std::string& why);
  void StopDirtyLog(Precopy& p);
  Result<void> ReportRestoreStep();
  state::CapturePair PauseCapturePair() const;
  Result<void> ApplyResumePlan(const state::ResumePlan& plan, bool record = true);
  Result<void> FinishResume();
  void ReportOwnResumePart();
  Result<void> WriteSnapshot();
  Result<std::string> PauseFor(std::uint64_t ms);

  MachineConfig config_;
  std::unique_ptr<backend::Hypervisor> hypervisor_;
  const backend::HostClock& host_;
  const backend::Capabilities& caps_;
  std::unique_ptr<backend::Vm> vm_;
  GuestMemory ram_;
  std::optional<GuestMemory> pvtime_;
  bool backend_gic_ = false;  // the backend's GICv3 (else gic_, the user one)
  std::vector<std::unique_ptr<backend::Vcpu>> vcpus_;
  unsigned threads_ = 0;  // vCPU threads started (and attached to their vCPU)
  // The console: the PL011 (vCPU threads and the input thread), its line,
  // and the input thread that feeds it from stdin.
  std::mutex uart_mutex_;
  // Pages of guest RAM a device model wrote (the virtio console's rings and
  // receive buffers), which KVM's dirty log does not see; guarded by
  // uart_mutex_, the device's lock. A pre-copy round sends them with the
  // guest's own.
  std::vector<std::uint64_t> device_dirty_;
  void MarkDeviceWrite(std::uint64_t offset, std::uint64_t len);
  void TakeDeviceDirty(std::vector<std::uint64_t>& into);
  Pl011 uart_;
  std::mutex rtc_mutex_;  // vCPU threads share the RTC
  Pl031 rtc_;
  bool uart_line_ = false;
  std::condition_variable uart_room_cv_;  // also: the virtio console got buffers
  std::thread console_input_;
  // The virtio console (--console virtio): vCPU threads and the input
  // thread, under uart_mutex_ like the UART (one console, one lock).
  std::optional<VirtioConsole> virtio_console_;
  bool virtio_line_ = false;
  DebugPrint debug_print_;
  std::atomic<bool> warned_debug_print_{false};
  arch::VmClock clock_;

  // The user-space interrupt controller and the levels last injected.
  std::mutex gic_mutex_;
  std::optional<UserGic> gic_;
  std::vector<bool> injected_;
  // A vCPU whose line another thread found out of date and kicked: its own
  // thread sets the line before its next KVM_RUN (UpdateIrqLinesLocked).
  // Written under gic_mutex_, read without it before each entry.
  std::vector<std::atomic<bool>> line_stale_;
  std::atomic<std::uint64_t> line_kicks_{0};
  std::vector<std::uint64_t> timer_level_;

  std::mutex console_mutex_;
  std::string console_line_;

  std::mutex stop_mutex_;
  std::condition_variable stopped_cv_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> pause_{false};
  std::condition_variable parked_cv_;
  std::condition_variable resume_cv_;
  unsigned parked_ = 0;
  unsigned ready_ = 0;                 // vCPU threads at the start gate
  std::atomic<bool> started_{false};  // the start gate is open
  // Each vCPU's host counter read right after its last KVM_RUN that ran the
  // guest: the guest stopped there, so a pause is captured at the latest of
  // these rather than when the VMM gets round to it. Written by the vCPU
  // thread, read by the main thread once every vCPU is parked.
  std::vector<std::uint64_t> last_exit_count_;
  // Each vCPU's host count read just before its first KVM_RUN into the
  // guest (0 until then): with resumed_at_, vtvmm's own part of a resume.
  std::vector<std::atomic<std::uint64_t>> first_entry_count_;
  // At the start gate: each waiting vCPU thread's heartbeat (it counts while
  // it spins, so it is on a CPU while the count moves), the CPU each vCPU
  // thread last waited on (-1: not seen), and the vCPU that set the final
  // offset.
  std::vector<std::atomic<std::uint64_t>> gate_beat_;
  std::vector<std::atomic<int>> entry_cpu_;
  unsigned gate_setter_ = 0;
  double gate_peer_wait_us_ = 0;  // how long it waited for the others
  bool gate_peers_seen_ = false;  // and whether it saw them all running
  // Until every other vCPU thread at the start gate is seen running (or a
  // bound passes): the last one to arrive sets the final offset only then,
  // so that no waiting thread has to be scheduled in after it.
  void WaitForPeersOnCpu(unsigned index);
  // Each vCPU thread's id, and its run delay and its PV-time record's
  // stolen time as the thread ended (the thread is gone after that).
  std::vector<std::atomic<pid_t>> vcpu_tids_;
  std::vector<std::uint64_t> final_run_delay_ns_;
  std::vector<std::uint64_t> final_stolen_ns_;
  // A restored VM's guest time as finally set, by the last vCPU thread to
  // reach the start gate.
  std::optional<state::ResumePlan> final_plan_;
  state::CapturePair resumed_at_{};
  std::uint64_t offset_set_at_ = 0;  // host count once the final offset is in KVM
  RunResult result_;
  std::optional<state::ResumePlan> restored_plan_;
  std::optional<state::SavedState> restored_time_;

  std::atomic<std::uint64_t> exits_{0}, mmio_exits_{0}, intr_exits_{0}, irq_line_raises_{0},
      timer_line_rises_{0}, trace_marks_{0};
  // The counter probes, checked against clock_ on the vCPU threads.
  struct ProbeStats {
    std::uint64_t count = 0;
    std::uint64_t ahead = 0;
    std::uint64_t min_window = ~std::uint64_t{0};
    std::uint64_t max_window = 0;
  };
  std::atomic<bool> warned_probe_{false};
  mutable std::mutex probe_mutex_;
  ProbeStats probes_;
  std::uint64_t counter_offset_ioctls_ = 0;
  std::uint64_t counter_value_writes_ = 0;
  std::uint64_t timer_register_writes_ = 0;
  bool values_restore_ = false;               // the snapshot carried counter values (kValues)
  std::vector<std::uint64_t> paused_counts_;  // each vCPU's CNTVCT at pause (restores)
  // The guest's offset timeline, kept by the main thread (a restore's
  // final offsets, set by the last vCPU at the start gate, are recorded
  // once the guest runs); written to snapshots and the file only when
  // timeline_on_.
  trace::Timeline timeline_;
  std::uint32_t timeline_host_ = 0;
  bool timeline_on_ = false;
  // vCPU threads add the nested offsets they see (ObserveNestedOffset), so
  // every change of timeline_ takes this lock.
  mutable std::mutex timeline_mutex_;
  // Per vCPU, the guest hypervisor's CNTVOFF_EL2 last recorded (--el2).
  std::vector<std::uint64_t> seen_cntvoff_;
  Fd monitor_;
  bool in_doubt_ = false;                // a migration's hand-over is in doubt
  std::optional<bool> operator_says_;    // true: the destination runs it
  std::atomic<bool> warned_mmio_{false};
  std::atomic<bool> warned_virtio_{false};
};

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
  if (!backend_gic_) {
    auto gic = UserGic::Create(UserGicConfig{.num_cpus = n, .num_irqs = 64});
    if (!gic) return tl::unexpected(gic.error());
    gic_.emplace(std::move(*gic));
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

void VmMachine::Console(char c) {
  std::lock_guard lock(console_mutex_);
  ConsoleLocked(c);
}

void VmMachine::ConsoleBytes(std::span<const std::uint8_t> bytes) {
  std::lock_guard lock(console_mutex_);
  for (std::uint8_t b : bytes) ConsoleLocked(static_cast<char>(b));
}

void VmMachine::ConsoleLocked(char c) {
  if (c == '\r') return;
  if (c != '\n') {
    console_line_.push_back(c);
    if (console_line_.size() < 4096) return;
  }
  std::fwrite(console_line_.data(), 1, console_line_.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  console_line_.clear();
}

void VmMachine::UpdateUartLineLocked() {
  const bool level = uart_.Interrupt();
  if (level == uart_line_) return;
  uart_line_ = level;
  const unsigned intid = 32 + MachineDescription{}.uart_spi;
  if (backend_gic_) {
    if (auto r = vm_->SetSpiLine(intid, level); !r) NoteOnce(warned_mmio_, r.error().Message());
    return;
  }
  std::lock_guard lock(gic_mutex_);
  gic_->SetSpiLevel(intid, level);
  UpdateIrqLinesLocked();
}

void VmMachine::UpdateVirtioLineLocked() {
  const bool level = virtio_console_->Interrupt();
  if (level == virtio_line_) return;
  virtio_line_ = level;
  const unsigned intid = 32 + MachineDescription{}.virtio_console_spi;
  if (backend_gic_) {
    if (auto r = vm_->SetSpiLine(intid, level); !r) NoteOnce(warned_mmio_, r.error().Message());
    return;
  }
  std::lock_guard lock(gic_mutex_);
  gic_->SetSpiLevel(intid, level);
  UpdateIrqLinesLocked();
}

std::size_t VmMachine::ConsoleRoomLocked() {
  return virtio_console_ ? virtio_console_->Room() : uart_.Room();
}

void VmMachine::ConsoleInput() {
  // Reads stdin only as far as the PL011 has room, so a byte is either
  // still in stdin or in the guest's FIFO (which snapshots carry): nothing
  // typed or piped is dropped, even by a snapshot or a migration.
  const bool terminal = ::isatty(STDIN_FILENO) == 1 && ::isatty(STDOUT_FILENO) == 1;
  bool escape = false;  // Ctrl-A seen (terminal only)
  while (!stop_.load()) {
    std::size_t room = 0;
    {
      std::unique_lock lock(uart_mutex_);
      room = ConsoleRoomLocked();
      if (room == 0) {
        // Wait for the guest to read (or to enable its receiver).
        uart_room_cv_.wait_for(lock, std::chrono::milliseconds(20));
        continue;
      }
    }
    pollfd p{STDIN_FILENO, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    std::uint8_t buf[64];
    const ssize_t n = ::read(STDIN_FILENO, buf, std::min(room, sizeof buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a pipe that ended: the guest runs on without input
    std::unique_lock lock(uart_mutex_);
    std::vector<std::uint8_t> typed;
    for (ssize_t i = 0; i < n; ++i) {
      const std::uint8_t b = buf[i];
      if (terminal && escape) {
        escape = false;
        if (b == 'x' || b == 'X') {
          lock.unlock();
          Stop(GuestEnd::kPowerOff, 0, "quit from the console (Ctrl-A x)");
          return;
        }
        if (b != 0x01) continue;  // Ctrl-A Ctrl-A sends one Ctrl-A
      } else if (terminal && b == 0x01) {
        escape = true;
        continue;
      }
      typed.push_back(b);
    }
    // Only the guest turning its receiver off (or taking back its buffers)
    // since `room` was read can refuse a byte; such a byte is the guest's to
    // lose, as on a real UART.
    if (typed.empty()) continue;
    if (virtio_console_) {
      (void)virtio_console_->Receive(typed);
      UpdateVirtioLineLocked();
      continue;
    }
    for (std::uint8_t b : typed) (void)uart_.Receive(b);
    UpdateUartLineLocked();
  }
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

namespace {
// Pre-copy stops sending while the guest runs after this many rounds, or
// once a round leaves at most kPrecopyStopPages dirty (256 KiB).
constexpr unsigned kPrecopyMaxRounds = 8;
constexpr std::uint64_t kPrecopyStopPages = 64;

double MibPerSecond(std::uint64_t bytes, std::chrono::steady_clock::duration took) {
  const double s = std::chrono::duration<double>(took).count();
  return s > 0 ? static_cast<double>(bytes) / (1 << 20) / s : 0;
}

std::uint64_t CountPages(const std::vector<std::uint64_t>& bits) {
  std::uint64_t n = 0;
  for (std::uint64_t w : bits) n += static_cast<std::uint64_t>(__builtin_popcountll(w));
  return n;
}
}  // namespace

void VmMachine::MarkDeviceWrite(std::uint64_t offset, std::uint64_t len) {
  if (len == 0) return;
  if (device_dirty_.empty()) device_dirty_.assign((ram_.size() / kPageSize + 63) / 64, 0);
  for (std::uint64_t page = offset / kPageSize; page <= (offset + len - 1) / kPageSize; ++page) {
    device_dirty_[page / 64] |= std::uint64_t{1} << (page % 64);
  }
}

void VmMachine::TakeDeviceDirty(std::vector<std::uint64_t>& into) {
  std::lock_guard lock(uart_mutex_);
  for (std::size_t i = 0; i < device_dirty_.size() && i < into.size(); ++i) {
    into[i] |= device_dirty_[i];
    device_dirty_[i] = 0;
  }
}

Result<void> VmMachine::PrecopyWhileRunning(Link& link, StreamFault fault, Precopy& p) {
  const std::uint64_t pages = ram_.size() / kPageSize;
  p.dirty.assign((pages + 63) / 64, 0);
  // What a device wrote before this point is in the first pass.
  {
    std::lock_guard lock(uart_mutex_);
    std::fill(device_dirty_.begin(), device_dirty_.end(), 0);
  }
  // From here KVM logs every page the guest writes.
  if (auto r = vm_->MapMemory(0, layout::kRam, ram_.writable(), /*dirty_log=*/true); !r) return r;
  p.logging = true;
  std::vector<std::uint64_t> all(p.dirty.size(), ~std::uint64_t{0});
  if (pages % 64 != 0) all.back() = (std::uint64_t{1} << (pages % 64)) - 1;
  const auto t0 = std::chrono::steady_clock::now();
  auto sent = SendPages(link, ram_.bytes(), all,
                        fault == StreamFault::kTruncate ? fault : StreamFault::kNone,
                        PrintTenths("sent"));
  if (!sent) return tl::unexpected(sent.error());
  p.first_pass_mib_s = MibPerSecond(*sent * kPageSize, std::chrono::steady_clock::now() - t0);
  p.pages_live += *sent;
  std::fprintf(stderr, "vtvmm: migration: pre-copy round 1: all %llu pages sent while the guest runs\n",
               static_cast<unsigned long long>(*sent));
  for (unsigned round = 2; round <= kPrecopyMaxRounds; ++round) {
    if (auto r = vm_->DirtyLog(0, p.dirty); !r) return r;
    TakeDeviceDirty(p.dirty);
    const std::uint64_t n = CountPages(p.dirty);
    if (n <= kPrecopyStopPages) break;  // these go with the pause
    auto again = SendPages(link, ram_.bytes(), p.dirty);
    if (!again) return tl::unexpected(again.error());
    p.pages_live += *again;
    p.rounds = round;
    std::fill(p.dirty.begin(), p.dirty.end(), 0);
    std::fprintf(stderr, "vtvmm: migration: pre-copy round %u: %llu pages the guest dirtied\n", round,
                 static_cast<unsigned long long>(*again));
  }
  if (p.rounds == 0) p.rounds = 1;
  return Ok();
}

void VmMachine::StopDirtyLog(Precopy& p) {
  if (!p.logging) return;
  if (auto r = vm_->MapMemory(0, layout::kRam, ram_.writable(), /*dirty_log=*/false); !r) {
    NoteOnce(warned_mmio_, "turning dirty logging off: " + r.error().Message());
  }
  p.logging = false;
}

Result<void> VmMachine::MigrateOut() {
  auto to = ParseEndpoint(config_.migrate_to);
  if (!to) return tl::unexpected(to.error());
  if (!config_.secure_link) {
    return Fail(ErrorCode::kInvalidArgument,
                "no migration credentials: give --tls-psk FILE or --tls-x509 DIR (or --insecure "
                "for plain TCP)");
  }
  // Connect and authenticate before pausing: a destination that is not
  // there, or not the one we trust, costs the guest nothing.
  auto tcp = ConnectTo(*to, 10'000);
  if (!tcp) return tl::unexpected(tcp.error());
  auto secured = config_.secure_link(std::move(*tcp));
  if (!secured) return tl::unexpected(secured.error());
  Link& link = **secured;
  std::fprintf(stderr, "vtvmm: migration: connected to %s (%s)\n", config_.migrate_to.c_str(),
               link.Describe().c_str());
  const auto fault = config_.migrate_fault == 1   ? StreamFault::kCorrupt
                     : config_.migrate_fault == 2 ? StreamFault::kTruncate
                                                  : StreamFault::kNone;
  if (auto r = SendHello(link, StreamHello{ram_.size(), config_.cpus, config_.precopy}); !r) {
    return r;
  }
  Precopy pre;
  if (config_.precopy) {
    // The guest runs on while RAM goes over; a failure here leaves it be.
    if (auto r = PrecopyWhileRunning(link, fault, pre); !r) {
      StopDirtyLog(pre);
      return r;
    }
  }
  const auto paused_at = std::chrono::steady_clock::now();
  PauseAll();
  auto fail = [this, &pre](const Error& e) -> Result<void> {
    StopDirtyLog(pre);
    ResumeAll();
    return tl::unexpected(e);
  };
  if (stop_.load()) {
    // The guest ended (or failed) while its RAM was on the way: there is
    // nothing left to hand over, and the destination gets a cut stream.
    return fail(Error{ErrorCode::kBadState, 0, "the guest stopped during the migration"});
  }
  const std::uint64_t pages = ram_.size() / kPageSize;
  std::vector<std::uint64_t> last((pages + 63) / 64, 0);
  if (config_.precopy) {
    // What the guest dirtied since the last round, and what that round left.
    if (auto r = vm_->DirtyLog(0, last); !r) return fail(r.error());
    TakeDeviceDirty(last);
    for (std::size_t i = 0; i < last.size(); ++i) last[i] |= pre.dirty[i];
  } else {
    std::fill(last.begin(), last.end(), ~std::uint64_t{0});
    if (pages % 64 != 0) last.back() = (std::uint64_t{1} << (pages % 64)) - 1;
  }
  const auto sending = std::chrono::steady_clock::now();
  auto sent = SendPages(link, ram_.bytes(), last, config_.precopy ? StreamFault::kNone : fault,
                        config_.precopy ? Progress{} : PrintTenths("sent"));
  if (!sent) return fail(sent.error());
  pre.pages_paused = *sent;
  if (!config_.precopy) {
    pre.first_pass_mib_s =
        MibPerSecond(*sent * kPageSize, std::chrono::steady_clock::now() - sending);
  }
  auto snap = Capture(/*with_ram=*/false);
  if (!snap) return fail(snap.error());
  auto bytes = EncodeSnapshot(*snap, RamContents::kSentSeparately);
  if (!bytes) return fail(bytes.error());
  if (auto r = SendFinalSnapshot(link, *bytes, fault); !r) return fail(r.error());
  const SourceHandover handover = HandOverAsSource(link, config_.handover_hook);
  if (handover.outcome == SourceOutcome::kResume) {
    return fail(Error{ErrorCode::kBadState, 0, handover.why});
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - paused_at)
                      .count();
  const std::string how =
      config_.precopy ? "pre-copy: " + std::to_string(pre.pages_live) + " pages in " +
                            std::to_string(pre.rounds) + " rounds while the guest ran, " +
                            std::to_string(pre.pages_paused) + " pages and " +
                            std::to_string(bytes->size()) + " bytes of state while paused"
                      : "stop-and-copy: " + std::to_string(pre.pages_paused) + " pages and " +
                            std::to_string(bytes->size()) + " bytes of state";
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.1f", pre.first_pass_mib_s);
  const std::string moved = "migrated to " + config_.migrate_to + " (" + how + "; RAM at " + rate +
                            " MiB/s over " + link.Describe() +
                            "); the guest was paused here for " + std::to_string(ms) +
                            " ms (guest CNTVCT at pause " +
                            std::to_string(snap->time.VirtualCountAtPause()) + ")";
  if (handover.outcome == SourceOutcome::kHandedOver) {
    CommitPause(snap->time.pause.host_counter);
    Stop(GuestEnd::kMigrated, 0, moved);
    return Ok();
  }
  // In doubt: the guest stays paused here until an operator says which
  // side runs it.
  if (AwaitOperator(handover.why)) {
    CommitPause(snap->time.pause.host_counter);
    Stop(GuestEnd::kMigrated, 0,
         "the operator said the destination runs the guest; leaving it there (" + how + ")");
    return Ok();
  }
  return fail(Error{ErrorCode::kBadState, 0,
                    "the operator said the destination does not run the guest (" + handover.why +
                        ")"});
}

bool VmMachine::AwaitOperator(const std::string& why) {
  const std::string sock = monitor_.valid() ? config_.monitor_path : "SOCKET";
  std::fprintf(stderr,
               "vtvmm: migration IN DOUBT: %s. The guest stays paused here: this vtvmm cannot "
               "tell whether the destination runs it, and will not guess. If the destination "
               "does NOT run it: `vtvmm monitor %s resume`%s; if it does: `vtvmm monitor %s "
               "quit`%s.\n",
               why.c_str(), sock.c_str(), monitor_.valid() ? "" : " (no monitor: kill -CONT)",
               sock.c_str(), monitor_.valid() ? "" : " (no monitor: kill -TERM)");
  in_doubt_ = true;
  g_resume_requested.store(false);
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_resume_requested.store(true); };
  sigemptyset(&sa.sa_mask);
  sigaction(kResumeSignal, &sa, nullptr);
  operator_says_.reset();
  while (!operator_says_) {
    if (g_resume_requested.exchange(false)) {
      operator_says_ = false;
      break;
    }
    if (monitor_.valid()) {
      pollfd p{monitor_.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) ServeMonitor();
    } else {
      ::usleep(50'000);
    }
  }
  signal(kResumeSignal, SIG_DFL);
  in_doubt_ = false;
  return *operator_says_;
}

Result<void> VmMachine::OpenMonitor() {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (config_.monitor_path.size() >= sizeof sa.sun_path) {
    return Fail(ErrorCode::kInvalidArgument, "--monitor path is too long");
  }
  std::memcpy(sa.sun_path, config_.monitor_path.c_str(), config_.monitor_path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Fail(ErrorCode::kSystem, "monitor socket", errno);
  ::unlink(config_.monitor_path.c_str());
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0 ||
      ::listen(fd.get(), 4) != 0) {
    return Fail(ErrorCode::kSystem, "monitor socket " + config_.monitor_path, errno);
  }
  monitor_ = std::move(fd);
  return Ok();
}

std::string VmMachine::MonitorReply(const std::string& line) {
  const auto space = line.find(' ');
  const std::string verb = line.substr(0, space);
  const std::string arg = space == std::string::npos ? "" : line.substr(space + 1);
  if (in_doubt_) {
    // Only the operator's decision, or a look, while a hand-over is in doubt.
    if (line == "resume") {
      operator_says_ = false;
      return "ok: resuming the guest here";
    }
    if (line == "quit") {
      operator_says_ = true;
      return "ok: leaving the guest to the destination; exiting";
    }
    if (line != "stats") {
      return "error: a migration is in doubt: answer 'resume' (the destination does not run "
             "the guest) or 'quit' (it does)";
    }
  } else if (line == "resume" || line == "quit") {
    return "error: no migration is in doubt";
  }
  if (verb == "snapshot" && !arg.empty()) {
    config_.snapshot_path = arg;
    if (auto r = WriteSnapshot(); !r) {
      ResumeAll();
      return "error: " + r.error().Message() + "; the guest keeps running";
    }
    return "ok: " + result_.detail;
  }
  if (verb == "pause" && !arg.empty()) {
    std::uint64_t ms = 0;
    const auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), ms);
    if (ec != std::errc{} || end != arg.data() + arg.size() || ms == 0 || ms > kMaxPauseMs) {
      return "error: pause needs a time in milliseconds, 1 to " + std::to_string(kMaxPauseMs);
    }
    auto r = PauseFor(ms);
    if (!r) return "error: " + r.error().Message();
    return "ok: " + *r;
  }
  if (verb == "migrate" && !arg.empty()) {
    config_.migrate_to = arg;
    if (auto r = MigrateOut(); !r) {
      return "error: " + r.error().Message() + "; the guest keeps running here";
    }
    return "ok: " + result_.detail;
  }
  if (verb == "stats" && arg.empty()) {
    const RunStats st = stats();
    return "ok: exits=" + std::to_string(st.exits) + " mmio=" + std::to_string(st.mmio_exits) +
           " intr=" + std::to_string(st.intr_exits) +
           " trace_marks=" + std::to_string(st.trace_marks) +
           " counter_offset_ioctls=" + std::to_string(st.counter_offset_ioctls) +
           " virtual_offset=" + std::to_string(clock_.virtual_offset().value) +
           " physical_offset=" + std::to_string(clock_.physical_offset().value) + StealReport();
  }
  return "error: unknown command '" + line +
         "'; commands: snapshot FILE, migrate ADDRESS:PORT, pause MS, stats (and, while a "
         "migration is in doubt, resume or quit)";
}

void VmMachine::ServeMonitor() {
  // One short connection per command; the socket is non-blocking, so a
  // client that connects and sends nothing cannot stall the VM.
  const int fd = ::accept4(monitor_.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  Fd client(fd);
  std::string line;
  char c;
  for (int waited = 0; line.size() < 4096;) {
    pollfd p{client.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) {
      if (++waited >= 20) return;  // 2 s without a full line: drop it
      continue;
    }
    const ssize_t n = ::read(client.get(), &c, 1);
    if (n <= 0 || c == '\n') break;
    line.push_back(c);
  }
  const std::string reply = MonitorReply(line) + "\n";
  (void)!::write(client.get(), reply.data(), reply.size());
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
  {
    std::lock_guard lock(uart_mutex_);
    s.uart = uart_.Save();
    if (virtio_console_) s.virtio_console = virtio_console_->Save();
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

void VmMachine::UpdateIrqLinesLocked() {
  // KVM keeps a vCPU's line in its HCR_EL2.VI. KVM_IRQ_LINE sets or clears
  // that bit atomically, but loading the vCPU (each KVM_RUN, and each time
  // its thread is scheduled back in while inside KVM_RUN) rewrites the same
  // word with plain read-modify-writes of its trap bits (Linux 6.12). A
  // change made from another thread while the vCPU runs can so be undone,
  // and injected_ would then hide the loss for good: a vCPU that never sees
  // its interrupt (stop 22's CI run: a hard lockup, line 1 here, no IRQ
  // there). So a line changes only on its own vCPU's thread, outside
  // KVM_RUN; another thread marks it stale and kicks that vCPU, which sets
  // it before entering again. Before the start gate opens no vCPU runs, and
  // any thread may set any line (a restore does).
  const bool running = started_.load(std::memory_order_acquire);
  for (unsigned c = 0; c < injected_.size(); ++c) {
    const bool own = !running || this_vcpu == static_cast<int>(c);
    if (own) line_stale_[c].store(false);  // settled below, whatever a kick was for
    const bool want = gic_->IrqLine(c);
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
  gic_->SetPpiLevel(index, static_cast<unsigned>(config_.vtimer_ppi),
                    (level & backend::timer_line::kVirtual) != 0);
  gic_->SetPpiLevel(index, static_cast<unsigned>(config_.ptimer_ppi),
                    (level & backend::timer_line::kPhysical) != 0);
  UpdateIrqLinesLocked();
}

std::uint64_t VmMachine::GicAccess(unsigned index, const backend::MmioAccess& access,
                                   std::uint64_t offset, GicRead read, GicWrite write,
                                   bool* known) {
  std::lock_guard lock(gic_mutex_);
  const auto value = static_cast<std::uint32_t>(access.data);
  std::uint64_t result = 0;
  if (access.write) {
    ((*gic_).*write)(index, offset, value, access.size, known);
  } else {
    result = ((*gic_).*read)(index, offset, access.size, known);
  }
  // Any access may change a CPU's output (an acknowledge, an EOI, an enable).
  UpdateIrqLinesLocked();
  return result;
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

std::uint64_t VmMachine::HandleMmio(unsigned index, const backend::MmioAccess& exit) {
  const std::uint64_t value = exit.data;
  const std::uint64_t a = exit.address;
  std::uint64_t read = 0;
  bool known = true;
  if (a >= layout::kUart && a < layout::kUart + layout::kUartSize) {
    if (exit.write) {
      std::lock_guard lock(uart_mutex_);
      uart_.Write(a - layout::kUart, static_cast<std::uint32_t>(value));
      UpdateUartLineLocked();
    } else {
      std::lock_guard lock(uart_mutex_);
      read = uart_.Read(a - layout::kUart);
      UpdateUartLineLocked();
      uart_room_cv_.notify_all();  // a byte left the FIFO: the input may go on
    }
  } else if (virtio_console_ && a >= layout::kVirtioConsole &&
             a < layout::kVirtioConsole + VirtioConsole::kSize) {
    std::lock_guard lock(uart_mutex_);
    if (exit.write) {
      virtio_console_->Write(a - layout::kVirtioConsole, static_cast<std::uint32_t>(value),
                             exit.size, &known);
      uart_room_cv_.notify_all();  // new receive buffers: the input may go on
    } else {
      read = virtio_console_->Read(a - layout::kVirtioConsole, exit.size, &known);
    }
    UpdateVirtioLineLocked();
    if (!virtio_console_->Fault().empty()) {
      NoteOnce(warned_virtio_, "virtio console: " + virtio_console_->Fault() +
                                   " (device needs reset; reported once)");
    }
  } else if (a >= layout::kRtc && a < layout::kRtc + layout::kRtcSize) {
    // The RTC counts the host's wall clock (plus the guest's offset).
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    std::lock_guard lock(rtc_mutex_);
    if (exit.write) {
      rtc_.Write(a - layout::kRtc, static_cast<std::uint32_t>(value), ts.tv_sec, &known);
    } else {
      read = rtc_.Read(a - layout::kRtc, ts.tv_sec, &known);
    }
  } else if (a >= layout::kTestExit && a < layout::kTestExit + layout::kTestExitSize) {
    if (exit.write) {
      Stop(GuestEnd::kTestExit, static_cast<int>(value & 0xff),
           "test finisher: " + std::to_string(value & 0xffffffff));
    }
  } else if (a >= layout::kDebugPrint && a < layout::kDebugPrint + DebugPrint::kSize) {
    if (exit.write) {
      debug_print_.Write(a - layout::kDebugPrint, value, exit.size);
    } else {
      read = debug_print_.Read(a - layout::kDebugPrint, exit.size);
    }
  } else if (a >= layout::kTraceMarker && a < layout::kTraceMarker + layout::kTraceMarkerSize) {
    // The value matters only to the host's kvm:kvm_mmio trace, which KVM
    // wrote before this exit; any other write is the guest's mistake.
    if (exit.write) {
      if (a == layout::kTraceMarker && exit.size == 8) {
        ++trace_marks_;
      } else if ((a == layout::kVirtualCountProbe || a == layout::kPhysicalCountProbe) &&
                 exit.size == 8) {
        CheckCounterProbe(index, a == layout::kPhysicalCountProbe, value);
      } else {
        known = false;
      }
    }
  } else if (gic_ && a >= layout::kGicDist && a < layout::kGicDist + UserGic::kDistSize) {
    read = GicAccess(index, exit, a - layout::kGicDist, &UserGic::DistRead, &UserGic::DistWrite,
                     &known);
  } else if (gic_ && a >= layout::kGicCpu && a < layout::kGicCpu + UserGic::kCpuSize) {
    read =
        GicAccess(index, exit, a - layout::kGicCpu, &UserGic::CpuRead, &UserGic::CpuWrite, &known);
  } else {
    known = false;
  }
  if (!known) {
    // Guest-controlled: reads as zero, writes ignored, reported once.
    NoteOnce(warned_mmio_, std::string("guest ") + (exit.write ? "write to" : "read of") +
                               " unhandled MMIO " + Hex(a) + " (RAZ/WI; reported once)");
  }
  return read;
}

std::uint64_t VmMachine::StolenNs(unsigned index) const {
  if (!pvtime_) return 0;
  auto rec = pvtime::ReadRecord(
      {pvtime_->data() + pvtime::RecordOffset(index), pvtime::kRecordSize});
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
    // the final offset and this thread's KVM_RUN only a store: no wake-up
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
        // (A system call on arm64: here, not between the gate and KVM_RUN.)
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
    // A kick for a line another thread changed interrupts the KVM_RUN below
    // if it comes after this check (the signal stays pending until then).
    if (gic_) ApplyOwnIrqLine(index);
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
                       static_cast<unsigned long long>(timer_level_[c]),
                       gic_->RunningPriority(c), pending.empty() ? " none" : pending.c_str(),
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

}  // namespace

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
  if (config.el2 && config.irqchip == IrqChip::kUser) {
    return Fail(ErrorCode::kInvalidArgument,
                "--el2 needs --irqchip kernel: vtvmm's user irqchip has no GIC virtualization "
                "interface for a guest hypervisor");
  }
  if (config.pvtime && !caps.steal_time) {
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
  auto vm = hypervisor->CreateVm(backend::VmConfig{.irqchip = config.irqchip == IrqChip::kKernel
                                                                  ? backend::IrqChipKind::kBackend
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

Result<std::string> MonitorCommand(const std::string& socket_path, const std::string& command) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof sa.sun_path) {
    return Fail(ErrorCode::kInvalidArgument, "monitor path is too long");
  }
  std::memcpy(sa.sun_path, socket_path.c_str(), socket_path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    return Fail(ErrorCode::kSystem, "connecting to the monitor " + socket_path, errno);
  }
  const std::string line = command + "\n";
  if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return Fail(ErrorCode::kSystem, "sending to the monitor", errno);
  }
  std::string reply;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  if (reply.empty()) return Fail(ErrorCode::kSystem, "the monitor closed without a reply");
  return reply;
}

}  // namespace vtime::vmm
