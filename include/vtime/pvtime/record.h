// The PV stolen-time record (ARM DEN0057A) as a pure model: its layout, its
// revision and attributes, and where each vCPU's record sits in a region.
// This header is the one home of those numbers; the saved state, the VMM and
// the tests all take them from here. Pure: bytes in, values out.
//
// The record is 64 bytes, little endian, at a 64-byte aligned guest physical
// address; the specification promises meaning only for its first 16 bytes:
//
//   offset  size  field
//        0     4  revision     0 (the only revision defined)
//        4     4  attributes   0 (no attribute is defined)
//        8     8  stolen_time  nanoseconds the vCPU was runnable but not run
//       16    48  padding
//
// Who writes what, under KVM: the hypervisor sets revision and attributes
// (to 0) only when the guest calls PV_TIME_ST, which also zeroes the count;
// afterwards, before each guest entry, KVM reads the 8-byte count from guest
// memory, adds the run delay since its last update and writes the sum back.
// So the record in guest memory is KVM's accumulator, and a guest can
// overwrite any of it: nothing read from it is trusted to be what the host
// served.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "vtime/result.h"

namespace vtime::pvtime {

/// The size of one record, and the stride between vCPUs' records.
inline constexpr std::uint64_t kRecordSize = 64;
/// A record's guest physical address must be a multiple of this.
inline constexpr std::uint64_t kRecordAlignment = 64;
/// The bytes of a record the specification gives meaning to.
inline constexpr std::uint64_t kDefinedBytes = 16;

/// Byte offsets of the fields.
inline constexpr std::size_t kRevisionOffset = 0;
inline constexpr std::size_t kAttributesOffset = 4;
inline constexpr std::size_t kStolenTimeOffset = 8;

/// Revision 0, the only one ARM DEN0057A defines and the only one KVM serves.
inline constexpr std::uint32_t kRevision0 = 0;
/// The attributes of a revision 0 record: none are defined, all are 0.
inline constexpr std::uint32_t kAttributesNone = 0;

/// The three defined fields of one record.
struct Record {
  std::uint32_t revision = kRevision0;
  std::uint32_t attributes = kAttributesNone;
  std::uint64_t stolen_ns = 0;
  friend bool operator==(const Record&, const Record&) = default;
};

/// Where vCPU `index`'s record starts, counted from the region's base.
constexpr std::uint64_t RecordOffset(std::uint64_t index) { return index * kRecordSize; }

/// How many records a region of `region_size` bytes holds.
constexpr std::uint64_t RecordCapacity(std::uint64_t region_size) {
  return region_size / kRecordSize;
}

/// The record in `bytes`, which must hold at least kDefinedBytes
/// (kMalformed otherwise). Any value is accepted: the guest may have written it.
Result<Record> ReadRecord(std::span<const std::uint8_t> bytes);

/// The record at guest physical address `ipa` inside a region of guest
/// memory that starts at `region_base`. Refuses (kOutOfRange) an address
/// that is misaligned or whose record does not lie wholly inside the region.
Result<Record> RecordAt(std::span<const std::uint8_t> region, std::uint64_t region_base,
                        std::uint64_t ipa);

/// Writes the record's three fields into `bytes` (at least kDefinedBytes;
/// kMalformed otherwise), leaving the padding as it is.
Result<void> WriteRecord(std::span<std::uint8_t> bytes, const Record& record);

/// Whether a host that serves the revisions in `served` can serve
/// `revision`. Refuses with kUnsupported and a message that names the
/// revision and what is served.
Result<void> CheckServable(std::uint32_t revision, std::span<const std::uint32_t> served);

}  // namespace vtime::pvtime
