#include "vtime/wire.h"

#include <gtest/gtest.h>

namespace vtime::wire {
namespace {

constexpr Magic kMagic = {'T', 'E', 'S', 'T', 'F', 'M', 'T', '\0'};

TEST(Wire, WriterIsLittleEndianAndReaderReadsItBack) {
  Writer w;
  w.U8(0x01);
  w.U16(0x0203);
  w.U32(0x04050607);
  w.U64(0x08090a0b0c0d0e0fULL);
  const std::vector<std::uint8_t> blob = {0xaa, 0xbb};
  w.Blob(blob);
  const auto bytes = w.Take();
  EXPECT_EQ(bytes[1], 0x03);
  EXPECT_EQ(bytes[2], 0x02);
  Reader r(bytes, "test");
  EXPECT_EQ(*r.U8(), 0x01);
  EXPECT_EQ(*r.U16(), 0x0203);
  EXPECT_EQ(*r.U32(), 0x04050607U);
  EXPECT_EQ(*r.U64(), 0x08090a0b0c0d0e0fULL);
  auto b = r.Blob();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->size(), 2U);
  EXPECT_TRUE(r.done());
}

TEST(Wire, ReaderRefusesToReadPastTheEnd) {
  const std::vector<std::uint8_t> bytes = {1, 2, 3};
  Reader r(bytes, "thing");
  auto v = r.U32();
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code, ErrorCode::kMalformed);
  EXPECT_NE(v.error().context.find("thing: truncated at byte 0"), std::string::npos);
}

TEST(Wire, BlobWithAHugeLengthIsRefusedNotAllocated) {
  Writer w;
  w.U64(~std::uint64_t{0});
  const auto bytes = w.Take();
  Reader r(bytes, "x");
  EXPECT_FALSE(r.Blob().has_value());
}

TEST(Wire, FrameRoundTrips) {
  const std::vector<std::uint8_t> payload = {9, 8, 7};
  const auto framed = Frame(kMagic, 2, payload);
  EXPECT_EQ(framed.size(), 24U + 3 + 4);
  auto un = Unframe(framed, kMagic, 2, "test file");
  ASSERT_TRUE(un.has_value()) << un.error().Message();
  EXPECT_EQ(un->version, 2U);
  EXPECT_EQ(std::vector<std::uint8_t>(un->payload.begin(), un->payload.end()), payload);
}

TEST(Wire, UnframeRefusesEveryTruncationAndEveryBitFlip) {
  const std::vector<std::uint8_t> payload = {1, 2, 3, 4, 5};
  const auto framed = Frame(kMagic, 1, payload);
  for (std::size_t n = 0; n < framed.size(); ++n) {
    EXPECT_FALSE(Unframe(std::span(framed).first(n), kMagic, 1, "f").has_value()) << n;
  }
  for (std::size_t i = 0; i < framed.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bad = framed;
      bad[i] ^= static_cast<std::uint8_t>(1U << bit);
      EXPECT_FALSE(Unframe(bad, kMagic, 1, "f").has_value()) << i << ":" << bit;
    }
  }
}

TEST(Wire, UnframeSaysWhatIsWrong) {
  const std::vector<std::uint8_t> payload = {1};
  auto framed = Frame(kMagic, 3, payload);
  auto newer = Unframe(framed, kMagic, 2, "snapshot");
  ASSERT_FALSE(newer.has_value());
  EXPECT_EQ(newer.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(newer.error().context.find("format version 3"), std::string::npos);
  auto other = Frame(Magic{'O', 'T', 'H', 'E', 'R', 0, 0, 0}, 1, payload);
  auto magic = Unframe(other, kMagic, 2, "snapshot");
  ASSERT_FALSE(magic.has_value());
  EXPECT_NE(magic.error().context.find("bad magic"), std::string::npos);
  framed.push_back(0);
  auto trailing = Unframe(framed, kMagic, 3, "snapshot");
  ASSERT_FALSE(trailing.has_value());
  EXPECT_NE(trailing.error().context.find("trailing"), std::string::npos);
}

}  // namespace
}  // namespace vtime::wire
