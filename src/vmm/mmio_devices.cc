#include "vmm/machine_impl.h"

namespace vtime::vmm::detail {

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

void VmMachine::SetSpiLevel(unsigned intid, bool level) {
  if (backend_gic_) {
    if (auto r = vm_->SetSpiLine(intid, level); !r) NoteOnce(warned_mmio_, r.error().Message());
    return;
  }
  std::lock_guard lock(gic_mutex_);
  if (gic3_) {
    gic3_->SetSpiLevel(intid, level);
  } else {
    gic_->SetSpiLevel(intid, level);
  }
  UpdateIrqLinesLocked();
}

void VmMachine::UpdateUartLineLocked() {
  const bool level = uart_.Interrupt();
  if (level == uart_line_) return;
  uart_line_ = level;
  SetSpiLevel(32 + MachineDescription{}.uart_spi, level);
}

void VmMachine::UpdateVirtioLineLocked() {
  const bool level = virtio_console_->Interrupt();
  if (level == virtio_line_) return;
  virtio_line_ = level;
  SetSpiLevel(32 + MachineDescription{}.virtio_console_spi, level);
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

void VmMachine::MarkDeviceWrite(std::uint64_t offset, std::uint64_t len) {
  if (len == 0) return;
  if (device_dirty_.empty()) device_dirty_.assign((ram_.size() / kPageSize + 63) / 64, 0);
  for (std::uint64_t page = offset / kPageSize; page <= (offset + len - 1) / kPageSize; ++page) {
    device_dirty_[page / 64] |= std::uint64_t{1} << (page % 64);
  }
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

std::uint64_t VmMachine::Gic3Access(unsigned index, const backend::MmioAccess& access,
                                    std::uint64_t offset, bool redist, bool* known) {
  std::lock_guard lock(gic_mutex_);
  std::uint64_t result = 0;
  if (access.write) {
    if (redist) {
      gic3_->RedistWrite(offset, access.data, access.size, known);
    } else {
      gic3_->DistWrite(index, offset, access.data, access.size, known);
    }
  } else {
    result = redist ? gic3_->RedistRead(offset, access.size, known)
                    : gic3_->DistRead(index, offset, access.size, known);
  }
  UpdateIrqLinesLocked();
  return result;
}

std::optional<std::uint64_t> VmMachine::Gic3SysReg(unsigned index,
                                                   const backend::SysRegAccess& access) {
  std::lock_guard lock(gic_mutex_);
  const CpuIfContext context{.el = access.el, .imo = access.imo, .fmo = access.fmo};
  const SysRegResult r = access.write
                             ? gic3_->SysRegWrite(index, access.encoding, access.value, context)
                             : gic3_->SysRegRead(index, access.encoding, context);
  // An acknowledge, an EOI, a list register or an enable changes lines.
  UpdateIrqLinesLocked();
  if (!r.handled) return std::nullopt;
  return r.value;
}

std::uint64_t VmMachine::HandleMmio(unsigned index, const backend::MmioAccess& exit) {
  const std::uint64_t value = exit.data;
  const std::uint64_t a = exit.address;
  // Only the trace marker page and the bulk print take 8-byte stores; a
  // device of 32-bit registers takes one as the two 4-byte stores it
  // covers, low half first (as a backend that splits wide accesses, or
  // merges two narrow ones, would have it reach the device).
  const bool wide =
      (a >= layout::kTraceMarker && a < layout::kTraceMarker + layout::kTraceMarkerSize) ||
      (a >= layout::kDebugPrint && a < layout::kDebugPrint + DebugPrint::kSize);
  if (exit.write && exit.size == 8 && !wide) {
    (void)HandleMmio(index, backend::MmioAccess{a, 4, true, value & 0xffffffffULL});
    (void)HandleMmio(index, backend::MmioAccess{a + 4, 4, true, value >> 32});
    return 0;
  }
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
    // The RTC counts the host's wall clock (plus the guest's offset), as
    // the backend's clock gives it, like every other "now" of the guest's.
    const std::int64_t now_s = host_.CaptureNow().wall_clock_ns / 1'000'000'000;
    std::lock_guard lock(rtc_mutex_);
    if (exit.write) {
      rtc_.Write(a - layout::kRtc, static_cast<std::uint32_t>(value), now_s, &known);
    } else {
      read = rtc_.Read(a - layout::kRtc, now_s, &known);
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
  } else if (gic3_ && a >= layout::kGicDist && a < layout::kGicDist + UserGicV3::kDistSize) {
    read = Gic3Access(index, exit, a - layout::kGicDist, /*redist=*/false, &known);
  } else if (gic3_ && a >= layout::kGicRedist &&
             a < layout::kGicRedist + UserGicV3::kRedistStride * vcpus_.size()) {
    read = Gic3Access(index, exit, a - layout::kGicRedist, /*redist=*/true, &known);
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

}  // namespace vtime::vmm::detail
