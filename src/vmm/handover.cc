#include "vmm/handover.h"

namespace vtime::vmm {

std::string_view NameOf(HandoverStep step) {
  switch (step) {
    case HandoverStep::kBeforeVerdict:
      return "before-verdict";
    case HandoverStep::kAfterRestored:
      return "after-restored";
    case HandoverStep::kAfterGo:
      return "after-go";
    case HandoverStep::kAfterRunning:
      return "after-running";
  }
  return "?";
}

SourceHandover HandOverAsSource(Link& link, const HandoverHook& hook,
                                SourceHandoverTimeouts timeouts) {
  if (hook) hook(HandoverStep::kBeforeVerdict, link);
  auto verdict = ReceiveHandover(link, timeouts.verdict_ms);
  // Without kGo the destination never runs the guest: every failure up to
  // here is safe to resume from.
  if (!verdict) {
    return {SourceOutcome::kResume,
            "no verdict from the destination: " + verdict.error().Message()};
  }
  if (verdict->kind == Handover::kRefused) {
    return {SourceOutcome::kResume, "the destination refused: " + verdict->reason};
  }
  if (verdict->kind != Handover::kRestored) {
    return {SourceOutcome::kResume, "the destination said '" + std::string(NameOf(verdict->kind)) +
                                        "' where a verdict belongs"};
  }
  if (hook) hook(HandoverStep::kAfterRestored, link);
  // A failed send put no byte of kGo on the link: the destination cannot
  // have it, so resuming is still safe.
  if (auto go = SendHandover(link, Handover::kGo); !go) {
    return {SourceOutcome::kResume,
            "could not give the destination the go-ahead: " + go.error().Message()};
  }
  if (hook) hook(HandoverStep::kAfterGo, link);
  auto running = ReceiveHandover(link, timeouts.running_ms);
  if (!running) {
    return {SourceOutcome::kInDoubt, "the go-ahead went out, then " + running.error().Message() +
                                         ": the destination may or may not be running the guest"};
  }
  if (running->kind == Handover::kFailed) {
    return {SourceOutcome::kResume, "the destination could not start the guest: " +
                                        running->reason};
  }
  if (running->kind != Handover::kRunning) {
    return {SourceOutcome::kInDoubt, "the destination said '" +
                                         std::string(NameOf(running->kind)) +
                                         "' after the go-ahead"};
  }
  if (hook) hook(HandoverStep::kAfterRunning, link);
  return {SourceOutcome::kHandedOver, running->reason};
}

void DestinationHandover::Refuse(const std::string& reason) {
  (void)SendHandover(link_, Handover::kRefused, reason);
}

Result<void> DestinationHandover::OfferAndAwaitGo(unsigned timeout_ms) {
  if (hook_) hook_(HandoverStep::kBeforeVerdict, link_);
  if (auto r = SendHandover(link_, Handover::kRestored, "restored"); !r) {
    return Fail(ErrorCode::kBadState, "could not tell the source the VM is restored: " +
                                          r.error().Message());
  }
  if (hook_) hook_(HandoverStep::kAfterRestored, link_);
  auto go = ReceiveHandover(link_, timeout_ms);
  if (!go) {
    return Fail(ErrorCode::kBadState,
                "the source never gave the go-ahead (" + go.error().Message() + ")");
  }
  if (go->kind != Handover::kGo) {
    return Fail(ErrorCode::kBadState, "the source said '" + std::string(NameOf(go->kind)) +
                                          "' where the go-ahead belongs");
  }
  if (hook_) hook_(HandoverStep::kAfterGo, link_);
  return Ok();
}

Result<void> DestinationHandover::Running() {
  auto r = SendHandover(link_, Handover::kRunning, "running");
  if (hook_) hook_(HandoverStep::kAfterRunning, link_);
  return r;
}

void DestinationHandover::FailedToStart(const std::string& reason) {
  (void)SendHandover(link_, Handover::kFailed, reason);
}

}  // namespace vtime::vmm
