#include "vtime/pvtime/record.h"

#include <algorithm>
#include <string>

#include "vtime/hex.h"

namespace vtime::pvtime {
namespace {

std::uint64_t Load(std::span<const std::uint8_t> bytes, std::size_t at, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{bytes[at + i]} << (8 * i);
  return v;
}

void Store(std::span<std::uint8_t> bytes, std::size_t at, std::size_t n, std::uint64_t v) {
  for (std::size_t i = 0; i < n; ++i) bytes[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

tl::unexpected<Error> TooShort(std::size_t size) {
  return Fail(ErrorCode::kMalformed, "PV time record: " + std::to_string(size) +
                                         " bytes, fewer than the " + std::to_string(kDefinedBytes) +
                                         " a record defines");
}

}  // namespace

Result<Record> ReadRecord(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < kDefinedBytes) return TooShort(bytes.size());
  Record r;
  r.revision = static_cast<std::uint32_t>(Load(bytes, kRevisionOffset, 4));
  r.attributes = static_cast<std::uint32_t>(Load(bytes, kAttributesOffset, 4));
  r.stolen_ns = Load(bytes, kStolenTimeOffset, 8);
  return r;
}

Result<Record> RecordAt(std::span<const std::uint8_t> region, std::uint64_t region_base,
                        std::uint64_t ipa) {
  const std::string where = "PV time record at " + Hex(ipa);
  if (ipa % kRecordAlignment != 0) {
    return Fail(ErrorCode::kOutOfRange,
                where + " is not " + std::to_string(kRecordAlignment) + "-byte aligned");
  }
  // Written so that no sum can wrap: ipa - base only once ipa >= base.
  if (ipa < region_base || ipa - region_base > region.size() ||
      region.size() - (ipa - region_base) < kRecordSize) {
    return Fail(ErrorCode::kOutOfRange, where + " is not inside the PV time region " +
                                            Hex(region_base) + ".." +
                                            Hex(region_base + region.size()));
  }
  return ReadRecord(region.subspan(static_cast<std::size_t>(ipa - region_base), kRecordSize));
}

Result<void> WriteRecord(std::span<std::uint8_t> bytes, const Record& record) {
  if (bytes.size() < kDefinedBytes) return TooShort(bytes.size());
  Store(bytes, kRevisionOffset, 4, record.revision);
  Store(bytes, kAttributesOffset, 4, record.attributes);
  Store(bytes, kStolenTimeOffset, 8, record.stolen_ns);
  return Ok();
}

Result<void> CheckServable(std::uint32_t revision, std::span<const std::uint32_t> served) {
  if (std::find(served.begin(), served.end(), revision) != served.end()) return Ok();
  std::string list;
  for (const std::uint32_t r : served) list += (list.empty() ? "" : ", ") + std::to_string(r);
  return Fail(ErrorCode::kUnsupported, "PV time record revision " + std::to_string(revision) +
                                           " cannot be served here: this host serves " +
                                           (served.empty() ? std::string("no revision (no PV time)")
                                                           : "revision " + list + " only"));
}

}  // namespace vtime::pvtime
