// libFuzzer target for the offset timeline's decoder and its maps. Every
// input is decoded as given and with its frame repaired (reframe.h), so that
// mutations reach the payload. Whatever decodes must encode to the same
// bytes, and each map it answers must map back: a guest count that maps to
// a host point is the count the guest reads there.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "reframe.h"
#include "vtime/trace/timeline.h"

namespace {

using vtime::trace::GuestCounter;
using vtime::trace::Timeline;

void Check(std::span<const std::uint8_t> bytes) {
  const auto t = Timeline::Decode(bytes);
  if (!t) {
    if (t.error().context.empty()) std::abort();
    return;
  }
  const auto again = Timeline::Decode(t->Encode());
  if (!again || *again != *t) std::abort();
  // Probe a few counts near each event's host count.
  for (const auto& e : t->events) {
    for (std::uint64_t d : {0ull, 1ull, 1000ull}) {
      for (auto which : {GuestCounter::kVirtual, GuestCounter::kPhysical}) {
        const std::uint32_t vcpu = e.vcpu < t->vcpus ? e.vcpu : 0;
        const auto g = t->ToGuest(vcpu, which, {e.host, e.host_count + d});
        if (!g) continue;
        const auto h = t->ToHost(vcpu, which, *g);
        // The count may be ambiguous (the guest's counter went back), never
        // mapped elsewhere.
        if (h && (h->host != e.host || h->count != e.host_count + d)) std::abort();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  Check(bytes);
  if (size >= vtime::wire::kFrameHeaderSize + vtime::wire::kFrameTrailerSize) {
    Check(vtime::fuzz::Reframed(bytes));
  }
  return 0;
}
