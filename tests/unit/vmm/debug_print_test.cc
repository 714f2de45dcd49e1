#include "vmm/debug_print.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vtime::vmm {
namespace {

constexpr std::uint64_t kBase = 0x40000000;

struct Fixture {
  std::vector<std::uint8_t> ram = std::vector<std::uint8_t>(4096, 0);
  std::string printed;
  std::vector<std::string> refused;
  DebugPrint dev{ram, kBase, [this](std::string_view s) { printed.append(s); },
                 [this](const std::string& why) { refused.push_back(why); }};

  void Put(std::uint64_t at, std::string_view text) {
    std::copy(text.begin(), text.end(), ram.begin() + static_cast<std::ptrdiff_t>(at));
  }
};

TEST(DebugPrint, IdReadsTheMagicAndOtherRegistersReadZero) {
  Fixture f;
  EXPECT_EQ(f.dev.Read(0x10, 4), DebugPrint::kMagic);
  EXPECT_EQ(f.dev.Read(0x10, 8), 0U);  // only a 32-bit read
  EXPECT_EQ(f.dev.Read(0x00, 8), 0U);
  EXPECT_EQ(f.dev.Read(0x08, 4), 0U);
}

TEST(DebugPrint, PrintsTheBufferAtTheAddressGiven) {
  Fixture f;
  f.Put(100, "hello, log\n");
  f.dev.Write(0x00, kBase + 100, 8);
  f.dev.Write(0x08, 11, 4);
  EXPECT_EQ(f.printed, "hello, log\n");
  EXPECT_TRUE(f.refused.empty());
}

TEST(DebugPrint, AddressFromTwo32BitHalves) {
  Fixture f;
  f.Put(8, "xy");
  f.dev.Write(0x00, 0xdead0000, 8);
  f.dev.Write(0x00, (kBase + 8) & 0xffffffff, 4);
  f.dev.Write(0x04, (kBase + 8) >> 32, 4);
  f.dev.Write(0x08, 2, 4);
  EXPECT_EQ(f.printed, "xy");
}

TEST(DebugPrint, TheLastByteOfRamIsPrintable) {
  Fixture f;
  f.Put(4095, "z");
  f.dev.Write(0x00, kBase + 4095, 8);
  f.dev.Write(0x08, 1, 4);
  EXPECT_EQ(f.printed, "z");
}

TEST(DebugPrint, RefusesBuffersOutsideRamAndPrintsNothing) {
  Fixture f;
  for (const auto& [addr, len] : std::vector<std::pair<std::uint64_t, std::uint64_t>>{
           {kBase + 4095, 2},             // runs past the end
           {kBase - 1, 1},                // starts before RAM
           {kBase + 4096, 1},             // starts just past the end
           {~std::uint64_t{0} - 2, 8},    // wraps around
           {0, 16}}) {                    // nowhere near
    f.dev.Write(0x00, addr, 8);
    f.dev.Write(0x08, len, 8);
  }
  EXPECT_EQ(f.printed, "");
  ASSERT_EQ(f.refused.size(), 5U);
  EXPECT_NE(f.refused[0].find("not inside guest RAM"), std::string::npos) << f.refused[0];
}

TEST(DebugPrint, RefusesOverlongRequests) {
  Fixture f;
  f.dev.Write(0x00, kBase, 8);
  f.dev.Write(0x08, DebugPrint::kMaxLength + 1, 4);
  EXPECT_EQ(f.printed, "");
  ASSERT_EQ(f.refused.size(), 1U);
  EXPECT_NE(f.refused[0].find("at most 65536"), std::string::npos) << f.refused[0];
}

TEST(DebugPrint, ZeroLengthAndUnknownRegistersDoNothing) {
  Fixture f;
  f.dev.Write(0x00, kBase, 8);
  f.dev.Write(0x08, 0, 4);
  f.dev.Write(0x18, 5, 4);
  f.dev.Write(0x08, 5, 2);  // LEN takes 32- or 64-bit writes only
  EXPECT_EQ(f.printed, "");
  EXPECT_TRUE(f.refused.empty());
}

}  // namespace
}  // namespace vtime::vmm
