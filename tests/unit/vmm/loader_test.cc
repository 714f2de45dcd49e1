#include "vmm/loader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "vmm/layout.h"

namespace vtime::vmm {
namespace {

constexpr std::uint64_t kRamSize = 4 << 20;

// A minimal ELF64 AArch64 executable with one PT_LOAD segment.
std::vector<std::uint8_t> Elf(std::uint64_t paddr, std::vector<std::uint8_t> data,
                              std::uint64_t memsz, std::uint64_t entry) {
  std::vector<std::uint8_t> f(64 + 56, 0);
  auto put = [&](std::size_t at, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
      f[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
  };
  f[0] = 0x7f;
  f[1] = 'E';
  f[2] = 'L';
  f[3] = 'F';
  f[4] = 2;  // 64-bit
  f[5] = 1;  // little endian
  f[6] = 1;
  put(16, 2, 2);    // ET_EXEC
  put(18, 183, 2);  // EM_AARCH64
  put(24, entry, 8);
  put(32, 64, 8);           // phoff
  put(54, 56, 2);           // phentsize
  put(56, 1, 2);            // phnum
  put(64, 1, 4);            // PT_LOAD
  put(64 + 8, 64 + 56, 8);  // offset
  put(64 + 24, paddr, 8);
  put(64 + 32, data.size(), 8);
  put(64 + 40, memsz, 8);
  f.insert(f.end(), data.begin(), data.end());
  return f;
}

class LoaderTest : public testing::Test {
 protected:
  RamView Ram() { return RamView{layout::kRam, {ram_.data(), ram_.size()}}; }
  std::vector<std::uint8_t> ram_ = std::vector<std::uint8_t>(kRamSize, 0xee);
};

TEST_F(LoaderTest, RawImageGoesToTheRawLoadAddressAndStartsAtItsFirstByte) {
  const std::vector<std::uint8_t> image = {1, 2, 3, 4};
  auto loaded = LoadImage(image, Ram());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().Message();
  EXPECT_FALSE(loaded->elf);
  EXPECT_EQ(loaded->entry, layout::kRawImageLoad);
  EXPECT_EQ(std::memcmp(ram_.data() + (layout::kRawImageLoad - layout::kRam), image.data(), 4), 0);
}

TEST_F(LoaderTest, ElfSegmentsLoadAtTheirPhysicalAddressAndBssIsZeroed) {
  const auto elf = Elf(layout::kRam + 0x1000, {9, 8, 7}, 16, layout::kRam + 0x1000);
  auto loaded = LoadImage(elf, Ram());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().Message();
  EXPECT_TRUE(loaded->elf);
  EXPECT_EQ(loaded->entry, layout::kRam + 0x1000);
  EXPECT_EQ(loaded->high, layout::kRam + 0x1000 + 16);
  EXPECT_EQ(ram_[0x1000], 9);
  EXPECT_EQ(ram_[0x1002], 7);
  EXPECT_EQ(ram_[0x1003], 0);     // bss
  EXPECT_EQ(ram_[0x1010], 0xee);  // untouched past memsz
}

TEST_F(LoaderTest, RefusesEmptyImage) {
  auto loaded = LoadImage({}, Ram());
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error().code, ErrorCode::kMalformed);
}

TEST_F(LoaderTest, RefusesSegmentOutsideRam) {
  const auto elf = Elf(0x1000, {1}, 1, 0x1000);
  auto loaded = LoadImage(elf, Ram());
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error().code, ErrorCode::kOutOfRange);
  EXPECT_NE(loaded.error().context.find("does not fit in guest RAM"), std::string::npos);
}

TEST_F(LoaderTest, RefusesSegmentWrappingAroundTheAddressSpace) {
  const auto elf = Elf(~std::uint64_t{0} - 1, {1}, 16, ~std::uint64_t{0} - 1);
  EXPECT_FALSE(LoadImage(elf, Ram()).has_value());
}

TEST_F(LoaderTest, RefusesEntryOutsideLoadedSegments) {
  const auto elf = Elf(layout::kRam, {1, 2}, 2, layout::kRam + 0x100);
  auto loaded = LoadImage(elf, Ram());
  ASSERT_FALSE(loaded.has_value());
  EXPECT_NE(loaded.error().context.find("entry point"), std::string::npos);
}

TEST_F(LoaderTest, RefusesOtherMachinesAndTruncatedHeaders) {
  auto elf = Elf(layout::kRam, {1}, 1, layout::kRam);
  elf[18] = 62;  // x86-64
  auto loaded = LoadImage(elf, Ram());
  ASSERT_FALSE(loaded.has_value());
  EXPECT_NE(loaded.error().context.find("not AArch64"), std::string::npos);
  const std::vector<std::uint8_t> stub = {0x7f, 'E', 'L', 'F', 2};
  EXPECT_FALSE(LoadImage(stub, Ram()).has_value());
}

TEST_F(LoaderTest, RefusesSegmentDataBeyondTheFile) {
  auto elf = Elf(layout::kRam, {1, 2, 3}, 3, layout::kRam);
  elf.resize(elf.size() - 2);
  auto loaded = LoadImage(elf, Ram());
  ASSERT_FALSE(loaded.has_value());
  EXPECT_NE(loaded.error().context.find("outside the file"), std::string::npos);
}

TEST_F(LoaderTest, RefusesRawImageLargerThanRam) {
  const std::vector<std::uint8_t> big(kRamSize, 0);
  auto loaded = LoadImage(big, Ram());
  ASSERT_FALSE(loaded.has_value());
  EXPECT_NE(loaded.error().context.find("does not fit in guest RAM"), std::string::npos);
}

}  // namespace
}  // namespace vtime::vmm
