// libFuzzer target for the migration stream's receiver (vtvmm --incoming):
// whatever a network peer sends, ReceiveMigration returns, accepting or
// refusing with a reason, and never crashes. The input goes through a
// socketpair, as a peer's bytes would, and the sender then closes its end.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <thread>

#include "vmm/migration.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) std::abort();
  vtime::kvm::Fd tx(fds[0]), rx(fds[1]);
  std::thread writer([&] {
    for (std::size_t done = 0; done < size;) {
      const ssize_t n = ::send(tx.get(), data + done, size - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    tx = vtime::kvm::Fd();
  });
  // Small limits: the stream announces its sizes and is held to them.
  auto in = vtime::vmm::ReceiveMigration(rx.get(), 1 << 16, 1 << 16, {});
  rx = vtime::kvm::Fd();
  writer.join();
  if (!in && in.error().context.empty()) std::abort();
  if (in && in->ram && in->ram->size() > (1 << 16)) std::abort();
  return 0;
}
