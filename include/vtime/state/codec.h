// The binary form of a SavedState: versioned, checksummed, validated. Pure:
// bytes in, bytes out; reading and writing files is the caller's job.
//
// FORMAT (every integer little endian, no padding anywhere)
//
//   offset  size  field
//   ------  ----  -----------------------------------------------------------
//        0     8  magic: the bytes "VTSTATE\0" (56 54 53 54 41 54 45 00)
//        8     4  u32 format version: 1 .. kFormatVersion
//       12     4  u32 flags: 0 (no flag is defined; any set bit is refused)
//       16     8  u64 payload length P, in bytes
//       24     P  payload: a sequence of records (below)
//     24+P     4  u32 CRC-32 (zlib's crc32(), the IEEE 802.3 polynomial) over
//                 bytes [0, 24+P): the header and the payload
//
// The header and the trailer are the same in every format version, so the
// frame (length, checksum) is checked before the version is looked at. An
// encoding is exactly 24 + P + 4 bytes: anything shorter is truncated and
// anything longer has trailing bytes; both are refused.
//
// A record is
//
//   u16 tag, u16 reserved (0), u32 length L, then L bytes of value.
//
// Format version 1 defines these records; each VM-level record appears
// exactly once, in any order; vCPU records carry their index, and the indices
// are 0, 1, ..., n-1 in the order the records appear (n <= kMaxVcpus, n may
// be 0). Encode writes the VM-level records in tag order, then the vCPUs.
//
//   tag     name               L    value
//   ------  -----------------  ---  ------------------------------------------
//   0x0001  counter_frequency    8  u64 counter_frequency_hz (CNTFRQ), != 0
//   0x0002  offset_api           4  u32 OffsetApi: 0 none, 1 VM offset,
//                                   2 legacy counter writes
//   0x0003  virtual_offset       8  u64 virtual_offset
//   0x0004  physical_offset      8  u64 physical_offset
//   0x0005  pause               16  u64 pause.host_counter,
//                                   i64 pause.wall_clock_ns (two's complement)
//   0x0010  vcpu               120  one vCPU, laid out as follows:
//
//        0  u32 index (0 .. n-1)
//        4  u32 flags: bit 0 nested, bit 1 PV time enabled, other bits 0
//        8  u64 el1_virtual.ctl      16  u64 el1_virtual.cval
//       24  u64 el1_physical.ctl     32  u64 el1_physical.cval
//       40  u64 el2_virtual.ctl      48  u64 el2_virtual.cval
//       56  u64 el2_physical.ctl     64  u64 el2_physical.cval
//       72  u64 cntkctl_el1
//       80  u64 cnthctl_el2
//       88  u64 cntvoff_el2
//       96  u64 pvtime.ipa
//      104  u32 pvtime.revision (the revision the host served)
//      108  u32 reserved (0)
//      112  u64 pvtime.stolen_ns
//
// GROWING THE FORMAT. Any change to the set of records or to a record's
// layout is a new format version: kFormatVersion goes up by one and a new
// per-version layout is added next to the old ones. The decoder dispatches on
// the version in the header, so every older version keeps decoding, and the
// encoder writes the version named in SavedState::format_version, so a state
// can still be written for an older destination. A decoder refuses a version
// newer than its own kFormatVersion (ErrorCode::kUnsupported) instead of
// guessing. tests/unit/state/codec_test.cc pins the exact bytes of a version 1
// encoding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "vtime/result.h"
#include "vtime/state/saved_state.h"

namespace vtime::state {

/// "VTSTATE\0", the first 8 bytes of every encoding. The frame's header and
/// trailer sizes are wire::kFrameHeaderSize and wire::kFrameTrailerSize.
inline constexpr std::uint8_t kMagic[8] = {'V', 'T', 'S', 'T', 'A', 'T', 'E', '\0'};
inline constexpr std::size_t kRecordHeaderSize = 8;

/// The most vCPUs a saved state may describe.
inline constexpr std::size_t kMaxVcpus = 512;

/// Record tags of format version 1.
enum class RecordTag : std::uint16_t {
  kCounterFrequency = 0x0001,
  kOffsetApi = 0x0002,
  kVirtualOffset = 0x0003,
  kPhysicalOffset = 0x0004,
  kPause = 0x0005,
  kVcpu = 0x0010,
};

/// The size of a version 1 vCPU record's value.
inline constexpr std::uint32_t kVcpuRecordSizeV1 = 120;

/// Checks the rules every encoded state obeys, whichever way it is reached:
/// format_version in 1..kFormatVersion (a newer one is kUnsupported), a
/// non-zero counter frequency, a known offset API, at most kMaxVcpus vCPUs,
/// timer CTLs holding only ENABLE and IMASK (ISTATUS is derived, never
/// saved), EL2 timers/CNTHCTL_EL2/CNTVOFF_EL2 zero on a vCPU that is not
/// nested, and PV time either disabled with all its fields zero or enabled
/// with a 64-byte aligned IPA (pvtime::kRecordAlignment). Any PV time record
/// revision is valid here: whether a host can serve it is the host's
/// question, asked when a machine is configured (pvtime::CheckServable).
/// Failures are kMalformed (kUnsupported for a newer format version). The
/// error's context is one line naming the vCPU and the field.
Result<void> Validate(const SavedState& state);

/// The encoding of a valid state, in the format version state.format_version
/// names. Refuses (with Validate's error) a state that could not be decoded.
Result<std::vector<std::uint8_t>> Encode(const SavedState& state);

/// The state an encoding holds. Refuses, with kMalformed (kUnsupported for a
/// newer format version) and a one-line reason, anything
/// that is not exactly a valid encoding: truncated or extended input, bad
/// magic, flags or checksum, a payload length that does not match, unknown
/// record tags, wrong record lengths, duplicate or missing records, vCPU
/// indices out of order, and every state Validate refuses. Allocates no more
/// than the input's size justifies.
Result<SavedState> Decode(std::span<const std::uint8_t> bytes);

}  // namespace vtime::state
