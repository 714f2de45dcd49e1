#include "vmm/incoming.h"

#include <chrono>
#include <cstdio>

namespace vtime::vmm {

Result<std::unique_ptr<MigrationDestination>> MigrationDestination::Receive(Options options) {
  if (!options.secure_link) {
    return Fail(ErrorCode::kInvalidArgument,
                "--incoming needs credentials: --tls-psk FILE or --tls-x509 DIR (or --insecure "
                "for plain TCP)");
  }
  auto on = ParseEndpoint(options.endpoint);
  if (!on) return Fail(ErrorCode::kInvalidArgument, "--incoming: " + on.error().context);
  auto listener = Listen(*on);
  if (!listener) return tl::unexpected(listener.error());
  std::fprintf(stderr, "vtvmm: waiting for a migration on %s (%s)\n", options.endpoint.c_str(),
               options.security.c_str());
  std::unique_ptr<MigrationDestination> in(new MigrationDestination());
  // A source that never comes must not leave a destination waiting for ever.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options.wait_ms);
  while (!in->link_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    std::string peer;
    auto fd = AcceptOne(listener->get(), left > 0 ? static_cast<unsigned>(left) : 1, &peer);
    if (!fd) return tl::unexpected(fd.error());
    // Nothing of a VM is read from a peer that fails to authenticate; the
    // destination keeps waiting for the one it trusts.
    auto link = options.secure_link(std::move(*fd));
    if (!link) {
      std::fprintf(stderr,
                   "vtvmm: refusing a connection from %s before reading anything: %s; still "
                   "waiting\n",
                   peer.c_str(), link.error().Message().c_str());
      continue;
    }
    std::fprintf(stderr, "vtvmm: migration: %s connected (%s)\n", peer.c_str(),
                 (*link)->Describe().c_str());
    in->link_ = std::move(*link);
  }
  in->handover_.emplace(*in->link_, options.hook);
  auto sink = [&in](const StreamHello& hello) -> Result<std::span<std::uint8_t>> {
    auto memory = GuestMemory::Create(hello.ram_size, "the incoming guest's RAM");
    if (!memory) return tl::unexpected(memory.error());
    in->ram_.emplace(std::move(*memory));
    return in->ram_->writable();
  };
  auto refuse = [&in](const std::string& reason) -> Result<std::unique_ptr<MigrationDestination>> {
    in->handover_->Refuse(reason);
    return Fail(ErrorCode::kBadState, "refusing the incoming migration: " + reason);
  };
  auto received = ReceiveMigration(*in->link_, options.limits, sink, PrintTenths("received"));
  if (!received) return refuse(received.error().Message());
  auto decoded = DecodeSnapshot(received->snapshot, RamContents::kSentSeparately);
  if (!decoded) return refuse(decoded.error().Message());
  if (decoded->ram_size != received->hello.ram_size || decoded->cpus != received->hello.cpus) {
    return refuse("the snapshot is of a VM with " + std::to_string(decoded->cpus) + " vCPUs and " +
                  std::to_string(decoded->ram_size) + " bytes of RAM; the stream announced " +
                  std::to_string(received->hello.cpus) + " and " +
                  std::to_string(received->hello.ram_size));
  }
  if (options.refuse_if) {
    if (auto why = options.refuse_if(*decoded); !why.empty()) return refuse(why);
  }
  std::fprintf(stderr, "vtvmm: migration: %s: %llu pages received for %llu of RAM\n",
               received->hello.precopy ? "pre-copy" : "stop-and-copy",
               static_cast<unsigned long long>(received->pages_received),
               static_cast<unsigned long long>(decoded->ram_size / kPageSize));
  in->snapshot_ = std::move(*decoded);
  return in;
}

}  // namespace vtime::vmm
