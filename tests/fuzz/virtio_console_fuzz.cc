// libFuzzer target for vtvmm's virtio console: everything in it is the
// guest's to write. An input is a count N, N operations of 6 bytes { u8 op,
// u8 register/4, u32 value }, then 8 KiB of guest RAM (the rings and
// buffers; what the input lacks is zero): register writes (ring addresses folded into RAM when op bit 4 is
// set, so that the fuzzer reaches the queue code), reads, console input,
// and save/restore round trips. The device must never touch memory outside
// RAM (AddressSanitizer), hand out more bytes than RAM holds per call, loop,
// or save a state it cannot restore to the same bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "vmm/virtio_console.h"

namespace {

constexpr std::uint64_t kBase = 0x40000000;
constexpr std::size_t kRam = 0x2000;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t ops = std::min<std::size_t>(data[0], (size - 1) / 6);
  const std::uint8_t* op_bytes = data + 1;
  const std::size_t ram_at = 1 + 6 * ops;
  std::vector<std::uint8_t> ram(kRam);
  std::memcpy(ram.data(), data + ram_at, std::min(size - ram_at, kRam));
  std::size_t out = 0;
  // Every write the device reports lies inside guest RAM.
  vtime::vmm::VirtioConsole dev(vtime::vmm::GuestRam{kBase, ram,
                                                     [&](std::uint64_t off, std::uint64_t len) {
                                                       if (off > ram.size() ||
                                                           len > ram.size() - off)
                                                         std::abort();
                                                     }},
                                [&](std::span<const std::uint8_t> b) {
                                  if (b.size() > kRam) std::abort();
                                  out += b.size();
                                });
  const std::uint8_t typed[64] = {'l', 's', '\n'};
  for (std::size_t i = 0; i < ops; ++i) {
    const std::uint8_t* o = op_bytes + 6 * i;
    const std::uint8_t op = o[0];
    const std::uint64_t reg = std::uint64_t{o[1]} * 4 % vtime::vmm::VirtioConsole::kSize;
    std::uint32_t value;
    std::memcpy(&value, o + 2, 4);
    const bool address = (reg >= 0x080 && reg < 0x0b0 && reg % 8 == 0);
    if ((op & 0x10) != 0 && address) value = static_cast<std::uint32_t>(kBase + value % kRam);
    if ((op & 0x10) != 0 && reg >= 0x080 && reg < 0x0b0 && reg % 8 == 4) value = 0;
    switch (op % 4) {
      case 0:
        dev.Write(reg, value, 4);
        break;
      case 1:
        (void)dev.Read(reg, (op & 0x20) != 0 ? 2 : 4);
        break;
      case 2: {
        const std::size_t room = dev.Room();
        const std::size_t n = value % sizeof typed;
        const std::size_t took = dev.Receive({typed, n});
        if (took > n) std::abort();
        if (n <= room && took != n && dev.DriverReady()) std::abort();  // room was promised
        break;
      }
      default: {
        const std::vector<std::uint8_t> saved = dev.Save();
        if (!dev.Restore(saved) || dev.Save() != saved) std::abort();
        break;
      }
    }
    (void)dev.Interrupt();
  }
  return 0;
}
