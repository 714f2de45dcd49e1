// A human-readable JSON view of a SavedState, for people and tools that
// inspect a snapshot; the binary encoding (codec.h) is the one that restores.
#pragma once

#include <string>

#include "vtime/state/saved_state.h"

namespace vtime::state {

/// Pretty-printed JSON (2-space indent, keys in a fixed order, trailing
/// newline). Counts, offsets and register values are decimal integers;
/// offsets, CVALs and IPAs are repeated as "0x..." strings under a "_hex"
/// key. Values that are not stored but computed from stored ones sit under
/// "derived". The view shows any state, valid or not; it does not validate.
///
///   {
///     "format_version": 1,
///     "counter_frequency_hz": ...,
///     "offset_api": 1, "offset_api_name": "VM offset",
///     "virtual_offset": ..., "virtual_offset_hex": "0x...",
///     "physical_offset": ..., "physical_offset_hex": "0x...",
///     "pause": {"host_counter": ..., "host_counter_hex": "0x...", "wall_clock_ns": ...},
///     "derived": {"virtual_count_at_pause": ..., "physical_count_at_pause": ...,
///                 "note": "computed from pause.host_counter and the offsets; not stored"},
///     "vcpus": [{"index": 0, "nested": false,
///                "el1_virtual": {"ctl": ..., "ctl_bits": {"enable": ..., "imask": ...},
///                                "cval": ..., "cval_hex": "0x..."},
///                "el1_physical": {...}, "el2_virtual": {...}, "el2_physical": {...},
///                "cntkctl_el1": ..., "cnthctl_el2": ..., "cntvoff_el2": ...,
///                "cntvoff_el2_hex": "0x...",
///                "pvtime": {"enabled": ..., "revision": ..., "ipa": ..., "ipa_hex": "0x...",
///                           "stolen_ns": ...}}, ...]
///   }
///
/// In each timer, "ctl_bits" spells out CTL's bits 0 (ENABLE) and 1 (IMASK).
std::string ToJson(const SavedState& state);

}  // namespace vtime::state
