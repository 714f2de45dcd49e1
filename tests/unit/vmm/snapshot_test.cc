#include "vmm/snapshot.h"

#include <gtest/gtest.h>

#include "vmm/layout.h"
#include "vtime/pvtime/record.h"
#include "vtime/trace/timeline.h"

namespace vtime::vmm {
namespace {

MachineSnapshot Sample(std::uint32_t cpus) {
  MachineSnapshot s;
  s.cpus = cpus;
  s.ram_size = 0x20000;
  s.ram.assign(s.ram_size, 0);
  s.ram[5] = 0x42;
  s.pvtime = true;
  s.pvtime_base = layout::kPvtime;
  s.pvtime_region.assign(layout::kPvtimeSize, 0);
  s.vgic = {1, 2, 3};
  s.time.counter_frequency_hz = 62'500'000;
  s.time.offset_api = state::OffsetApi::kVmOffset;
  s.time.virtual_offset = 1000;
  s.time.physical_offset = 1000;
  s.time.pause = state::CapturePair{5000, 123};
  for (std::uint32_t i = 0; i < cpus; ++i) {
    state::VcpuTime t;
    t.el1_virtual = state::TimerState{1, 4242};
    t.pvtime.enabled = true;
    t.pvtime.ipa = layout::kPvtime + pvtime::RecordOffset(i);
    s.time.vcpus.push_back(t);
    VcpuSnapshot v;
    v.mp_state = i == 0 ? 0 : 5;
    v.registers.push_back(
        RegisterValue{0x6030000000100000ULL + i, std::vector<std::uint8_t>(8, 7)});
    v.registers.push_back(RegisterValue{0x6040000000100054ULL, std::vector<std::uint8_t>(16, 1)});
    s.vcpus.push_back(v);
  }
  return s;
}

TEST(Snapshot, RoundTrips) {
  const MachineSnapshot s = Sample(2);
  auto bytes = EncodeSnapshot(s);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().Message();
  auto back = DecodeSnapshot(*bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(*back, s);
}

TEST(Snapshot, AGuestSetRtcRoundTripsAndAnUntouchedOneAddsNoSection) {
  const auto plain = EncodeSnapshot(Sample(1));
  ASSERT_TRUE(plain.has_value());
  MachineSnapshot s = Sample(1);
  s.rtc = Pl031State{-1'700'000'000, 42, 1000, true, false};
  auto bytes = EncodeSnapshot(s);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().Message();
  // Section 8: header (16 bytes) and 8 + 4 + 4 + 1 + 1 bytes of body.
  EXPECT_EQ(bytes->size(), plain->size() + 16 + 18);
  auto back = DecodeSnapshot(*bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(back->rtc, s.rtc);
  // A file without the section (every file before it) restores the
  // power-on RTC, which reads the host's wall clock.
  auto old = DecodeSnapshot(*plain);
  ASSERT_TRUE(old.has_value());
  EXPECT_TRUE(old->rtc.IsReset());
}

// A revision this host cannot serve is still a well-formed snapshot: the
// destination refuses it when it is configured, naming the revision.
TEST(Snapshot, CarriesAPvTimeRevisionOtherHostsServe) {
  MachineSnapshot s = Sample(2);
  s.time.vcpus[1].pvtime.revision = 1;
  auto bytes = EncodeSnapshot(s);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().Message();
  auto back = DecodeSnapshot(*bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(back->time.vcpus[1].pvtime.revision, 1u);
}

TEST(Snapshot, RefusesMoreVcpusThanAMachineHas) {
  MachineSnapshot s = Sample(1);
  s.cpus = layout::kMaxVcpus + 1;
  auto bytes = EncodeSnapshot(s);
  ASSERT_FALSE(bytes.has_value());
  EXPECT_NE(bytes.error().context.find("(1.." + std::to_string(layout::kMaxVcpus) + ")"),
            std::string::npos)
      << bytes.error().context;
}

TEST(Snapshot, RamSentSeparatelyLeavesAnEmptyRamSectionAndOnlyThatDecodesIt) {
  MachineSnapshot s = Sample(1);
  // RAM in a snapshot that says it is sent separately is refused.
  EXPECT_FALSE(EncodeSnapshot(s, RamContents::kSentSeparately).has_value());
  const std::vector<std::uint8_t> ram = std::move(s.ram);
  s.ram.clear();
  auto bytes = EncodeSnapshot(s, RamContents::kSentSeparately);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().Message();
  auto full = EncodeSnapshot(Sample(1));
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(bytes->size() + ram.size(), full->size());
  auto back = DecodeSnapshot(*bytes, RamContents::kSentSeparately);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(back->ram_size, ram.size());
  EXPECT_TRUE(back->ram.empty());
  back->ram = ram;
  EXPECT_EQ(*back, Sample(1));
  // A file reader (RAM included) refuses it: a snapshot file is whole.
  auto as_file = DecodeSnapshot(*bytes);
  ASSERT_FALSE(as_file.has_value());
  EXPECT_NE(as_file.error().context.find("RAM contents do not match"), std::string::npos);
  // And a whole snapshot is not taken for a RAM-less one.
  EXPECT_FALSE(DecodeSnapshot(*full, RamContents::kSentSeparately).has_value());
}

TEST(Snapshot, UserIrqchipCarriesItsGicStateInstead) {
  MachineSnapshot s = Sample(1);
  s.irqchip = IrqChip::kUser;
  EXPECT_FALSE(EncodeSnapshot(s).has_value());  // a vGIC with the user irqchip
  s.vgic.clear();
  auto missing = EncodeSnapshot(s);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().context.find("user GIC state"), std::string::npos);
  s.user_gic = {1, 2, 3, 4, 5};
  auto bytes = EncodeSnapshot(s);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().Message();
  auto back = DecodeSnapshot(*bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(*back, s);
  MachineSnapshot k = Sample(1);
  k.user_gic = {1};
  EXPECT_FALSE(EncodeSnapshot(k).has_value());  // user GIC state with the kernel's
}

TEST(Snapshot, CarriesTheUartWhenThereIsOneAndOlderFilesHaveNone) {
  MachineSnapshot s = Sample(1);
  s.uart = {1, 0, 0, 0, 0};
  auto bytes = EncodeSnapshot(s);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().Message();
  auto back = DecodeSnapshot(*bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(back->uart, s.uart);
  s.uart.clear();  // as files from before section 9
  auto old = EncodeSnapshot(s);
  ASSERT_TRUE(old.has_value());
  auto old_back = DecodeSnapshot(*old);
  ASSERT_TRUE(old_back.has_value());
  EXPECT_TRUE(old_back->uart.empty());
  EXPECT_LT(old->size(), bytes->size());
}

TEST(Snapshot, CarriesTheVirtioConsoleOnlyWhenTheMachineHasOne) {
  MachineSnapshot s = Sample(1);
  s.virtio_console = {1, 2, 3};
  auto bytes = EncodeSnapshot(s);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().Message();
  auto back = DecodeSnapshot(*bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(back->virtio_console, s.virtio_console);
  s.virtio_console.clear();
  auto none = DecodeSnapshot(*EncodeSnapshot(s));
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->virtio_console.empty());
}

// A guest started on one host and paused there at the snapshot's capture.
trace::Timeline PausedTimeline(std::uint32_t vcpus) {
  trace::Timeline t;
  t.vcpus = vcpus;
  t.hosts.push_back(trace::Host{"a", 62'500'000});
  t.events.push_back(trace::Event{.kind = trace::EventKind::kStart,
                                  .host_count = 1000,
                                  .virtual_offset = 1000,
                                  .physical_offset = 1000});
  t.events.push_back(trace::Event{.kind = trace::EventKind::kPause, .host_count = 5000});
  return t;
}

TEST(Snapshot, CarriesTheTimelineOnlyWhenOneIsRecorded) {
  MachineSnapshot s = Sample(2);
  const auto without = EncodeSnapshot(s);
  ASSERT_TRUE(without.has_value());
  s.timeline = PausedTimeline(2).Encode();
  auto bytes = EncodeSnapshot(s);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().Message();
  EXPECT_EQ(bytes->size(), without->size() + 16 + s.timeline.size());
  auto back = DecodeSnapshot(*bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(back->timeline, s.timeline);
  auto none = DecodeSnapshot(*without);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->timeline.empty());
}

// A guest stopped between its bulk print's ADDR and LEN writes prints that
// buffer on the restored side: the ADDR register moves with the snapshot
// (section 12), and a machine that never set it adds nothing.
TEST(Snapshot, CarriesTheBulkPrintAddressWhenOneIsSet) {
  MachineSnapshot s = Sample(1);
  const auto without = EncodeSnapshot(s);
  ASSERT_TRUE(without.has_value());
  s.debug_print_addr = 0x40123450;
  auto bytes = EncodeSnapshot(s);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().Message();
  EXPECT_EQ(bytes->size(), without->size() + 16 + 8);
  auto back = DecodeSnapshot(*bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(back->debug_print_addr, 0x40123450U);
  auto none = DecodeSnapshot(*without);
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->debug_print_addr, 0U);
}

TEST(Snapshot, RefusesATimelineOfAnotherGuestOrOneStillRunning) {
  MachineSnapshot s = Sample(2);
  s.timeline = PausedTimeline(3).Encode();
  auto other = EncodeSnapshot(s);
  ASSERT_FALSE(other.has_value());
  EXPECT_NE(other.error().context.find("other vCPUs"), std::string::npos);
  trace::Timeline running = PausedTimeline(2);
  running.events.pop_back();
  s.timeline = running.Encode();
  auto open = EncodeSnapshot(s);
  ASSERT_FALSE(open.has_value());
  EXPECT_NE(open.error().context.find("does not end with"), std::string::npos);
  s.timeline = PausedTimeline(2).Encode();
  s.timeline[s.timeline.size() / 2] ^= 0x40;  // its own checksum catches it
  EXPECT_FALSE(EncodeSnapshot(s).has_value());
}

TEST(Snapshot, RegisterSizeFollowsTheIdSizeField) {
  EXPECT_EQ(RegisterSize(0x6030000000100000ULL), 8U);
  EXPECT_EQ(RegisterSize(0x6040000000100054ULL), 16U);
  EXPECT_EQ(RegisterSize(0x6020000000110000ULL), 4U);
  EXPECT_EQ(RegisterSize(0x60f0000000000000ULL), 0U);  // no such size
}

TEST(Snapshot, RefusesInconsistentStatesOnEncode) {
  MachineSnapshot s = Sample(1);
  s.ram.pop_back();
  auto r = EncodeSnapshot(s);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().context.find("RAM"), std::string::npos);
  s = Sample(1);
  s.vcpus[0].registers[0].bytes.resize(4);
  EXPECT_FALSE(EncodeSnapshot(s).has_value());
  s = Sample(1);
  s.vgic.clear();
  EXPECT_FALSE(EncodeSnapshot(s).has_value());
  s = Sample(2);
  s.time.vcpus.pop_back();
  EXPECT_FALSE(EncodeSnapshot(s).has_value());
}

TEST(Snapshot, CarriesAGuestHypervisorsEl2TimeAndRefusesMixedOrUserGicNesting) {
  MachineSnapshot s = Sample(2);
  for (state::VcpuTime& t : s.time.vcpus) {
    t.nested = true;
    t.cntvoff_el2 = 0x123456789;
    t.cnthctl_el2 = 0xc03;
    t.el2_physical = state::TimerState{1, 777};
    t.el2_virtual = state::TimerState{3, 888};
  }
  auto bytes = EncodeSnapshot(s);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().Message();
  auto back = DecodeSnapshot(*bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_EQ(back->time.vcpus[1].cntvoff_el2, 0x123456789U);
  EXPECT_EQ(back->time.vcpus[1].el2_virtual, (state::TimerState{3, 888}));
  EXPECT_EQ(*back, s);

  MachineSnapshot mixed = s;
  mixed.time.vcpus[1] = Sample(2).time.vcpus[1];
  auto r = EncodeSnapshot(mixed);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().context.find("some vCPUs are nested"), std::string::npos);

  MachineSnapshot user = s;
  user.irqchip = IrqChip::kUser;
  user.vgic.clear();
  user.user_gic = {1};
  r = EncodeSnapshot(user);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().context.find("in-kernel GIC"), std::string::npos);
}

TEST(Snapshot, RefusesEveryTruncation) {
  MachineSnapshot s = Sample(1);
  s.ram_size = 0x10000;
  s.ram.assign(s.ram_size, 0);
  auto bytes = EncodeSnapshot(s);
  ASSERT_TRUE(bytes.has_value());
  for (std::size_t n = 0; n < bytes->size(); n += 97) {
    EXPECT_FALSE(DecodeSnapshot(std::span(*bytes).first(n)).has_value()) << n;
  }
}

TEST(Snapshot, RefusesACorruptedByteAnywhere) {
  auto bytes = EncodeSnapshot(Sample(1));
  ASSERT_TRUE(bytes.has_value());
  for (std::size_t i = 0; i < bytes->size(); i += 131) {
    auto bad = *bytes;
    bad[i] ^= 0x10;
    auto r = DecodeSnapshot(bad);
    EXPECT_FALSE(r.has_value()) << i;
  }
}

}  // namespace
}  // namespace vtime::vmm
