// The JSON view of a saved state, parsed back with nlohmann::json and
// checked field by field.
#include "vtime/state/json.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vtime/state/saved_state.h"

namespace vtime::state {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

SavedState Sample() {
  SavedState s;
  s.counter_frequency_hz = 24'000'000;
  s.offset_api = OffsetApi::kVmOffset;
  s.virtual_offset = 0x1000;
  s.physical_offset = 0x0fff;
  s.pause = CapturePair{0x5000, -7};
  VcpuTime nested;
  nested.nested = true;
  nested.el1_virtual = {1, 0x6000};
  nested.el1_physical = {3, kMax};
  nested.el2_virtual = {2, 0x7000};
  nested.el2_physical = {0, 0x8000};
  nested.cntkctl_el1 = 0x3;
  nested.cnthctl_el2 = 0x5;
  nested.cntvoff_el2 = 0xabc;
  nested.pvtime = PvTimeState{true, 0x8000'0040, 0, 123'456};
  s.vcpus = {nested, VcpuTime{}};
  return s;
}

Json Parse(const SavedState& s) {
  const std::string text = ToJson(s);
  EXPECT_TRUE(Json::accept(text)) << text;
  return Json::parse(text);
}

std::vector<std::string> Keys(const Json& j) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : j.items()) keys.push_back(key);
  return keys;
}

TEST(StateJson, TopLevelKeysComeInAFixedOrder) {
  const std::vector<std::string> expected = {"format_version",
                                             "counter_frequency_hz",
                                             "offset_api",
                                             "offset_api_name",
                                             "virtual_offset",
                                             "virtual_offset_hex",
                                             "physical_offset",
                                             "physical_offset_hex",
                                             "pause",
                                             "derived",
                                             "vcpus"};
  EXPECT_EQ(Keys(Parse(Sample())), expected);
  EXPECT_EQ(Keys(Parse(SavedState{})), expected);
}

TEST(StateJson, VmFieldsAreDecimalWithHexOffsets) {
  const Json j = Parse(Sample());
  EXPECT_EQ(j["format_version"].get<std::uint32_t>(), 1u);
  ASSERT_TRUE(j["counter_frequency_hz"].is_number_unsigned());
  EXPECT_EQ(j["counter_frequency_hz"].get<std::uint64_t>(), 24'000'000u);
  EXPECT_EQ(j["offset_api"].get<int>(), 1);
  EXPECT_EQ(j["offset_api_name"], "VM offset");
  EXPECT_EQ(j["virtual_offset"].get<std::uint64_t>(), 4096u);
  EXPECT_EQ(j["virtual_offset_hex"], "0x1000");
  EXPECT_EQ(j["physical_offset"].get<std::uint64_t>(), 4095u);
  EXPECT_EQ(j["physical_offset_hex"], "0xfff");
  EXPECT_EQ(j["pause"]["host_counter"].get<std::uint64_t>(), 0x5000u);
  EXPECT_EQ(j["pause"]["host_counter_hex"], "0x5000");
  EXPECT_EQ(j["pause"]["wall_clock_ns"].get<std::int64_t>(), -7);
}

TEST(StateJson, DerivedCountsAreMarkedAndComputedModulo2To64) {
  const Json j = Parse(Sample());
  ASSERT_TRUE(j.contains("derived"));
  EXPECT_EQ(j["derived"]["virtual_count_at_pause"].get<std::uint64_t>(), 0x4000u);
  EXPECT_EQ(j["derived"]["physical_count_at_pause"].get<std::uint64_t>(), 0x4001u);
  EXPECT_NE(j["derived"]["note"].get<std::string>().find("not stored"), std::string::npos);
  SavedState wraps = Sample();
  wraps.pause.host_counter = 1;
  wraps.virtual_offset = 2;
  EXPECT_EQ(Parse(wraps)["derived"]["virtual_count_at_pause"].get<std::uint64_t>(), kMax);
}

