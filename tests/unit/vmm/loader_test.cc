#include "vmm/loader.h"

#include <gtest/gtest.h>

#include <algorithm>
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

// An arm64 Image: the 64-byte header, then `body` bytes of "code".
std::vector<std::uint8_t> Arm64Image(std::uint64_t text_offset, std::uint64_t image_size,
                                     std::uint64_t flags, std::size_t body = 64) {
  std::vector<std::uint8_t> f(64 + body, 0x5a);
  auto put = [&](std::size_t at, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
      f[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
  };
  put(0, 0x14000010, 4);  // b +0x40
  put(4, 0, 4);
  put(8, text_offset, 8);
  put(16, image_size, 8);
  put(24, flags, 8);
  std::fill(f.begin() + 32, f.begin() + 56, 0);  // reserved
  put(56, 0x644d5241, 4);                        // "ARM\x64"
  put(60, 0, 4);
  return f;
}

TEST(Arm64ImageHeader, DecodesTheFieldsAndTheFlags) {
  // Debian's 6.12 Image: text_offset 0, image_size 0x2b30000, flags 0xa.
  const auto image = Arm64Image(0, 0x2b30000, 0xa);
  auto h = ParseArm64ImageHeader(image);
  ASSERT_TRUE(h.has_value()) << h.error().Message();
  EXPECT_EQ(h->text_offset, 0U);
  EXPECT_EQ(h->image_size, 0x2b30000U);
  EXPECT_FALSE(h->big_endian());
  EXPECT_EQ(h->page_size_kib(), 4U);
  EXPECT_TRUE(h->place_anywhere());
  EXPECT_EQ(ParseArm64ImageHeader(Arm64Image(0x80000, 0x100000, 6))->page_size_kib(), 64U);
  EXPECT_FALSE(ParseArm64ImageHeader(Arm64Image(0x80000, 0x100000, 6))->place_anywhere());
}

TEST(Arm64ImageHeader, KernelsBefore317AreAssumedAtTextOffset0x80000) {
  // image_size 0: text_offset and flags are not to be trusted.
  auto h = ParseArm64ImageHeader(Arm64Image(0x1234567, 0, 1));
  ASSERT_TRUE(h.has_value()) << h.error().Message();
  EXPECT_EQ(h->text_offset, 0x80000U);
  EXPECT_EQ(h->flags, 0U);
}

TEST(Arm64ImageHeader, RefusesNoMagicBigEndianAndImpossibleFields) {
  auto no_magic = Arm64Image(0, 0x10000, 0xa);
  no_magic[56] = 'X';
  EXPECT_FALSE(HasArm64ImageMagic(no_magic));
  auto r = ParseArm64ImageHeader(no_magic);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().context.find("magic"), std::string::npos);
  EXPECT_FALSE(ParseArm64ImageHeader(std::vector<std::uint8_t>(63, 0)).has_value());

  r = ParseArm64ImageHeader(Arm64Image(0, 0x10000, 0xb));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(r.error().context.find("big-endian"), std::string::npos);

  r = ParseArm64ImageHeader(Arm64Image(0, 64, 0xa, 4096));  // image_size < file
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().context.find("smaller than the file"), std::string::npos);
  EXPECT_FALSE(ParseArm64ImageHeader(Arm64Image(0x80001, 0x10000, 0xa)).has_value());
  EXPECT_FALSE(ParseArm64ImageHeader(Arm64Image(0x200000, 0x400000, 0xa)).has_value());
}

