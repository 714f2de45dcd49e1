// libFuzzer target for the migration stream's receiver (vtvmm --incoming):
// whatever a network peer sends, ReceiveMigration returns, accepting or
// refusing with a reason, and never crashes or writes outside the guest
// memory it was given. The input goes through a socketpair, as a peer's
// bytes would, and the sender then closes its end.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "vmm/migration.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) std::abort();
  auto tx = vtime::vmm::PlainLink(vtime::Fd(fds[0]));
  auto rx = vtime::vmm::PlainLink(vtime::Fd(fds[1]));
  std::thread writer([&] {
    (void)tx->WriteAll(std::span(data, size));
    tx.reset();
  });
  // Small limits: the stream announces its sizes and is held to them.
  constexpr vtime::vmm::IncomingLimits kLimits{1 << 16, 4, 1 << 16};
  std::vector<std::uint8_t> ram;
  auto in = vtime::vmm::ReceiveMigration(
      *rx, kLimits,
      [&ram](const vtime::vmm::StreamHello& hello)
          -> vtime::Result<std::span<std::uint8_t>> {
        if (hello.ram_size > kLimits.max_ram || hello.cpus > kLimits.max_cpus) std::abort();
        ram.assign(hello.ram_size, 0);
        return std::span(ram);
      },
      {});
  rx.reset();
  writer.join();
  if (!in && in.error().context.empty()) std::abort();
  if (in && in->snapshot.size() > kLimits.max_snapshot) std::abort();
  return 0;
}
