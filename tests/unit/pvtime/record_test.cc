// The PV stolen-time record model: layout, bounds, and the served-revision
// check. The expected bytes are written out here from the record's layout
// (ARM DEN0057A), not computed with the code under test.
#include "vtime/pvtime/record.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

namespace vtime::pvtime {
namespace {

TEST(PvtimeRecord, LayoutIsTheSpecifications) {
  EXPECT_EQ(kRecordSize, 64u);
  EXPECT_EQ(kRecordAlignment, 64u);
  EXPECT_EQ(kDefinedBytes, 16u);
  EXPECT_EQ(kRevisionOffset, 0u);
  EXPECT_EQ(kAttributesOffset, 4u);
  EXPECT_EQ(kStolenTimeOffset, 8u);
  EXPECT_EQ(kRevision0, 0u);
  EXPECT_EQ(kAttributesNone, 0u);
  EXPECT_EQ(RecordOffset(0), 0u);
  EXPECT_EQ(RecordOffset(3), 192u);
  EXPECT_EQ(RecordCapacity(0x10000), 1024u);
}

TEST(PvtimeRecord, ReadsLittleEndianFields) {
  std::array<std::uint8_t, 64> b{};
  const std::uint8_t head[16] = {0x01, 0x02, 0x03, 0x04, 0xaa, 0xbb, 0xcc, 0xdd,
                                 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
  for (std::size_t i = 0; i < 16; ++i) b[i] = head[i];
  b[20] = 0xff;  // padding: not part of any field
  auto r = ReadRecord(b);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->revision, 0x04030201u);
  EXPECT_EQ(r->attributes, 0xddccbbaau);
  EXPECT_EQ(r->stolen_ns, 0x0102030405060708u);
}

TEST(PvtimeRecord, WriteThenReadLeavesThePaddingAlone) {
  std::vector<std::uint8_t> b(64, 0x5a);
  ASSERT_TRUE(WriteRecord(b, Record{1, 2, 0x1122334455667788}).has_value());
  EXPECT_EQ(b[0], 1);
  EXPECT_EQ(b[4], 2);
  EXPECT_EQ(b[8], 0x88);
  EXPECT_EQ(b[15], 0x11);
  for (std::size_t i = 16; i < 64; ++i) EXPECT_EQ(b[i], 0x5a) << "byte " << i;
  EXPECT_EQ(ReadRecord(b).value(), (Record{1, 2, 0x1122334455667788}));
}

TEST(PvtimeRecord, RefusesTooFewBytes) {
  std::vector<std::uint8_t> b(15);
  auto r = ReadRecord(b);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kMalformed);
  EXPECT_FALSE(WriteRecord(b, Record{}).has_value());
}

TEST(PvtimeRecord, RecordAtFindsEachVcpusRecord) {
  std::vector<std::uint8_t> region(0x10000);
  ASSERT_TRUE(WriteRecord(std::span(region).subspan(RecordOffset(2)), Record{0, 0, 77}));
  auto r = RecordAt(region, 0x090a0000, 0x090a0000 + 128);
  ASSERT_TRUE(r.has_value()) << r.error().Message();
  EXPECT_EQ(r->stolen_ns, 77u);
  EXPECT_TRUE(RecordAt(region, 0x090a0000, 0x090a0000 + 0x10000 - 64).has_value());
}

TEST(PvtimeRecord, RecordAtRefusesAddressesOutsideOrMisaligned) {
  std::vector<std::uint8_t> region(0x10000);
  const std::uint64_t base = 0x090a0000;
  for (const std::uint64_t ipa : {base - 64, base + 0x10000, base + 0x10000 - 32, base + 8,
                                  std::uint64_t{0}, ~std::uint64_t{63}}) {
    auto r = RecordAt(region, base, ipa);
    ASSERT_FALSE(r.has_value()) << "ipa " << ipa;
    EXPECT_EQ(r.error().code, ErrorCode::kOutOfRange);
  }
  EXPECT_NE(RecordAt(region, base, base + 0x10000).error().context.find("not inside"),
            std::string::npos);
  EXPECT_NE(RecordAt(region, base, base + 8).error().context.find("not 64-byte aligned"),
            std::string::npos);
}

TEST(PvtimeServe, AcceptsAServedRevision) {
  const std::uint32_t served[] = {0};
  EXPECT_TRUE(CheckServable(0, served).has_value());
  const std::uint32_t two[] = {0, 1};
  EXPECT_TRUE(CheckServable(1, two).has_value());
}

TEST(PvtimeServe, RefusesARevisionTheHostCannotServeNamingIt) {
  const std::uint32_t served[] = {0};
  auto r = CheckServable(1, served);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(r.error().context.find("revision 1 cannot be served"), std::string::npos)
      << r.error().context;
  EXPECT_NE(r.error().context.find("serves revision 0 only"), std::string::npos)
      << r.error().context;
  auto none = CheckServable(0, {});
  ASSERT_FALSE(none.has_value());
  EXPECT_NE(none.error().context.find("no revision"), std::string::npos);
}

}  // namespace
}  // namespace vtime::pvtime
