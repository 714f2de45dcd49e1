// How vtvmm keeps a guest's offset timeline (seed 002, vtime/trace/timeline.h)
// as it runs: which host it runs on, and one event per change of its time.
// Pure: the machine reads the counts and calls these.
#pragma once

#include <cstdint>
#include <string>

#include "vtime/trace/timeline.h"

namespace vtime::vmm {

/// The host entry for this process in `timeline` (a restored guest's
/// timeline, or an empty one): the entry named `name` if its counter can be
/// this one (the same frequency, and no event of it after `now`), else a new
/// entry, named `name` or, if that name is taken, `name` with " #2", " #3"...
std::uint32_t JoinTimelineHost(trace::Timeline& timeline, const std::string& name,
                               std::uint64_t counter_frequency_hz, std::uint64_t now);

/// The VM offsets are now these, from host count `at` on: the guest starts
/// (again) if it was not running, else its offsets change; nothing is
/// recorded if a running guest's offsets stay as they were.
void RecordOffsets(trace::Timeline& timeline, std::uint32_t host, std::uint64_t at,
                   std::uint64_t virtual_offset, std::uint64_t physical_offset);

/// The guest stopped at host count `at` (a snapshot's or a migration's
/// capture).
void RecordPause(trace::Timeline& timeline, std::uint32_t host, std::uint64_t at);

/// vCPU `vcpu`'s guest hypervisor has CNTVOFF_EL2 = `cntvoff`, as the VMM
/// found it at host count `at` (an exit, or a pause). `seen` is the value
/// last recorded for that vCPU. Records a nested-offset event, at `at` or
/// at the last event's count if that is later, only when the value differs
/// from `seen` and the guest runs (the timeline has started it and not
/// paused it); then sets `seen`. Returns true when it recorded one.
bool RecordNestedOffset(trace::Timeline& timeline, std::uint32_t host, std::uint32_t vcpu,
                        std::uint64_t cntvoff, std::uint64_t at, std::uint64_t& seen);

}  // namespace vtime::vmm
