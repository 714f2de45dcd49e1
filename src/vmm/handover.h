// The migration hand-over: the few messages after the stream (migration.h)
// that move the one running copy of a VM from the source to the
// destination, so that no failure of either side or of the link leaves the
// VM running twice, and none leaves it nowhere while both vtvmm live.
//
//   source                                destination
//   (guest paused, snapshot sent)  --->   restores the VM (not running)
//                                  <---   kRestored  (or kRefused)
//   from here never resumes on     --->   kGo
//   its own
//                                         starts the vCPUs
//                                  <---   kRunning   (or kFailed)
//   exits: the VM moved
//
// The destination never runs the guest without kGo; the source never
// resumes it after sending kGo unless the destination says kFailed. What
// happens at each step when something fails ("kill": that vtvmm dies; "cut":
// the link breaks or stays silent):
//
//   step                        failure            source            destination
//   before the verdict          destination dies,  resumes           (dead, or refuses
//                               refuses, or cut                      and exits 125)
//                               source dies        (dead: the VM     gets no kGo: does
//                                                  dies with it)     not run, exits 125
//   after kRestored, before     destination dies   IN DOUBT          (dead)
//   kGo is read                 or cut             (see below)       does not run, 125
//                               source dies or     resumes (cut)     no kGo: does not
//                               cuts before kGo                      run, exits 125
//   after kGo, before kRunning  destination fails  resumes           says kFailed, 125
//                               to start
//                               destination dies   IN DOUBT          (dead)
//                               cut                IN DOUBT          runs the guest
//                               source dies        (dead)            runs the guest
//   after kRunning              anything           exited: moved     runs the guest
//
// IN DOUBT: the source cannot know whether the destination runs the guest.
// It keeps the guest paused, says so plainly, and waits for an operator:
// `resume` (the destination does not run it) or `quit` (it does), through
// the monitor, or SIGCONT (resume) and SIGTERM (quit) without one.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "vmm/link.h"
#include "vmm/migration.h"
#include "vtime/result.h"

namespace vtime::vmm {

/// The points of the hand-over where a test can make a side fail.
enum class HandoverStep : std::uint8_t {
  kBeforeVerdict,  ///< the stream is through; no verdict sent or read yet
  kAfterRestored,  ///< kRestored sent (destination) or read (source)
  kAfterGo,        ///< kGo read (destination) or sent (source)
  kAfterRunning,   ///< kRunning sent (destination) or read (source)
};
std::string_view NameOf(HandoverStep step);

/// Testing: called at each step; may kill the process or cut the link.
using HandoverHook = std::function<void(HandoverStep, Link&)>;

/// How the hand-over ended for the source.
enum class SourceOutcome : std::uint8_t {
  kResume,      ///< the destination does not (and will not) run it: resume
  kHandedOver,  ///< the destination runs it: stop here
  kInDoubt,     ///< unknown: stay paused until an operator decides
};

struct SourceHandover {
  SourceOutcome outcome = SourceOutcome::kResume;
  std::string why;  ///< one line: what the destination said, or what failed
};

/// Timeouts of the source's waits.
struct SourceHandoverTimeouts {
  unsigned verdict_ms = 120'000;  ///< restoring a large VM takes a while
  unsigned running_ms = 60'000;   ///< starting its vCPUs does not
};

/// The source's part, once the whole stream is sent.
SourceHandover HandOverAsSource(Link& link, const HandoverHook& hook = {},
                                SourceHandoverTimeouts timeouts = {});

/// The destination's part, step by step (the VM is built and run between).
class DestinationHandover {
 public:
  explicit DestinationHandover(Link& link, HandoverHook hook = {}) : link_(link), hook_(hook) {}
  /// The stream or the restore failed: tell the source, which resumes.
  void Refuse(const std::string& reason);
  /// The VM is built: say kRestored and wait for kGo. An error means the
  /// source has not handed the VM over: do not run it.
  Result<void> OfferAndAwaitGo(unsigned timeout_ms = 30'000);
  /// The vCPUs are entering the guest: say kRunning. An error means the
  /// source was not told (it stays paused, in doubt); the guest runs on.
  Result<void> Running();
  /// The guest could not be started, and will not be: the source resumes.
  void FailedToStart(const std::string& reason);

 private:
  Link& link_;
  HandoverHook hook_;
};

}  // namespace vtime::vmm
