// Restoring PV time: the served-revision refusal a destination applies when
// it is configured, and the comparison of the saved state with the restored
// records, which reports and never fails on what a guest wrote.
#include "vtime/pvtime/restore.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "vtime/backend/kvm.h"

namespace vtime::pvtime {
namespace {

constexpr std::uint64_t kBase = 0x090a0000;

state::SavedState StateWith(std::size_t vcpus) {
  state::SavedState s;
  s.counter_frequency_hz = 1'000'000'000;
  for (std::size_t i = 0; i < vcpus; ++i) {
    state::VcpuTime v;
    v.pvtime = state::PvTimeState{true, kBase + RecordOffset(i), kRevision0, 1000 * (i + 1)};
    s.vcpus.push_back(v);
  }
  return s;
}

// The region as the snapshot holds it: each enabled vCPU's record as saved.
std::vector<std::uint8_t> RegionFor(const state::SavedState& s) {
  std::vector<std::uint8_t> region(0x10000);
  for (const state::VcpuTime& v : s.vcpus) {
    if (!v.pvtime.enabled) continue;
    const std::size_t at = static_cast<std::size_t>(v.pvtime.ipa - kBase);
    EXPECT_TRUE(WriteRecord(std::span(region).subspan(at),
                            Record{v.pvtime.revision, kAttributesNone, v.pvtime.stolen_ns}));
  }
  return region;
}

std::span<std::uint8_t> RecordOf(std::vector<std::uint8_t>& region, std::size_t vcpu) {
  return std::span(region).subspan(static_cast<std::size_t>(RecordOffset(vcpu)), kRecordSize);
}

TEST(PvtimeRestore, KvmServesRevisionZeroOnly) {
  EXPECT_EQ(std::size(kvm::kPvtimeServedRevisions), 1u);
  EXPECT_EQ(kvm::kPvtimeServedRevisions[0], kRevision0);
}

// What Machine::Create asks before it builds a restored VM.
TEST(PvtimeRestore, RefusesASavedRevisionKvmCannotServeNamingIt) {
  state::SavedState s = StateWith(3);
  s.vcpus[2].pvtime.revision = 1;
  auto r = CheckServable(s, kvm::kPvtimeServedRevisions);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
  const std::string& why = r.error().context;
  EXPECT_NE(why.find("vCPU 2"), std::string::npos) << why;
  EXPECT_NE(why.find("revision 1 cannot be served"), std::string::npos) << why;
  EXPECT_NE(why.find("revision 0 only"), std::string::npos) << why;
}

TEST(PvtimeRestore, AcceptsServedRevisionsAndIgnoresVcpusWithoutPvTime) {
  state::SavedState s = StateWith(2);
  EXPECT_TRUE(CheckServable(s, kvm::kPvtimeServedRevisions).has_value());
  s.vcpus[1].pvtime = state::PvTimeState{};
  s.vcpus[1].pvtime.revision = 7;  // invalid for Validate, but not PV time: not served
  EXPECT_TRUE(CheckServable(s, kvm::kPvtimeServedRevisions).has_value());
  const std::uint32_t future[] = {0, 1};
  s.vcpus[0].pvtime.revision = 1;
  EXPECT_TRUE(CheckServable(s, future).has_value());
}

TEST(PvtimeRestore, AgreeingRecordsReportNothing) {
  const state::SavedState s = StateWith(4);
  const auto region = RegionFor(s);
  auto m = CompareRestored(s, region, kBase);
  ASSERT_TRUE(m.has_value()) << m.error().Message();
  EXPECT_TRUE(m->empty());
  EXPECT_EQ(DescribeMismatches(*m), "");
}

TEST(PvtimeRestore, ReportsAScribbledHeaderWithoutFailing) {
  const state::SavedState s = StateWith(2);
  auto region = RegionFor(s);
  // The guest wrote junk over vCPU 1's revision and attributes; its count is
  // what KVM (and so the saved state) had.
  ASSERT_TRUE(WriteRecord(RecordOf(region, 1), Record{0xdeadbeef, 0x5a5a5a5a, 2000}));
  auto m = CompareRestored(s, region, kBase);
  ASSERT_TRUE(m.has_value()) << m.error().Message();
  ASSERT_EQ(m->size(), 1u);
  EXPECT_EQ((*m)[0].vcpu, 1u);
  EXPECT_EQ((*m)[0].ipa, kBase + 64);
  EXPECT_EQ((*m)[0].fields, (std::vector<FieldMismatch>{{"revision", 0, 0xdeadbeef},
                                                        {"attributes", 0, 0x5a5a5a5a}}));
  const std::string text = DescribeMismatches(*m);
  EXPECT_EQ(text,
            "PV time mismatch: vCPU 1 record at 0x90a0040: revision in memory 0xdeadbeef, served "
            "0x0; attributes in memory 0x5a5a5a5a, served 0x0; the restored record is kept as it "
            "is (KVM counts on from guest memory)\n");
}

TEST(PvtimeRestore, ReportsAStolenTimeThatDiffersFromTheSavedOne) {
  state::SavedState s = StateWith(1);
  auto region = RegionFor(s);
  s.vcpus[0].pvtime.stolen_ns = 7;  // an edited file: the region says 1000
  auto m = CompareRestored(s, region, kBase);
  ASSERT_TRUE(m.has_value());
  ASSERT_EQ(m->size(), 1u);
  EXPECT_EQ((*m)[0].fields, (std::vector<FieldMismatch>{{"stolen_time", 7, 1000}}));
  EXPECT_NE(DescribeMismatches(*m).find("stolen_time in memory 1000 ns, saved 7 ns"),
            std::string::npos);
  // Comparing changes nothing: the region keeps what the guest and KVM left.
  EXPECT_EQ(ReadRecord(RecordOf(region, 0)).value().stolen_ns, 1000u);
}

TEST(PvtimeRestore, OneLinePerVcpuInVcpuOrder) {
  const state::SavedState s = StateWith(3);
  auto region = RegionFor(s);
  ASSERT_TRUE(WriteRecord(RecordOf(region, 0), Record{1, 0, 1000}));
  ASSERT_TRUE(WriteRecord(RecordOf(region, 2), Record{0, 0, 1}));
  auto m = CompareRestored(s, region, kBase);
  ASSERT_TRUE(m.has_value());
  ASSERT_EQ(m->size(), 2u);
  EXPECT_EQ((*m)[0].vcpu, 0u);
  EXPECT_EQ((*m)[1].vcpu, 2u);
  const std::string text = DescribeMismatches(*m);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
  EXPECT_LT(text.find("vCPU 0"), text.find("vCPU 2"));
}

TEST(PvtimeRestore, RefusesASavedRecordOutsideTheRegion) {
  state::SavedState s = StateWith(2);
  const auto region = RegionFor(s);
  s.vcpus[1].pvtime.ipa = 0x40000000;  // in guest RAM, not in the region
  auto m = CompareRestored(s, region, kBase);
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code, ErrorCode::kOutOfRange);
  EXPECT_NE(m.error().context.find("vCPU 1"), std::string::npos) << m.error().context;
  EXPECT_NE(m.error().context.find("not inside"), std::string::npos) << m.error().context;
}

TEST(PvtimeRestore, SkipsVcpusWithoutPvTime) {
  state::SavedState s = StateWith(2);
  s.vcpus[0].pvtime = state::PvTimeState{};
  std::vector<std::uint8_t> region(0x10000, 0xee);  // junk everywhere
  ASSERT_TRUE(WriteRecord(RecordOf(region, 1), Record{0, 0, 2000}));
  auto m = CompareRestored(s, region, kBase);
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->empty());
}

}  // namespace
}  // namespace vtime::pvtime