TEST(StateJson, VcpuTimersAndNestedRegisters) {
  const Json j = Parse(Sample());
  ASSERT_EQ(j["vcpus"].size(), 2u);
  const Json& v = j["vcpus"][0];
  EXPECT_EQ(Keys(v),
            (std::vector<std::string>{"index", "nested", "el1_virtual", "el1_physical",
                                      "el2_virtual", "el2_physical", "cntkctl_el1", "cnthctl_el2",
                                      "cntvoff_el2", "cntvoff_el2_hex", "pvtime"}));
  EXPECT_EQ(v["index"].get<int>(), 0);
  EXPECT_TRUE(v["nested"].get<bool>());
  EXPECT_EQ(v["el1_virtual"]["ctl"].get<std::uint64_t>(), 1u);
  EXPECT_TRUE(v["el1_virtual"]["ctl_bits"]["enable"].get<bool>());
  EXPECT_FALSE(v["el1_virtual"]["ctl_bits"]["imask"].get<bool>());
  EXPECT_EQ(v["el1_virtual"]["cval"].get<std::uint64_t>(), 0x6000u);
  EXPECT_EQ(v["el1_virtual"]["cval_hex"], "0x6000");
  EXPECT_EQ(v["el1_physical"]["cval"].get<std::uint64_t>(), kMax);
  EXPECT_EQ(v["el1_physical"]["cval_hex"], "0xffffffffffffffff");
  EXPECT_TRUE(v["el1_physical"]["ctl_bits"]["imask"].get<bool>());
  EXPECT_EQ(v["el2_virtual"]["cval"].get<std::uint64_t>(), 0x7000u);
  EXPECT_FALSE(v["el2_physical"]["ctl_bits"]["enable"].get<bool>());
  EXPECT_EQ(v["cntkctl_el1"].get<std::uint64_t>(), 3u);
  EXPECT_EQ(v["cnthctl_el2"].get<std::uint64_t>(), 5u);
  EXPECT_EQ(v["cntvoff_el2"].get<std::uint64_t>(), 0xabcu);
  EXPECT_EQ(v["cntvoff_el2_hex"], "0xabc");
  EXPECT_EQ(j["vcpus"][1]["index"].get<int>(), 1);
  EXPECT_FALSE(j["vcpus"][1]["nested"].get<bool>());
}

TEST(StateJson, PvTimeShowsRevisionAndAddress) {
  const Json j = Parse(Sample());
  const Json& pv = j["vcpus"][0]["pvtime"];
  EXPECT_EQ(Keys(pv),
            (std::vector<std::string>{"enabled", "revision", "ipa", "ipa_hex", "stolen_ns"}));
  EXPECT_TRUE(pv["enabled"].get<bool>());
  EXPECT_EQ(pv["revision"].get<std::uint32_t>(), 0u);
  EXPECT_EQ(pv["ipa"].get<std::uint64_t>(), 0x8000'0040u);
  EXPECT_EQ(pv["ipa_hex"], "0x80000040");
  EXPECT_EQ(pv["stolen_ns"].get<std::uint64_t>(), 123'456u);
  EXPECT_FALSE(j["vcpus"][1]["pvtime"]["enabled"].get<bool>());
}

TEST(StateJson, NoVcpusIsAnEmptyArray) {
  const Json j = Parse(SavedState{});
  ASSERT_TRUE(j["vcpus"].is_array());
  EXPECT_TRUE(j["vcpus"].empty());
}

TEST(StateJson, PrettyStableAndEndsWithANewline) {
  const std::string a = ToJson(Sample());
  EXPECT_EQ(a, ToJson(Sample()));
  EXPECT_EQ(a.rfind("{\n  \"format_version\": 1,\n", 0), 0u) << a;
  EXPECT_EQ(a.back(), '\n');
  EXPECT_EQ(Json::parse(a).dump(2) + "\n", a);
}

TEST(StateJson, UnknownOffsetApiIsShownNotHidden) {
  SavedState s = Sample();
  s.offset_api = static_cast<OffsetApi>(7);
  const Json j = Parse(s);
  EXPECT_EQ(j["offset_api"].get<int>(), 7);
  EXPECT_EQ(j["offset_api_name"], "unknown");
}

}  // namespace
}  // namespace vtime::state
