// A small machine on the emulated backend for tests and benchmarks: RAM at
// 0x40000000, the PV time page, a PL011 data register that collects the
// guest's output, the vtime test finisher, and the user-space GICv2 wired to
// the vCPUs' timer lines and IRQ inputs. Guest programs load through the
// VMM's own LoadBoot (device tree included); raw code goes in with LoadCode.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vtime/arch/vm_clock.h"
#include "vtime/backend/emu.h"
#include "vtime/backend/hypervisor.h"
#include "vtime/result.h"
#include "vtime/vmm/user_gic.h"

namespace vtime::emu::testing {

/// How a machine is built.
struct MachineConfig {
  unsigned cpus = 1;
  std::uint64_t ram_size = 256ULL << 20;
  /// PV stolen-time records for every vCPU at layout::kPvtime.
  bool pvtime = false;
  /// The VM offset (both counters); nothing: guest counter 0 at creation.
  std::optional<std::uint64_t> vm_offset;
  /// vCPUs that start at EL2 (a guest hypervisor).
  bool el2 = false;
};

/// What a run ended with.
struct RunResult {
  std::string output;                     ///< everything the guest wrote to the UART
  std::optional<std::uint32_t> finisher;  ///< the test finisher's status, if written
  bool shutdown = false;                  ///< PSCI SYSTEM_OFF
  unsigned resets = 0;                    ///< PSCI SYSTEM_RESETs (each rebooted the guest)
  bool timed_out = false;
  bool paused = false;  ///< RunFor's pause came before the guest ended
  std::string error;    ///< a vCPU's kOther exit or a backend error
  double wall_seconds = 0;
  std::uint64_t timer_line_reports = 0;
};

/// An anonymous, page-aligned host mapping (guest RAM).
class HostMemory {
 public:
  explicit HostMemory(std::size_t size);
  ~HostMemory();
  HostMemory(const HostMemory&) = delete;
  HostMemory& operator=(const HostMemory&) = delete;
  [[nodiscard]] std::span<std::uint8_t> bytes() const { return {data_, size_}; }

 private:
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

class Machine {
 public:
  static Result<std::unique_ptr<Machine>> Create(const MachineConfig& config);
  ~Machine();

  /// Loads a guest ELF with its device tree and points vCPU 0 at it.
  Result<void> LoadProgram(std::span<const std::uint8_t> elf);
  /// Copies raw instructions to `gpa` and points vCPU 0 at them.
  Result<void> LoadCode(std::uint64_t gpa, std::span<const std::uint32_t> words);
  /// Runs every vCPU on its own thread until the guest ends (finisher or
  /// SYSTEM_OFF), a vCPU fails, or `timeout` passes. A SYSTEM_RESET makes a
  /// new VM with the same offset and boots the same program again.
  RunResult Run(std::chrono::milliseconds timeout);
  /// Runs for `duration`, then pauses every vCPU (RequestExit) and returns
  /// with RunResult::paused; the guest continues with a later Run.
  RunResult RunFor(std::chrono::milliseconds duration);

  /// The user GIC's state, and its restore (then the IRQ lines follow it).
  std::vector<std::uint8_t> SaveGic();
  Result<void> RestoreGic(std::span<const std::uint8_t> bytes);

  backend::Hypervisor& hypervisor() { return *hv_; }
  backend::Vm& vm() { return *vm_; }
  backend::Vcpu& vcpu(unsigned i) { return *vcpus_[i]; }
  std::span<std::uint8_t> ram() { return ram_->bytes(); }
  std::span<std::uint8_t> pvtime_page() { return pvtime_->bytes(); }
  arch::VmClock& clock() { return clock_; }

 private:
  explicit Machine(const MachineConfig& config) : config_(config) {}
  Result<void> Build();
  Result<void> Boot();
  RunResult RunUntil(std::chrono::steady_clock::time_point deadline, bool pause);
  void StopAll();
  void UpdateIrqLines();
  std::uint64_t Mmio(unsigned vcpu, const backend::MmioAccess& access);

  MachineConfig config_;
  std::unique_ptr<backend::Hypervisor> hv_;
  std::unique_ptr<backend::Vm> vm_;
  std::vector<std::unique_ptr<backend::Vcpu>> vcpus_;
  std::unique_ptr<HostMemory> ram_;
  std::unique_ptr<HostMemory> pvtime_;
  arch::VmClock clock_;
  std::vector<std::uint8_t> program_;
  std::uint64_t entry_ = 0;
  std::uint64_t x0_ = 0;
  std::uint64_t offset_ = 0;

  std::mutex mu_;  // the GIC, the output and the lines
  std::optional<vmm::UserGic> gic_;
  std::vector<bool> irq_lines_;
  std::string output_;
  std::optional<std::uint32_t> finisher_;
  std::uint64_t line_reports_ = 0;
  std::atomic<bool> stopping_{false};
};

}  // namespace vtime::emu::testing
