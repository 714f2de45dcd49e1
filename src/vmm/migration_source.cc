#include "vmm/machine_impl.h"

namespace vtime::vmm::detail {

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
  auto sent =
      SendPages(link, ram_.bytes(), all,
                fault == StreamFault::kTruncate ? fault : StreamFault::kNone, PrintTenths("sent"));
  if (!sent) return tl::unexpected(sent.error());
  p.first_pass_mib_s = MibPerSecond(*sent * kPageSize, std::chrono::steady_clock::now() - t0);
  p.pages_live += *sent;
  std::fprintf(stderr,
               "vtvmm: migration: pre-copy round 1: all %llu pages sent while the guest runs\n",
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
    std::fprintf(stderr, "vtvmm: migration: pre-copy round %u: %llu pages the guest dirtied\n",
                 round, static_cast<unsigned long long>(*again));
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
                            " MiB/s over " + link.Describe() + "); the guest was paused here for " +
                            std::to_string(ms) + " ms (guest CNTVCT at pause " +
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
  return fail(
      Error{ErrorCode::kBadState, 0,
            "the operator said the destination does not run the guest (" + handover.why + ")"});
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

}  // namespace vtime::vmm::detail
