// The vGICv3 state's snapshot encoding, as a hostile file or migration peer
// would feed it: a pinned encoding that snapshots already written rely on,
// round trips up to the largest state KVM can have, and refusals (one line,
// with context, never a crash or an allocation the input cannot back) for
// every truncation, corrupted byte, unknown version, oversized count and
// trailing byte.
#include "vtime/backend/vgic_codec.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/vgic_state_diff.h"

// An allocation beyond this in the ASan build is an error that ends the
// program: a count the decoder did not check against the input's size
// would size one (a 4 GiB count of 16-byte entries is 64 GiB).
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
extern "C" const char* __asan_default_options() { return "max_allocation_size_mb=64"; }
#endif
#endif

namespace vtime::kvm {
namespace {

using testing::Diff;
using testing::Find;
using testing::Sample;

// Every register SaveVgicV3 reads for `nr_irqs` interrupts and `vcpus` vCPUs
// with 7 priority bits (4 of each AP0R/AP1R), with arbitrary values.
VgicState Full(std::uint32_t nr_irqs, unsigned vcpus) {
  std::uint64_t seed = 0x9e3779b97f4a7c15ULL * (nr_irqs + vcpus);
  auto next = [&seed] {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return seed >> 11;
  };
  VgicState s;
  s.nr_irqs = nr_irqs;
  s.dist.emplace_back(0x0000, next());  // GICD_CTLR
  s.dist.emplace_back(0x0008, next());  // GICD_IIDR
  // IGROUPR, ISENABLER, ISPENDR, ISACTIVER, IPRIORITYR, ICFGR, IROUTER from the first SPI.
  for (const auto& [base, bits] :
       {std::pair{0x0080U, 1U}, std::pair{0x0100U, 1U}, std::pair{0x0200U, 1U},
        std::pair{0x0300U, 1U}, std::pair{0x0400U, 8U}, std::pair{0x0C00U, 2U},
        std::pair{0x6000U, 64U}}) {
    for (std::uint32_t off = base + 32 * bits / 8; off < base + nr_irqs * bits / 8; off += 4) {
      s.dist.emplace_back(off, static_cast<std::uint32_t>(next()));
    }
  }
  for (unsigned i = 0; i < vcpus; ++i) {
    const std::uint64_t mpidr = (i / 16) << 8 | (i % 16);  // Aff1.Aff0, as KVM numbers vCPUs
    for (std::uint32_t off :
         {0x0000U, 0x10080U, 0x10100U, 0x10200U, 0x10300U, 0x10C00U, 0x10C04U}) {
      s.redist.emplace_back(vgic::VcpuAttr(mpidr, off), static_cast<std::uint32_t>(next()));
    }
    for (std::uint32_t off = 0x10400; off < 0x10420; off += 4) {
      s.redist.emplace_back(vgic::VcpuAttr(mpidr, off), static_cast<std::uint32_t>(next()));
    }
    for (std::uint64_t id : {vgic::kIccSre, vgic::kIccCtlr, vgic::kIccPmr, vgic::kIccBpr0,
                             vgic::kIccBpr1, vgic::kIccIgrpen0, vgic::kIccIgrpen1}) {
      s.cpu_sysregs.emplace_back(vgic::VcpuAttr(mpidr, id), next());
    }
    for (std::uint64_t n = 0; n < 4; ++n) {
      s.cpu_sysregs.emplace_back(vgic::VcpuAttr(mpidr, vgic::kIccAp0r0 + n), next());
      s.cpu_sysregs.emplace_back(vgic::VcpuAttr(mpidr, vgic::kIccAp1r0 + n), next());
    }
  }
  for (std::uint32_t intid = 32; intid < nr_irqs; intid += 32) {
    s.line_levels.emplace_back(intid, static_cast<std::uint32_t>(next()));
  }
  std::sort(s.dist.begin(), s.dist.end());
  std::sort(s.redist.begin(), s.redist.end());
  std::sort(s.cpu_sysregs.begin(), s.cpu_sysregs.end());
  return s;
}

// The CRC-32 trailer made to match the bytes before it, so that a test's
// edit reaches the checks behind the checksum.
std::vector<std::uint8_t> Resealed(std::vector<std::uint8_t> bytes) {
  const std::size_t body = bytes.size() - 4;
  const auto crc = static_cast<std::uint32_t>(crc32_z(0, bytes.data(), body));
  for (std::size_t i = 0; i < 4; ++i) bytes[body + i] = static_cast<std::uint8_t>(crc >> (8 * i));
  return bytes;
}

void PutU32(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint32_t v) {
  for (std::size_t i = 0; i < 4; ++i) bytes[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// A refusal as a peer should get it: the code, one line naming the format.
void ExpectRefusal(const Result<VgicState>& r, ErrorCode code, const std::string& what,
                   const std::string& needle = "") {
  ASSERT_FALSE(r.has_value()) << what << ": accepted";
  EXPECT_EQ(r.error().code, code) << what << ": " << r.error().Message();
  EXPECT_EQ(r.error().sys_errno, 0) << what;
  EXPECT_EQ(r.error().context.rfind("vGIC state: ", 0), 0U) << what << ": " << r.error().context;
  EXPECT_EQ(r.error().context.find('\n'), std::string::npos) << what;
  if (!needle.empty()) {
    EXPECT_NE(r.error().context.find(needle), std::string::npos)
        << what << ": " << r.error().context;
  }
}

std::string ToHex(const std::vector<std::uint8_t>& bytes) {
  std::string out;
  char buf[3];
  for (std::uint8_t b : bytes) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    out += buf;
  }
  return out;
}

// Snapshots already written hold this encoding: it must keep decoding, and
// the encoder must keep writing it.
TEST(VgicCodec, EncodingIsPinned) {
  const std::string golden =
      "5654564749433300"                  // magic "VTVGIC3\0"
      "0100000040000000"                  // version 1, 64 interrupts
      "07000000"                          // 7 distributor registers: u64 offset, u32 value
      "000000000000000012000000"          // GICD_CTLR
      "08000000000000003b040000"          // GICD_IIDR
      "8400000000000000ffffffff"          // GICD_IGROUPR1
      "040100000000000000010000"          // GICD_ISENABLER1
      "2004000000000000a0a0a0a0"          // GICD_IPRIORITYR8
      "006100000000000001000000"          // GICD_IROUTER32
      "046100000000000000000000"          // GICD_IROUTER32, upper word
      "02000000"                          // 2 redistributor registers
      "000101000000000000000008"          // GICR_ISENABLER0 of vCPU 0
      "000201000100000008000000"          // GICR_ISPENDR0 of vCPU 1
      "02000000"                          // 2 CPU interface registers: u64 values
      "30c2000000000000f000000000000000"  // ICC_PMR_EL1 of vCPU 0
      "64c60000010000000004040000000000"  // ICC_CTLR_EL1 of vCPU 1
      "01000000"                          // 1 line-level block
      "200000000000000000040000"          // SPIs 32..63
      "ee5e0ae6";                         // CRC-32
  EXPECT_EQ(ToHex(EncodeVgicState(Sample())), golden);
}

TEST(VgicCodec, RoundTrips) {
  for (const VgicState& s : {Sample(), VgicState{64, {}, {}, {}, {}}, Full(64, 1), Full(128, 2)}) {
    const auto bytes = EncodeVgicState(s);
    auto back = DecodeVgicState(bytes);
    ASSERT_TRUE(back.has_value()) << back.error().Message();
    EXPECT_TRUE(*back == s) << Diff(s, *back);
    EXPECT_EQ(EncodeVgicState(*back), bytes);
  }
}

// A guest hypervisor's vCPU adds its virtualization interface (ICH_*_EL2):
// it round trips; the read-only ICH_VTR_EL2 is refused.
TEST(VgicCodec, RoundTripsAGuestHypervisorsVirtualizationInterface) {
  VgicState s = Full(64, 1);
  const std::uint64_t mpidr = 0;
  std::vector<std::uint64_t> ich = {vgic::kIchHcr, vgic::kIchVmcr, vgic::kIchAp0r0,
                                    vgic::kIchAp1r0};
  for (std::uint64_t n = 0; n < 8; ++n) ich.push_back(vgic::kIchLr0 + n);
  for (std::uint64_t n = 0; n < 8; ++n) ich.push_back(vgic::kIchLr8 + n);
  std::uint64_t v = 0x5000000000000000ULL;
  for (std::uint64_t id : ich) s.cpu_sysregs.emplace_back(vgic::VcpuAttr(mpidr, id), ++v);
  std::sort(s.cpu_sysregs.begin(), s.cpu_sysregs.end());
  const auto bytes = EncodeVgicState(s);
  auto back = DecodeVgicState(bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_TRUE(*back == s) << Diff(s, *back);
  // ICH_VTR_EL2 is read-only: never in a state.
  VgicState vtr = s;
  vtr.cpu_sysregs.emplace_back(vgic::VcpuAttr(mpidr, vgic::kIchVtr), 1);
  std::sort(vtr.cpu_sysregs.begin(), vtr.cpu_sysregs.end());
  ExpectRefusal(DecodeVgicState(EncodeVgicState(vtr)), ErrorCode::kMalformed, "ICH_VTR_EL2");
}

// The largest state KVM can hold: 1024 interrupts, 512 vCPUs.
TEST(VgicCodec, RoundTripsTheLargestState) {
  const VgicState s = Full(1024, 512);
  const auto bytes = EncodeVgicState(s);
  const std::size_t entries32 = s.dist.size() + s.redist.size() + s.line_levels.size();
  EXPECT_EQ(bytes.size(), 8 + 4 + 4 + 4 * 4 + 12 * entries32 + 16 * s.cpu_sysregs.size() + 4);
  std::printf("1024 interrupts, 512 vCPUs: %zu bytes\n", bytes.size());
  auto back = DecodeVgicState(bytes);
  ASSERT_TRUE(back.has_value()) << back.error().Message();
  EXPECT_TRUE(*back == s) << Diff(s, *back);
  EXPECT_EQ(EncodeVgicState(*back), bytes);
}

TEST(VgicCodec, RefusesEveryTruncation) {
  for (const VgicState& s : {Sample(), Full(128, 2)}) {
    const auto bytes = EncodeVgicState(s);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      ExpectRefusal(
          DecodeVgicState(std::span(bytes).first(n)), ErrorCode::kMalformed,
          "the first " + std::to_string(n) + " of " + std::to_string(bytes.size()) + " bytes");
      if (HasFatalFailure() || HasNonfatalFailure()) return;
    }
  }
  // Cut inside the lists with the checksum resealed: the count check or the
  // entry reads refuse, not the checksum.
  const auto bytes = EncodeVgicState(Sample());
  std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + 40);
  cut.resize(44);
  ExpectRefusal(DecodeVgicState(Resealed(cut)), ErrorCode::kMalformed, "cut in the list",
                "distributor registers");
}

TEST(VgicCodec, RefusesEveryCorruptedByte) {
  const auto bytes = EncodeVgicState(Sample());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (std::uint8_t flip : {std::uint8_t{0x01}, std::uint8_t{0x80}, std::uint8_t{0xff}}) {
      auto garbled = bytes;
      garbled[i] ^= flip;
      auto r = DecodeVgicState(garbled);
      const std::string what = "byte " + std::to_string(i) + " ^ " + std::to_string(flip);
      ASSERT_FALSE(r.has_value()) << what;
      // A flipped version byte can make it a newer version.
      const ErrorCode code = r.error().code == ErrorCode::kUnsupported ? ErrorCode::kUnsupported
                                                                       : ErrorCode::kMalformed;
      ExpectRefusal(r, code, what);
      if (HasFatalFailure() || HasNonfatalFailure()) return;
    }
  }
}

TEST(VgicCodec, RefusesABadChecksum) {
  const auto bytes = EncodeVgicState(Sample());
  for (std::size_t i = bytes.size() - 4; i < bytes.size(); ++i) {
    auto garbled = bytes;
    garbled[i] ^= 0x10;
    ExpectRefusal(DecodeVgicState(garbled), ErrorCode::kMalformed,
                  "checksum byte " + std::to_string(i), "bad checksum");
  }
  // A body changed without resealing: the values are not checked by shape,
  // only the checksum can tell.
  auto changed = bytes;
  changed[28] ^= 1;  // GICD_CTLR's value
  ExpectRefusal(DecodeVgicState(changed), ErrorCode::kMalformed, "changed value", "bad checksum");
  EXPECT_TRUE(DecodeVgicState(Resealed(changed)).has_value());
}

TEST(VgicCodec, RefusesUnknownVersions) {
  const auto bytes = EncodeVgicState(Sample());
  for (std::uint32_t v : {0U, 2U, 0x100U, 0xffffffffU}) {
    auto other = bytes;
    PutU32(other, 8, v);
    // Newer versions are unsupported (another build may read them); 0 never existed.
    ExpectRefusal(DecodeVgicState(Resealed(other)),
                  v > 1 ? ErrorCode::kUnsupported : ErrorCode::kMalformed,
                  "version " + std::to_string(v), "version " + std::to_string(v));
  }
  auto magic = bytes;
  magic[6] = '2';  // "VTVGIC2"
  ExpectRefusal(DecodeVgicState(Resealed(magic)), ErrorCode::kMalformed, "magic", "bad magic");
}

// Counts that would size an allocation the input cannot back: each list's,
// from one past what the bytes left can hold up to 0xffffffff, checksum
// resealed. Refused by the count check (the ASan build also ends on any
// allocation above 64 MiB).
TEST(VgicCodec, RefusesCountsBeyondTheInput) {
  const VgicState empty{64, {}, {}, {}, {}};
  const auto bytes = EncodeVgicState(empty);  // 8 + 4 + 4 + 4 counts + 4 CRC
  ASSERT_EQ(bytes.size(), 36U);
  const char* names[] = {"distributor registers", "redistributor registers",
                         "CPU interface registers", "line levels"};
  for (std::size_t list = 0; list < 4; ++list) {
    const std::size_t at = 16 + 4 * list;
    for (std::uint32_t count : {2U, 0x1000U, 0x7fffffffU, 0xffffffffU}) {
      auto edited = bytes;
      PutU32(edited, at, count);
      ExpectRefusal(DecodeVgicState(Resealed(edited)), ErrorCode::kMalformed,
                    std::string(names[list]) + " count " + std::to_string(count),
                    std::string(names[list]) + " count " + std::to_string(count));
    }
  }
  // A count the bytes left can hold, whose entries then eat the counts
  // after it: the checksum is read as the next count, and refused as one.
  VgicState one = empty;
  one.dist = {{0x0000, 1}};
  auto edited = EncodeVgicState(one);
  PutU32(edited, 16, 2);  // 2 x 12 bytes: the rest is 12 + 3 x 4 + 4
  ExpectRefusal(DecodeVgicState(Resealed(edited)), ErrorCode::kMalformed, "count 2",
                "exceeds the bytes left");

  // nr_irqs sizes nothing, but is checked all the same.
  for (std::uint32_t nr : {0U, 32U, 96U + 1, 1056U, 0xffffffffU}) {
    auto irqs = bytes;
    PutU32(irqs, 12, nr);
    ExpectRefusal(DecodeVgicState(Resealed(irqs)), ErrorCode::kMalformed,
                  "nr_irqs " + std::to_string(nr), std::to_string(nr) + " interrupts");
  }
}

TEST(VgicCodec, RefusesTrailingBytes) {
  const auto bytes = EncodeVgicState(Sample());
  for (std::size_t extra : {1U, 4U, 1000U}) {
    auto longer = bytes;
    longer.resize(bytes.size() + extra, 0);
    ExpectRefusal(DecodeVgicState(longer), ErrorCode::kMalformed,
                  std::to_string(extra) + " trailing bytes",
                  std::to_string(extra) + " bytes after the checksum");
    // A checksum over the whole, trailing bytes included, does not help.
    ExpectRefusal(DecodeVgicState(Resealed(longer)), ErrorCode::kMalformed,
                  std::to_string(extra) + " trailing bytes, resealed");
  }
}

// Well-checksummed encodings of states SaveVgicV3 never makes.
TEST(VgicCodec, RefusesMalformedStates) {
  struct Case {
    const char* what;
    VgicState s;
  };
  std::vector<Case> cases;
  auto with = [](auto edit) {
    VgicState s = Sample();
    edit(s);
    return s;
  };
  cases.push_back({"nr_irqs 0", with([](VgicState& s) { s.nr_irqs = 0; })});
  cases.push_back({"nr_irqs 100", with([](VgicState& s) { s.nr_irqs = 100; })});
  cases.push_back({"nr_irqs 2048", with([](VgicState& s) { s.nr_irqs = 2048; })});
  cases.push_back({"unsorted", with([](VgicState& s) { std::swap(s.dist[0], s.dist[1]); })});
  cases.push_back({"repeated", with([](VgicState& s) { s.redist[1] = s.redist[0]; })});
  cases.push_back({"SGI word of GICD", with([](VgicState& s) { s.dist[2].first = 0x0080; })});
  cases.push_back({"beyond nr_irqs", with([](VgicState& s) { s.dist.push_back({0x6200, 0}); })});
  cases.push_back({"dist attr above 32 bits", with([](VgicState& s) {
                     s.dist.push_back({0x1'0000'0000, 0});
                   })});
  cases.push_back({"unknown redist", with([](VgicState& s) { s.redist[0].first |= 4; })});
  cases.push_back({"unknown sysreg", with([](VgicState& s) {
                     s.cpu_sysregs[0].first = vgic::SysregId(3, 0, 12, 12, 0);  // ICC_IAR1
                   })});
  cases.push_back({"level of SGIs", with([](VgicState& s) { s.line_levels[0].first = 0; })});
  cases.push_back({"level info 1", with([](VgicState& s) { s.line_levels[0].first |= 1 << 10; })});
  cases.push_back({"level beyond nr_irqs", with([](VgicState& s) {
                     s.line_levels.push_back({64, 0});
                   })});
  for (const Case& c : cases) {
    auto r = DecodeVgicState(EncodeVgicState(c.s));
    ExpectRefusal(r, ErrorCode::kMalformed, c.what);
    if (!r) std::printf("%s: %s\n", c.what, r.error().Message().c_str());
  }
}

}  // namespace
}  // namespace vtime::kvm
