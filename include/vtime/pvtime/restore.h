// Restoring PV stolen time: whether a host can serve the record revision a
// saved state carries, and how the records restored into guest memory compare
// with the saved state. Pure.
//
// WHAT THE SAVED STATE CARRIES. The revision is the one the host *served*
// (KVM serves revision 0: it writes it when the guest calls PV_TIME_ST), not
// the word the guest left in memory, which the guest can overwrite at will.
// The stolen time is the count in the record at the pause: the only copy
// there is, because KVM keeps none of its own (see record.h).
//
// WHAT WINS ON A MISMATCH: the restored region, always. vtime reports every
// field that differs and changes nothing in guest memory, because
//  - KVM's stolen-time count lives in the record itself: before each guest
//    entry it reads the 8-byte field from guest memory, adds the run delay
//    and writes the sum back. Whatever is in the region is what KVM will
//    continue from; writing the saved value over it would make the guest see
//    its count jump (backwards, possibly), which the count must never do;
//  - revision and attributes in the region are the guest's business once it
//    has read them: a guest that overwrote them asked for it, and calling
//    PV_TIME_ST again gives it a fresh record. What the destination must be
//    able to serve is the saved (served) revision, and that is checked when
//    the machine is configured (CheckServable), so a guest cannot make its
//    own snapshot or migration fail by scribbling on its record.
// A snapshot captures the state and the region at one pause, so the stolen
// times agree unless the file was edited; revision and attributes disagree
// whenever the guest has scribbled on them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vtime/pvtime/record.h"
#include "vtime/result.h"
#include "vtime/state/saved_state.h"

namespace vtime::pvtime {

/// One field of a restored record that differs from the saved state.
struct FieldMismatch {
  std::string_view field;    ///< "revision", "attributes" or "stolen_time"
  std::uint64_t saved = 0;   ///< served revision, attributes 0, or saved stolen ns
  std::uint64_t region = 0;  ///< what the restored guest memory holds
  friend bool operator==(const FieldMismatch&, const FieldMismatch&) = default;
};

/// The fields of one vCPU's restored record that differ from the saved state.
struct RecordMismatch {
  std::size_t vcpu = 0;
  std::uint64_t ipa = 0;
  std::vector<FieldMismatch> fields;  ///< in record order; never empty
  friend bool operator==(const RecordMismatch&, const RecordMismatch&) = default;
};

/// Refuses (kUnsupported) a saved state with a vCPU whose PV time is enabled
/// and whose served revision is not in `served`; the message names the vCPU
/// and the revision. A destination calls this when it is configured.
Result<void> CheckServable(const state::SavedState& saved, std::span<const std::uint32_t> served);

/// Compares each PV-time-enabled vCPU's saved revision (with attributes 0)
/// and stolen time with its record in `region`, the restored guest memory
/// at `region_base`. Returns the vCPUs that differ (empty: all agree).
/// Refuses (kOutOfRange) a saved record address outside the region.
Result<std::vector<RecordMismatch>> CompareRestored(const state::SavedState& saved,
                                                    std::span<const std::uint8_t> region,
                                                    std::uint64_t region_base);

/// One line per vCPU (each ending in '\n'; empty for no mismatch), naming
/// every field that differs with both values and saying that the restored
/// record is kept.
std::string DescribeMismatches(std::span<const RecordMismatch> mismatches);

}  // namespace vtime::pvtime
