// The destination's side of a live migration up to a VM ready to restore:
// listen on the address the operator chose, authenticate the peer before
// reading anything of a VM, receive its RAM and state within limits, and
// decode and check the state. A refusal is told to the source (which then
// keeps its guest); what follows (building the VM, the go-ahead, running)
// belongs to the caller, through handover().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "vmm/guest_memory.h"
#include "vmm/handover.h"
#include "vmm/link.h"
#include "vmm/machine.h"
#include "vmm/migration.h"
#include "vmm/snapshot.h"
#include "vtime/result.h"

namespace vtime::vmm {

class MigrationDestination {
 public:
  struct Options {
    std::string endpoint;        ///< ADDRESS:PORT to listen on
    SecureLink secure_link;      ///< authenticates each connection (required)
    std::string security;        ///< what secure_link is, for the log
    unsigned wait_ms = 600'000;  ///< how long to wait for a source
    IncomingLimits limits;       ///< what a source may send
    HandoverHook hook;           ///< testing: fails the hand-over at a step
    /// A reason to refuse a decoded VM (empty: take it).
    std::function<std::string(const MachineSnapshot&)> refuse_if;
  };

  /// Waits for a source that authenticates, receives its VM and checks it.
  /// Connections that fail to authenticate are refused before anything is
  /// read, and the wait goes on; a VM refused is refused to its source.
  static Result<std::unique_ptr<MigrationDestination>> Receive(Options options);

  MigrationDestination(const MigrationDestination&) = delete;
  MigrationDestination& operator=(const MigrationDestination&) = delete;

  /// The VM's state, without its RAM.
  [[nodiscard]] const MachineSnapshot& snapshot() const { return snapshot_; }
  /// The RAM received (once).
  std::optional<GuestMemory> TakeRam() { return std::move(ram_); }
  /// The hand-over with the source, from the offer on.
  DestinationHandover& handover() { return *handover_; }

 private:
  MigrationDestination() = default;
  std::unique_ptr<Link> link_;
  std::optional<DestinationHandover> handover_;
  MachineSnapshot snapshot_;
  std::optional<GuestMemory> ram_;
};

}  // namespace vtime::vmm
