#include "vmm/timeline_record.h"

#include <algorithm>

namespace vtime::vmm {

std::uint32_t JoinTimelineHost(trace::Timeline& timeline, const std::string& name,
                               std::uint64_t counter_frequency_hz, std::uint64_t now) {
  auto taken = [&](const std::string& n) {
    return std::any_of(timeline.hosts.begin(), timeline.hosts.end(),
                       [&](const trace::Host& h) { return h.name == n; });
  };
  for (std::uint32_t i = 0; i < timeline.hosts.size(); ++i) {
    if (timeline.hosts[i].name != name) continue;
    const bool later =
        std::any_of(timeline.events.begin(), timeline.events.end(),
                    [&](const trace::Event& e) { return e.host == i && e.host_count > now; });
    if (timeline.hosts[i].counter_frequency_hz == counter_frequency_hz && !later) return i;
  }
  std::string unique = name;
  for (unsigned n = 2; taken(unique); ++n) unique = name + " #" + std::to_string(n);
  timeline.hosts.push_back(trace::Host{unique, counter_frequency_hz});
  return static_cast<std::uint32_t>(timeline.hosts.size() - 1);
}

void RecordOffsets(trace::Timeline& timeline, std::uint32_t host, std::uint64_t at,
                   std::uint64_t virtual_offset, std::uint64_t physical_offset) {
  const bool running =
      !timeline.events.empty() && timeline.events.back().kind != trace::EventKind::kPause;
  if (running) {
    // The offsets in force: those of the last start or change.
    auto last =
        std::find_if(timeline.events.rbegin(), timeline.events.rend(), [](const trace::Event& e) {
          return e.kind == trace::EventKind::kStart || e.kind == trace::EventKind::kOffsets;
        });
    if (last != timeline.events.rend() && last->virtual_offset == virtual_offset &&
        last->physical_offset == physical_offset) {
      return;
    }
  }
  timeline.events.push_back(
      trace::Event{.kind = running ? trace::EventKind::kOffsets : trace::EventKind::kStart,
                   .host = host,
                   .host_count = at,
                   .virtual_offset = virtual_offset,
                   .physical_offset = physical_offset});
}

void RecordPause(trace::Timeline& timeline, std::uint32_t host, std::uint64_t at) {
  timeline.events.push_back(
      trace::Event{.kind = trace::EventKind::kPause, .host = host, .host_count = at});
}

bool RecordNestedOffset(trace::Timeline& timeline, std::uint32_t host, std::uint32_t vcpu,
                        std::uint64_t cntvoff, std::uint64_t at, std::uint64_t& seen) {
  // Only while the guest runs: a change seen before its start (or while it
  // is paused) is seen again later, when it can be placed.
  if (timeline.events.empty() || timeline.events.back().kind == trace::EventKind::kPause) {
    return false;
  }
  if (cntvoff == seen) return false;
  timeline.events.push_back(
      trace::Event{.kind = trace::EventKind::kNestedOffset,
                   .host = host,
                   .host_count = std::max(at, timeline.events.back().host_count),
                   .vcpu = vcpu,
                   .cntvoff = cntvoff});
  seen = cntvoff;
  return true;
}

}  // namespace vtime::vmm
