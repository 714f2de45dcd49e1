#include "vmm/boot.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

extern "C" {
#include <libfdt.h>
}

#include "vmm/layout.h"

namespace vtime::vmm {
namespace {

constexpr std::uint64_t kRamSize = 64ULL << 20;

std::vector<std::uint8_t> Arm64Image(std::uint64_t image_size) {
  std::vector<std::uint8_t> f(4096, 0x5a);
  for (int i = 0; i < 8; ++i) {
    f[16 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(image_size >> (8 * i));
    f[8 + static_cast<std::size_t>(i)] = 0;  // text_offset 0
    f[24 + static_cast<std::size_t>(i)] = i == 0 ? 0xa : 0;
  }
  const std::uint8_t magic[4] = {'A', 'R', 'M', 0x64};
  std::memcpy(f.data() + 56, magic, 4);
  return f;
}

std::uint64_t Prop64(const void* fdt, const char* name) {
  int len = 0;
  const int chosen = fdt_path_offset(fdt, "/chosen");
  const auto* p = static_cast<const fdt32_t*>(fdt_getprop(fdt, chosen, name, &len));
  if (p == nullptr || len != 8) return 0;
  return (std::uint64_t{fdt32_to_cpu(p[0])} << 32) | fdt32_to_cpu(p[1]);
}

class BootTest : public testing::Test {
 protected:
  RamView Ram() { return RamView{layout::kRam, {ram_.data(), ram_.size()}}; }
  std::vector<std::uint8_t> ram_ = std::vector<std::uint8_t>(kRamSize, 0xee);
};

TEST_F(BootTest, LinuxGetsItsInitrdAndBootargsAndTheTreeSaysWhere) {
  const auto kernel = Arm64Image(16ULL << 20);
  const std::vector<std::uint8_t> initrd(100'000, 0x77);
  BootRequest req{kernel, ImageFormat::kLinuxImage, initrd, MachineDescription{}};
  req.machine.bootargs = "console=ttyAMA0";
  auto boot = LoadBoot(req, Ram());
  ASSERT_TRUE(boot.has_value()) << boot.error().Message();
  EXPECT_EQ(boot->image.entry, layout::kRam);
  const BootData& d = boot->data;
  // The tree in RAM is the one returned, and a valid one.
  const std::uint8_t* tree = ram_.data() + (d.dtb - layout::kRam);
  ASSERT_EQ(fdt_check_header(tree), 0);
  EXPECT_EQ(std::memcmp(tree, boot->dtb.data(), boot->dtb.size()), 0);
  EXPECT_EQ(d.dtb % 8, 0U);
  // /chosen says where the initrd is, and it is there, clear of the kernel.
  EXPECT_EQ(Prop64(tree, "linux,initrd-start"), d.initrd_start);
  EXPECT_EQ(Prop64(tree, "linux,initrd-end"), d.initrd_start + initrd.size());
  EXPECT_GE(d.initrd_start, layout::kRam + (16ULL << 20));
  EXPECT_LE(d.initrd_end, d.dtb);
  EXPECT_EQ(
      std::memcmp(ram_.data() + (d.initrd_start - layout::kRam), initrd.data(), initrd.size()), 0);
  const int chosen = fdt_path_offset(tree, "/chosen");
  EXPECT_STREQ(static_cast<const char*>(fdt_getprop(tree, chosen, "bootargs", nullptr)),
               "console=ttyAMA0");
  // The memory node says how much RAM there is.
  int len = 0;
  const auto* reg = static_cast<const fdt32_t*>(
      fdt_getprop(tree, fdt_path_offset(tree, "/memory@40000000"), "reg", &len));
  ASSERT_EQ(len, 16);
  EXPECT_EQ(fdt32_to_cpu(reg[3]), kRamSize);
}

TEST_F(BootTest, ProgramsKeepTheirTreeWhereItAlwaysWasAndSeeTheirBootargs) {
  const std::vector<std::uint8_t> raw = {1, 2, 3, 4};
  BootRequest req{raw, ImageFormat::kProgram, {}, MachineDescription{}};
  req.machine.bootargs = "hello";
  auto boot = LoadBoot(req, Ram());
  ASSERT_TRUE(boot.has_value()) << boot.error().Message();
  EXPECT_EQ(boot->image.entry, layout::kRawImageLoad);
  EXPECT_EQ(boot->data.dtb, (layout::kRam + kRamSize - boot->dtb.size() - 4096) & ~0xfffULL);
  const std::uint8_t* tree = ram_.data() + (boot->data.dtb - layout::kRam);
  EXPECT_EQ(fdt_getprop(tree, fdt_path_offset(tree, "/chosen"), "linux,initrd-start", nullptr),
            nullptr);
}

TEST_F(BootTest, KernelWithoutItsHeaderOrTooBigForRamIsRefused) {
  const std::vector<std::uint8_t> raw(4096, 1);
  auto r = LoadBoot(BootRequest{raw, ImageFormat::kLinuxImage, {}, {}}, Ram());
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().context.find("not an arm64 Linux Image"), std::string::npos);
  const auto big = Arm64Image(80ULL << 20);
  r = LoadBoot(BootRequest{big, ImageFormat::kLinuxImage, {}, {}}, Ram());
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().context.find("--memory"), std::string::npos);
  // Room for the kernel but not for its initrd.
  const auto fits = Arm64Image(63ULL << 20);
  const std::vector<std::uint8_t> initrd(2 << 20, 0);
  r = LoadBoot(BootRequest{fits, ImageFormat::kLinuxImage, initrd, {}}, Ram());
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().context.find("initrd"), std::string::npos);
}

}  // namespace
}  // namespace vtime::vmm