TEST_F(LoaderTest, Arm64ImageGoesAtTheRamBasePlusTextOffsetWithItsBssCleared) {
  const auto image = Arm64Image(0x80000, 0x2000, 0xa);
  auto loaded = LoadArm64Image(image, Ram());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().Message();
  EXPECT_TRUE(loaded->arm64_image);
  EXPECT_FALSE(loaded->elf);
  EXPECT_EQ(loaded->entry, layout::kRam + 0x80000);
  EXPECT_EQ(loaded->low, layout::kRam + 0x80000);
  EXPECT_EQ(loaded->high, layout::kRam + 0x80000 + 0x2000);  // image_size, not the file
  EXPECT_EQ(std::memcmp(ram_.data() + 0x80000, image.data(), image.size()), 0);
  EXPECT_EQ(ram_[0x80000 + image.size()], 0);  // BSS
  EXPECT_EQ(ram_[0x80000 + 0x1fff], 0);        // last byte of image_size
  EXPECT_EQ(ram_[0x80000 + 0x2000], 0xee);     // past it: untouched
  EXPECT_EQ(ram_[0x7ffff], 0xee);
}

TEST_F(LoaderTest, Arm64ImageRefusesARamTooSmallWithTheSizeNeeded) {
  const auto image = Arm64Image(0, 8ULL << 20, 0xa);  // needs 8 MiB; RAM is 4
  auto loaded = LoadArm64Image(image, Ram());
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error().code, ErrorCode::kOutOfRange);
  EXPECT_NE(loaded.error().context.find("needs 8 MiB"), std::string::npos)
      << loaded.error().context;
  EXPECT_NE(loaded.error().context.find("--memory"), std::string::npos);
}

TEST_F(LoaderTest, Arm64ImageNeedsItsHeader) {
  const std::vector<std::uint8_t> raw(256, 1);
  EXPECT_FALSE(LoadArm64Image(raw, Ram()).has_value());
}

TEST(PlaceBootData, TreeOnePageBelowTheLimitAndTheInitrdRightUnderIt) {
  const std::uint64_t floor = 0x40000000 + 0x2b30000, limit = 0x50000000;
  auto d = PlaceBootData(floor, limit, 0x1234, 0x10001);
  ASSERT_TRUE(d.has_value()) << d.error().Message();
  EXPECT_EQ(d->dtb % 8, 0U);
  EXPECT_EQ(d->dtb, (limit - 0x1234 - 0x1000) & ~0xfffULL);  // as vtvmm always placed it
  EXPECT_LE(d->dtb + 0x1234, limit);
  EXPECT_EQ(d->initrd_start % 4096, 0U);
  EXPECT_EQ(d->initrd_end, d->initrd_start + 0x10001);
  EXPECT_LE(d->initrd_end, d->dtb);   // no overlap
  EXPECT_GE(d->initrd_start, floor);  // clear of the kernel's image_size
  auto none = PlaceBootData(floor, limit, 0x1234, 0);
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->initrd_start, none->initrd_end);
}

TEST(PlaceBootData, RefusesWhatDoesNotFitAboveTheImage) {
  auto d = PlaceBootData(0x4fff0000, 0x50000000, 0x2000, 0x10000);
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code, ErrorCode::kOutOfRange);
  EXPECT_NE(d.error().context.find("initrd"), std::string::npos);
  EXPECT_NE(d.error().context.find("--memory"), std::string::npos);
  EXPECT_FALSE(PlaceBootData(0x4ffff000, 0x50000000, 0x2000, 0).has_value());
  EXPECT_FALSE(PlaceBootData(0x50000000, 0x4ffff000, 0x10, 0).has_value());
}

TEST(PlaceBootData, LinuxKeepsTheTreeWithin512MiBOfItsBaseOthersUseAllOfRam) {
  LoadedImage linux_image{layout::kRam, layout::kRam, layout::kRam + 0x2b30000, false, true};
  EXPECT_EQ(BootDataLimit(linux_image, layout::kRam, 2ULL << 30), layout::kRam + (512ULL << 20));
  LoadedImage elf{layout::kRam, layout::kRam, layout::kRam + 0x1000, true, false};
  EXPECT_EQ(BootDataLimit(elf, layout::kRam, 2ULL << 30), layout::kRam + (2ULL << 30));
  EXPECT_EQ(BootDataLimit(linux_image, layout::kRam, 256ULL << 20), layout::kRam + (256ULL << 20));
}

}  // namespace
}  // namespace vtime::vmm
