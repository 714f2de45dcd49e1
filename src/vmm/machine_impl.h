// vtvmm's machine, inside: the one class that holds a VM's state, and the
// helpers its parts share. Its methods live in one file per job:
//   machine.cc           assembly (devices, vCPUs, boot or restore) and the run
//   vcpu_runner.cc       the vCPU threads: the start gate, the run loop, kicks
//                        and IRQ lines
//   machine_time.cc      guest time: offsets, capture at a pause, the resume
//                        plan, the offset timeline, counter probes, snapshots
//   mmio_devices.cc      the MMIO bus and the devices on it, the console
//   migration_source.cc  a live migration's source: pre-copy, the hand-over
//   monitor.cc           the monitor socket and its commands
// The migration's destination is vmm/incoming.cc, guest memory
// vmm/guest_memory.cc. Only these files include this header.
#pragma once

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
#include "vmm/machine.h"
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
#include "vtime/vmm/user_gicv3.h"

namespace vtime::vmm::detail {

// The vCPU whose loop this thread runs (-1 on every other thread).
inline thread_local int this_vcpu = -1;
constexpr int kResumeSignal = SIGCONT;  // an operator's "resume" for a source in doubt
inline std::atomic<bool> g_resume_requested{false};
constexpr int kSnapshotSignal = SIGUSR2;
// The longest in-place pause the monitor takes (a day).
constexpr std::uint64_t kMaxPauseMs = 86'400'000;
inline std::atomic<bool> g_snapshot_requested{false};

inline std::uint64_t LoadLe(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  return v;
}

// Writes a file whole, through a temporary name, so a reader never sees half.
inline Result<void> WriteFileAtomically(const std::string& path,
                                        std::span<const std::uint8_t> bytes) {
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
    raw.c_iflag &=
        ~static_cast<tcflag_t>(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
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
inline std::uint64_t RunDelayNs(pid_t tid) {
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

inline void NoteOnce(std::atomic<bool>& flag, const std::string& message) {
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
  // A device's line to whichever GIC the VM has (SPI `intid`).
  void SetSpiLevel(unsigned intid, bool level);
  void UpdateUartLineLocked();
  void ConsoleInput();
  void VcpuLoop(unsigned index);
  std::uint64_t HandleMmio(unsigned index, const backend::MmioAccess& access);
  using GicRead = std::uint32_t (UserGic::*)(unsigned, std::uint64_t, unsigned, bool*);
  using GicWrite = void (UserGic::*)(unsigned, std::uint64_t, std::uint32_t, unsigned, bool*);
  std::uint64_t GicAccess(unsigned index, const backend::MmioAccess& access, std::uint64_t offset,
                          GicRead read, GicWrite write, bool* known);
  void SyncTimerLines(unsigned index, std::uint64_t level);
  std::uint64_t Gic3Access(unsigned index, const backend::MmioAccess& access, std::uint64_t offset,
                           bool redist, bool* known);
  std::optional<std::uint64_t> Gic3SysReg(unsigned index, const backend::SysRegAccess& access);
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
    bool logging = false;              // slot 0 logs dirty pages
    unsigned rounds = 0;               // rounds sent while the guest ran
    std::uint64_t pages_live = 0;      // pages sent while the guest ran
    std::uint64_t pages_paused = 0;    // pages sent while it was paused
    double first_pass_mib_s = 0;       // RAM's first copy over the link
    std::vector<std::uint64_t> dirty;  // fetched from the dirty log, not sent yet
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
  // Or, for a guest hypervisor on a backend that gives the VMM the GIC's
  // system registers: a GICv3 with the virtualization interface.
  std::optional<UserGicV3> gic3_;
  std::vector<bool> injected_virq_;
  [[nodiscard]] bool user_gic() const { return gic_.has_value() || gic3_.has_value(); }
  std::vector<bool> injected_;
  // A vCPU whose line another thread found out of date and kicked: its own
  // thread sets the line before its next Run (UpdateIrqLinesLocked).
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
  unsigned ready_ = 0;                // vCPU threads at the start gate
  std::atomic<bool> started_{false};  // the start gate is open
  // Each vCPU's host counter read right after its last Run that ran the
  // guest: the guest stopped there, so a pause is captured at the latest of
  // these rather than when the VMM gets round to it. Written by the vCPU
  // thread, read by the main thread once every vCPU is parked.
  std::vector<std::uint64_t> last_exit_count_;
  // Each vCPU's host count read just before its first Run into the
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
  std::uint64_t offset_set_at_ = 0;  // host count once the final offset is in the backend
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
  bool in_doubt_ = false;              // a migration's hand-over is in doubt
  std::optional<bool> operator_says_;  // true: the destination runs it
  std::atomic<bool> warned_mmio_{false};
  std::atomic<bool> warned_virtio_{false};
};

}  // namespace vtime::vmm::detail
