// The binary saved-state format: round trips, the exact version 1 bytes, and
// every way a decoder must refuse input. Malformed encodings are built here
// byte by byte from the format description in codec.h, independently of
// src/state/codec.cc, with zlib computing their checksums.
#include "vtime/state/codec.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vtime/arch/timer.h"
#include "vtime/result.h"
#include "vtime/state/saved_state.h"

namespace vtime {

// Failure messages name the error code instead of printing its bytes.
void PrintTo(ErrorCode code, std::ostream* os) { *os << ErrorCodeName(code); }

namespace state {

// Failure messages summarise a state instead of printing its bytes.
void PrintTo(const SavedState& s, std::ostream* os) {
  *os << "SavedState{version " << s.format_version << ", " << s.vcpus.size() << " vCPUs}";
}

namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

// ---- deterministic states --------------------------------------------------

// splitmix64: varied but reproducible values.
class Values {
 public:
  explicit Values(std::uint64_t seed) : x_(seed) {}
  std::uint64_t Next() {
    std::uint64_t z = (x_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t x_;
};

TimerState RandomTimer(Values& r) { return TimerState{r.Next() & arch::ctl::kWritable, r.Next()}; }

SavedState MakeState(std::size_t vcpus, bool nested, bool pvtime, std::uint64_t seed = 1) {
  Values r(seed);
  SavedState s;
  s.counter_frequency_hz = 1 + r.Next() % 1'000'000'000;
  s.offset_api = static_cast<OffsetApi>(r.Next() % 3);
  s.virtual_offset = r.Next();
  s.physical_offset = r.Next();
  s.pause = CapturePair{r.Next(), static_cast<std::int64_t>(r.Next())};
  for (std::size_t i = 0; i < vcpus; ++i) {
    VcpuTime v;
    v.el1_virtual = RandomTimer(r);
    v.el1_physical = RandomTimer(r);
    v.cntkctl_el1 = r.Next() & 0x3ff;
    v.nested = nested && (i % 2 == 0);
    if (v.nested) {
      v.el2_virtual = RandomTimer(r);
      v.el2_physical = RandomTimer(r);
      v.cnthctl_el2 = r.Next() & 0xfff;
      v.cntvoff_el2 = r.Next();
    }
    if (pvtime) {
      v.pvtime = PvTimeState{true, r.Next() & ~std::uint64_t{63}, 0, r.Next()};
    }
    s.vcpus.push_back(v);
  }
  return s;
}

// The state whose version 1 bytes are pinned below: one nested vCPU with PV
// time, one plain vCPU; every field has a distinct, recognisable value.
SavedState GoldenState() {
  SavedState s;
  s.counter_frequency_hz = 62'500'000;  // 0x3b9aca0
  s.offset_api = OffsetApi::kVmOffset;
  s.virtual_offset = 0x1122334455667788;
  s.physical_offset = 0x0102030405060708;
  s.pause = CapturePair{0x00000000deadbeef, -2};
  VcpuTime a;
  a.el1_virtual = {1, 0x1000};
  a.el1_physical = {3, 0x2000};
  a.el2_virtual = {1, 0x3000};
  a.el2_physical = {2, 0x4000};
  a.cntkctl_el1 = 0x3;
  a.nested = true;
  a.cnthctl_el2 = 0x5;
  a.cntvoff_el2 = 0x6000;
  a.pvtime = PvTimeState{true, 0x80000040, 0, 1234};
  VcpuTime b;
  b.el1_virtual = {2, 0xffffffffffffffff};
  s.vcpus = {a, b};
  return s;
}

// The version 1 encoding of GoldenState(), one line per field. Changing it
// means version 1 files no longer decode: add a version instead.
constexpr std::string_view kGoldenV1Hex =
    // header: magic, version 1, flags 0, payload length 0x154 (84 + 2 * 128)
    "5654535441544500"
    "01000000"
    "00000000"
    "5401000000000000"
    // counter_frequency: 62'500'000 = 0x3b9aca0
    "0100000008000000"
    "a0acb90300000000"
    // offset_api: 1
    "0200000004000000"
    "01000000"
    // virtual_offset, physical_offset
    "0300000008000000"
    "8877665544332211"
    "0400000008000000"
    "0807060504030201"
    // pause: host counter, wall clock -2
    "0500000010000000"
    "efbeadde00000000"
    "feffffffffffffff"
    // vCPU 0: nested, PV time
    "1000000078000000"
    "00000000"
    "03000000"
    "0100000000000000"
    "0010000000000000"
    "0300000000000000"
    "0020000000000000"
    "0100000000000000"
    "0030000000000000"
    "0200000000000000"
    "0040000000000000"
    "0300000000000000"
    "0500000000000000"
    "0060000000000000"
    "4000008000000000"
    "00000000"
    "00000000"
    "d204000000000000"
    // vCPU 1: neither
    "1000000078000000"
    "01000000"
    "00000000"
    "0200000000000000"
    "ffffffffffffffff"
    "0000000000000000"
    "0000000000000000"
    "0000000000000000"
    "0000000000000000"
    "0000000000000000"
    "0000000000000000"
    "0000000000000000"
    "0000000000000000"
    "0000000000000000"
    "0000000000000000"
    "00000000"
    "00000000"
    "0000000000000000"
    // CRC-32 of all the bytes above
    "b89bedf8";

std::string ToHex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const std::uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

Bytes FromHex(std::string_view hex) {
  Bytes out;
  auto nibble = [](char c) { return static_cast<std::uint8_t>(c <= '9' ? c - '0' : c - 'a' + 10); };
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
  }
  return out;
}

// ---- an independent builder of encodings -----------------------------------

void Le(Bytes& out, std::uint64_t v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

std::uint32_t ZlibCrc(std::span<const std::uint8_t> bytes) {
  return static_cast<std::uint32_t>(crc32(0, bytes.data(), static_cast<uInt>(bytes.size())));
}

Bytes Record(std::uint16_t tag, const Bytes& value, std::uint16_t reserved = 0) {
  Bytes out;
  Le(out, tag, 2);
  Le(out, reserved, 2);
  Le(out, value.size(), 4);
  out.insert(out.end(), value.begin(), value.end());
  return out;
}

Bytes U64(std::uint64_t v) {
  Bytes out;
  Le(out, v, 8);
  return out;
}

Bytes U32(std::uint32_t v) {
  Bytes out;
  Le(out, v, 4);
  return out;
}

struct Vm {
  Bytes frequency = Record(1, U64(24'000'000));
  Bytes offset_api = Record(2, U32(1));
  Bytes virtual_offset = Record(3, U64(100));
  Bytes physical_offset = Record(4, U64(200));
  Bytes pause = Record(5, [] {
    Bytes b = U64(5000);
    Le(b, 42, 8);
    return b;
  }());
  Bytes All() const {
    Bytes out;
    for (const Bytes* r : {&frequency, &offset_api, &virtual_offset, &physical_offset, &pause}) {
      out.insert(out.end(), r->begin(), r->end());
    }
    return out;
  }
};

// A version 1 vCPU record, field by field in layout order.
struct VcpuRecord {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;
  // el1_virtual ctl, cval; el1_physical; el2_virtual; el2_physical; cntkctl_el1; cnthctl_el2
  std::uint64_t words[10] = {};
  std::uint64_t cntvoff = 0;
  std::uint64_t ipa = 0;
  std::uint32_t revision = 0;
  std::uint32_t reserved = 0;
  std::uint64_t stolen = 0;
  std::uint32_t length_override = 0;  // if non-zero, truncate or pad the value to it

  Bytes Encoded() const {
    Bytes v;
    Le(v, index, 4);
    Le(v, flags, 4);
    for (const std::uint64_t w : words) Le(v, w, 8);
    Le(v, cntvoff, 8);
    Le(v, ipa, 8);
    Le(v, revision, 4);
    Le(v, reserved, 4);
    Le(v, stolen, 8);
    if (length_override != 0) v.resize(length_override);
    return Record(0x10, v);
  }
};

Bytes Frame(const Bytes& payload, std::uint32_t version = 1, std::uint32_t flags = 0,
            std::optional<std::uint64_t> payload_length = std::nullopt) {
  Bytes out = {'V', 'T', 'S', 'T', 'A', 'T', 'E', '\0'};
  Le(out, version, 4);
  Le(out, flags, 4);
  Le(out, payload_length.value_or(payload.size()), 8);
  out.insert(out.end(), payload.begin(), payload.end());
  Le(out, ZlibCrc(out), 4);
  return out;
}

Bytes Concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes MustEncode(const SavedState& s) {
  auto bytes = Encode(s);
  EXPECT_TRUE(bytes.has_value()) << bytes.error().context;
  return bytes.value_or(Bytes{});
}

// Refused with `code`, and a one-line context that contains `reason`.
::testing::AssertionResult Refused(const Result<SavedState>& r, ErrorCode code,
                                   std::string_view reason) {
  if (r) return ::testing::AssertionFailure() << "decoded, expected a refusal: " << reason;
  const Error& e = r.error();
  if (e.code != code) {
    return ::testing::AssertionFailure() << "code " << ErrorCodeName(e.code) << ", expected "
                                         << ErrorCodeName(code) << ": " << e.context;
  }
  if (e.context.find(reason) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "context \"" << e.context << "\" lacks \"" << reason << "\"";
  }
  if (e.context.find('\n') != std::string::npos) {
    return ::testing::AssertionFailure() << "context is not one line: " << e.context;
  }
  return ::testing::AssertionSuccess();
}

// A state refused by Validate must be refused, the same way, by Encode and,
// built into bytes by hand, by Decode.
::testing::AssertionResult RefusedEverywhere(const SavedState& s, const Bytes& encoding,
                                             ErrorCode code, std::string_view reason) {
  const auto v = Validate(s);
  if (v) return ::testing::AssertionFailure() << "Validate accepted it";
  const auto e = Encode(s);
  if (e) return ::testing::AssertionFailure() << "Encode accepted it";
  if (e.error().context != v.error().context || e.error().code != v.error().code) {
    return ::testing::AssertionFailure() << "Encode and Validate disagree";
  }
  Result<SavedState> as_state = tl::unexpected(v.error());
  if (auto r = Refused(as_state, code, reason); !r) return r << " (Validate)";
  return Refused(Decode(encoding), code, reason) << " (Decode)";
}

// ---- round trips -----------------------------------------------------------

class RoundTrip : public ::testing::TestWithParam<SavedState> {};

TEST_P(RoundTrip, DecodeGivesBackTheState) {
  const Bytes bytes = MustEncode(GetParam());
  const auto decoded = Decode(bytes);
  ASSERT_TRUE(decoded) << decoded.error().context;
  EXPECT_EQ(*decoded, GetParam());
}

TEST_P(RoundTrip, EncodingIsIdempotent) {
  const Bytes once = MustEncode(GetParam());
  const auto decoded = Decode(once);
  ASSERT_TRUE(decoded) << decoded.error().context;
  EXPECT_EQ(MustEncode(*decoded), once);
}

TEST_P(RoundTrip, SizeFollowsTheLayout) {
  const Bytes bytes = MustEncode(GetParam());
  EXPECT_EQ(bytes.size(), 24 + 84 + 128 * GetParam().vcpus.size() + 4);
}

SavedState Extremes() {
  SavedState s = MakeState(3, true, true, 7);
  s.counter_frequency_hz = kMax;
  s.virtual_offset = kMax;
  s.physical_offset = 0;
  s.pause = CapturePair{kMax, std::numeric_limits<std::int64_t>::min()};
  s.vcpus[0].el1_virtual = {3, kMax};
  s.vcpus[0].pvtime = PvTimeState{true, kMax & ~std::uint64_t{63}, 0, kMax};
  return s;
}

SavedState MaxVcpus() { return MakeState(kMaxVcpus, true, true, 11); }

INSTANTIATE_TEST_SUITE_P(States, RoundTrip,
                         ::testing::Values(MakeState(0, false, false), MakeState(1, false, false),
                                           MakeState(64, false, false, 2),
                                           MakeState(8, true, false, 3),
                                           MakeState(8, false, true, 4),
                                           MakeState(64, true, true, 5), GoldenState(), Extremes(),
                                           MaxVcpus()));

TEST(Codec, HeaderHoldsMagicVersionFlagsAndPayloadLength) {
  const Bytes bytes = MustEncode(MakeState(2, false, false));
  ASSERT_EQ(bytes.size(), 24u + 84 + 256 + 4);
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 8), std::string("VTSTATE\0", 8));
  EXPECT_EQ(ToHex(std::span(bytes).subspan(8, 16)),
            "01000000"
            "00000000"
            "5401000000000000");
  const std::uint32_t crc = ZlibCrc(std::span(bytes).first(bytes.size() - 4));
  EXPECT_EQ(ToHex(std::span(bytes).last(4)), ToHex(U32(crc)));
}

TEST(Codec, HandBuiltEncodingDecodesToTheExpectedState) {
  VcpuRecord v0;
  v0.flags = 3;
  for (std::size_t i = 0; i < 10; ++i) v0.words[i] = (i % 2 == 0) ? (i / 2) % 4 : 0x100 * i;
  v0.cntvoff = 77;
  v0.ipa = 0x40;
  v0.stolen = 9;
  VcpuRecord v1;
  v1.index = 1;
  // VM-level records in an unusual order are accepted.
  const Vm vm;
  const auto decoded =
      Decode(Frame(Concat({vm.pause, vm.physical_offset, vm.frequency, v0.Encoded(),
                           vm.virtual_offset, vm.offset_api, v1.Encoded()})));
  ASSERT_TRUE(decoded) << decoded.error().context;
  EXPECT_EQ(decoded->format_version, 1u);
  EXPECT_EQ(decoded->counter_frequency_hz, 24'000'000u);
  EXPECT_EQ(decoded->offset_api, OffsetApi::kVmOffset);
  EXPECT_EQ(decoded->virtual_offset, 100u);
  EXPECT_EQ(decoded->physical_offset, 200u);
  EXPECT_EQ(decoded->pause, (CapturePair{5000, 42}));
  ASSERT_EQ(decoded->vcpus.size(), 2u);
  const VcpuTime& a = decoded->vcpus[0];
  EXPECT_TRUE(a.nested);
  EXPECT_EQ(a.el1_virtual, (TimerState{0, 0x100}));
  EXPECT_EQ(a.el1_physical, (TimerState{1, 0x300}));
  EXPECT_EQ(a.el2_virtual, (TimerState{2, 0x500}));
  EXPECT_EQ(a.el2_physical, (TimerState{3, 0x700}));
  EXPECT_EQ(a.cntkctl_el1, 0u);
  EXPECT_EQ(a.cnthctl_el2, 0x900u);
  EXPECT_EQ(a.cntvoff_el2, 77u);
  EXPECT_EQ(a.pvtime, (PvTimeState{true, 0x40, 0, 9}));
  EXPECT_EQ(decoded->vcpus[1], VcpuTime{});
}

// ---- the pinned version 1 bytes --------------------------------------------

TEST(CodecGolden, Version1BytesArePinned) {
  EXPECT_EQ(ToHex(MustEncode(GoldenState())), kGoldenV1Hex);
}

TEST(CodecGolden, Version1BytesDecode) {
  const auto decoded = Decode(FromHex(kGoldenV1Hex));
  ASSERT_TRUE(decoded) << decoded.error().context;
  EXPECT_EQ(*decoded, GoldenState());
}

// ---- damaged frames --------------------------------------------------------

TEST(CodecRefuses, TruncationAtEveryByte) {
  const Bytes bytes = MustEncode(MakeState(3, true, true));
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_TRUE(Refused(Decode(std::span(bytes).first(n)), ErrorCode::kMalformed, "truncated"))
        << "at " << n << " of " << bytes.size() << " bytes";
  }
}

TEST(CodecRefuses, TrailingBytes) {
  Bytes bytes = MustEncode(MakeState(1, false, false));
  bytes.push_back(0);
  EXPECT_TRUE(Refused(Decode(bytes), ErrorCode::kMalformed, "does not match the input"));
}

TEST(CodecRefuses, EverySingleBitFlip) {
  const Bytes bytes = MustEncode(MakeState(2, true, true));
  for (std::size_t bit = 0; bit < bytes.size() * 8; ++bit) {
    Bytes flipped = bytes;
    flipped[bit / 8] = static_cast<std::uint8_t>(flipped[bit / 8] ^ (1U << (bit % 8)));
    const auto r = Decode(flipped);
    const std::size_t byte = bit / 8;
    if (byte < 8) {
      EXPECT_TRUE(Refused(r, ErrorCode::kMalformed, "bad magic")) << "bit " << bit;
    } else if (byte >= 16 && byte < 24) {
      EXPECT_FALSE(r) << "bit " << bit;  // payload length: the frame no longer fits
    } else {
      EXPECT_TRUE(Refused(r, ErrorCode::kMalformed, "checksum")) << "bit " << bit;
    }
  }
}

TEST(CodecRefuses, BadMagic) {
  Bytes bytes = MustEncode(MakeState(1, false, false));
  bytes[0] = 'X';
  EXPECT_TRUE(Refused(Decode(bytes), ErrorCode::kMalformed, "bad magic"));
  EXPECT_TRUE(Refused(Decode(Bytes(64, 0)), ErrorCode::kMalformed, "bad magic"));
}

TEST(CodecRefuses, BadChecksum) {
  Bytes bytes = MustEncode(MakeState(1, false, false));
  bytes.back() = static_cast<std::uint8_t>(bytes.back() ^ 0x80);
  EXPECT_TRUE(Refused(Decode(bytes), ErrorCode::kMalformed, "checksum mismatch"));
}

TEST(CodecRefuses, FormatVersionZero) {
  EXPECT_TRUE(Refused(Decode(Frame(Vm().All(), 0)), ErrorCode::kMalformed, "format version 0"));
  SavedState s = MakeState(1, false, false);
  s.format_version = 0;
  const auto e = Encode(s);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, ErrorCode::kMalformed);
  EXPECT_NE(e.error().context.find("format version 0"), std::string::npos) << e.error().context;
}

TEST(CodecRefuses, NewerFormatVersionAsUnsupported) {
  EXPECT_TRUE(Refused(Decode(Frame(Vm().All(), kFormatVersion + 1)), ErrorCode::kUnsupported,
                      "format version 2 is newer"));
  EXPECT_TRUE(Refused(Decode(Frame(Vm().All(), 0xffffffff)), ErrorCode::kUnsupported, "newer"));
  SavedState s = MakeState(1, false, false);
  s.format_version = kFormatVersion + 1;
  const auto e = Encode(s);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, ErrorCode::kUnsupported);
}

TEST(CodecRefuses, HeaderFlags) {
  EXPECT_TRUE(Refused(Decode(Frame(Vm().All(), 1, 0x1)), ErrorCode::kMalformed, "flags 0x1"));
}

TEST(CodecRefuses, PayloadLengthThatDoesNotMatch) {
  const Bytes payload = Vm().All();
  EXPECT_TRUE(Refused(Decode(Frame(payload, 1, 0, payload.size() + 8)), ErrorCode::kMalformed,
                      "payload length"));
  EXPECT_TRUE(Refused(Decode(Frame(payload, 1, 0, payload.size() - 8)), ErrorCode::kMalformed,
                      "payload length"));
  // A length near 2^64 must neither overflow nor allocate.
  EXPECT_TRUE(Refused(Decode(Frame(payload, 1, 0, kMax)), ErrorCode::kMalformed, "truncated"));
  EXPECT_TRUE(Refused(Decode(Frame(payload, 1, 0, kMax - 27)), ErrorCode::kMalformed, "truncated"));
}

// ---- records ---------------------------------------------------------------

TEST(CodecRefuses, UnknownField) {
  const Bytes payload = Concat({Vm().All(), Record(0x42, U64(0))});
  EXPECT_TRUE(Refused(Decode(Frame(payload)), ErrorCode::kMalformed, "unknown field 0x42"));
}

TEST(CodecRefuses, WrongRecordLength) {
  Vm vm;
  vm.frequency = Record(1, U32(24'000'000));
  EXPECT_TRUE(Refused(Decode(Frame(vm.All())), ErrorCode::kMalformed,
                      "counter_frequency (tag 0x1) at payload offset 0 has length 4"));
  VcpuRecord short_vcpu;
  short_vcpu.length_override = 112;
  EXPECT_TRUE(Refused(Decode(Frame(Concat({Vm().All(), short_vcpu.Encoded()}))),
                      ErrorCode::kMalformed, "field vcpu (tag 0x10) at payload offset 84"));
  VcpuRecord long_vcpu;
  long_vcpu.length_override = 128;
  EXPECT_TRUE(Refused(Decode(Frame(Concat({Vm().All(), long_vcpu.Encoded()}))),
                      ErrorCode::kMalformed, "has length 128"));
}

TEST(CodecRefuses, RecordOverrunningThePayloadOrTruncatedRecordHeader) {
  Bytes payload = Concat({Vm().All(), Record(3, U64(1))});
  payload.resize(payload.size() - 1);
  EXPECT_TRUE(Refused(Decode(Frame(payload)), ErrorCode::kMalformed, "overruns the payload"));
  payload = Concat({Vm().All(), Bytes{1, 0, 0}});
  EXPECT_TRUE(Refused(Decode(Frame(payload)), ErrorCode::kMalformed,
                      "record header at payload offset 84 is truncated"));
}

TEST(CodecRefuses, NonZeroReservedRecordField) {
  Vm vm;
  vm.virtual_offset = Record(3, U64(100), 0x8000);
  EXPECT_TRUE(Refused(Decode(Frame(vm.All())), ErrorCode::kMalformed, "reserved field 0x8000"));
  VcpuRecord v;
  v.reserved = 1;
  EXPECT_TRUE(Refused(Decode(Frame(Concat({Vm().All(), v.Encoded()}))), ErrorCode::kMalformed,
                      "vCPU 0 reserved word"));
}

TEST(CodecRefuses, DuplicateField) {
  const Vm vm;
  EXPECT_TRUE(Refused(Decode(Frame(Concat({vm.All(), vm.pause}))), ErrorCode::kMalformed,
                      "duplicate field pause (tag 0x5)"));
}

TEST(CodecRefuses, EachMissingRequiredField) {
  const std::pair<Bytes Vm::*, std::string_view> fields[] = {
      {&Vm::frequency, "counter_frequency"},
      {&Vm::offset_api, "offset_api"},
      {&Vm::virtual_offset, "virtual_offset"},
      {&Vm::physical_offset, "physical_offset"},
      {&Vm::pause, "pause"}};
  for (const auto& [member, name] : fields) {
    Vm vm;
    (vm.*member).clear();
    EXPECT_TRUE(Refused(Decode(Frame(vm.All())), ErrorCode::kMalformed,
                        "missing required field " + std::string(name)));
  }
  EXPECT_TRUE(Refused(Decode(Frame(Bytes{})), ErrorCode::kMalformed, "missing required field"));
}

TEST(CodecRefuses, VcpuIndicesNotInOrder) {
  auto vcpus = [](std::initializer_list<std::uint32_t> indices) {
    Bytes out = Vm().All();
    for (const std::uint32_t i : indices) {
      VcpuRecord v;
      v.index = i;
      const Bytes r = v.Encoded();
      out.insert(out.end(), r.begin(), r.end());
    }
    return Frame(out);
  };
  ASSERT_TRUE(Decode(vcpus({0, 1, 2})));
  EXPECT_TRUE(Refused(Decode(vcpus({1})), ErrorCode::kMalformed, "has index 1, expected 0"));
  EXPECT_TRUE(Refused(Decode(vcpus({0, 2})), ErrorCode::kMalformed, "has index 2, expected 1"));
  EXPECT_TRUE(Refused(Decode(vcpus({0, 1, 1})), ErrorCode::kMalformed, "has index 1, expected 2"));
  EXPECT_TRUE(Refused(Decode(vcpus({1, 0})), ErrorCode::kMalformed, "0..n-1 in order"));
}

TEST(CodecRefuses, TooManyVcpus) {
  Bytes payload = Vm().All();
  for (std::uint32_t i = 0; i <= kMaxVcpus; ++i) {
    VcpuRecord v;
    v.index = i;
    const Bytes r = v.Encoded();
    payload.insert(payload.end(), r.begin(), r.end());
  }
  EXPECT_TRUE(Refused(Decode(Frame(payload)), ErrorCode::kMalformed, "more than 512 vCPUs"));
  const auto e = Encode(MakeState(kMaxVcpus + 1, false, false));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, ErrorCode::kMalformed);
  EXPECT_NE(e.error().context.find("513 vCPUs"), std::string::npos) << e.error().context;
}

TEST(CodecRefuses, UndefinedVcpuFlags) {
  VcpuRecord v;
  v.flags = 4;
  EXPECT_TRUE(Refused(Decode(Frame(Concat({Vm().All(), v.Encoded()}))), ErrorCode::kMalformed,
                      "vCPU 0 flags 0x4 have undefined bits"));
}

// ---- impossible values: Validate, Encode and Decode agree ------------------

TEST(CodecRefuses, ZeroCounterFrequency) {
  SavedState s = MakeState(1, false, false);
  s.counter_frequency_hz = 0;
  Vm vm;
  vm.frequency = Record(1, U64(0));
  EXPECT_TRUE(RefusedEverywhere(s, Frame(vm.All()), ErrorCode::kMalformed, "frequency is 0 Hz"));
}

TEST(CodecRefuses, OffsetApiOutOfRange) {
  SavedState s = MakeState(1, false, false);
  s.offset_api = static_cast<OffsetApi>(3);
  Vm vm;
  vm.offset_api = Record(2, U32(3));
  EXPECT_TRUE(RefusedEverywhere(s, Frame(vm.All()), ErrorCode::kMalformed, "offset API 3"));
  vm.offset_api = Record(2, U32(0x100));  // would wrap to 0 in a u8
  EXPECT_TRUE(Refused(Decode(Frame(vm.All())), ErrorCode::kMalformed, "offset API 256"));
}

TEST(CodecRefuses, TimerCtlWithBitsOtherThanEnableAndImask) {
  const char* const names[] = {"el1_virtual", "el1_physical", "el2_virtual", "el2_physical"};
  for (std::size_t t = 0; t < 4; ++t) {
    SavedState s = MakeState(2, false, false);
    VcpuTime& v = s.vcpus[1];
    v.nested = true;
    TimerState* timers[] = {&v.el1_virtual, &v.el1_physical, &v.el2_virtual, &v.el2_physical};
    timers[t]->ctl = arch::ctl::kIstatus;
    VcpuRecord r0;
    VcpuRecord r1;
    r1.index = 1;
    r1.flags = 1;
    r1.words[2 * t] = 0x4;
    EXPECT_TRUE(RefusedEverywhere(s, Frame(Concat({Vm().All(), r0.Encoded(), r1.Encoded()})),
                                  ErrorCode::kMalformed,
                                  "vCPU 1 " + std::string(names[t]) + " CTL 0x4 has bits other"));
  }
}

TEST(CodecRefuses, NestedStateOnANonNestedVcpu) {
  struct Case {
    std::size_t word;  // index into VcpuRecord::words, or 10 for cntvoff
    std::string_view reason;
  };
  const Case cases[] = {{4, "el2_virtual timer"},  {5, "el2_virtual timer"},
                        {6, "el2_physical timer"}, {7, "el2_physical timer"},
                        {9, "cnthctl_el2"},        {10, "cntvoff_el2"}};
  for (const Case& c : cases) {
    SavedState s = MakeState(1, false, false);
    VcpuTime& v = s.vcpus[0];
    switch (c.word) {
      case 4:
        v.el2_virtual.ctl = 1;
        break;
      case 5:
        v.el2_virtual.cval = 1;
        break;
      case 6:
        v.el2_physical.ctl = 1;
        break;
      case 7:
        v.el2_physical.cval = 1;
        break;
      case 9:
        v.cnthctl_el2 = 1;
        break;
      default:
        v.cntvoff_el2 = 1;
        break;
    }
    VcpuRecord r;
    if (c.word < 10) {
      r.words[c.word] = 1;
    } else {
      r.cntvoff = 1;
    }
    EXPECT_TRUE(RefusedEverywhere(s, Frame(Concat({Vm().All(), r.Encoded()})),
                                  ErrorCode::kMalformed,
                                  "vCPU 0 is not nested but its " + std::string(c.reason)));
  }
}

TEST(CodecRefuses, MisalignedPvTimeIpa) {
  SavedState s = MakeState(1, false, true);
  s.vcpus[0].pvtime.ipa = 0x80000020;
  VcpuRecord r;
  r.flags = 2;
  r.ipa = 0x80000020;
  EXPECT_TRUE(RefusedEverywhere(s, Frame(Concat({Vm().All(), r.Encoded()})), ErrorCode::kMalformed,
                                "IPA 0x80000020 is not 64-byte aligned"));
}

// The revision is the one the source served; whether a destination can serve
// it is decided when it is configured (pvtime::CheckServable), not here.
TEST(Codec, CarriesAnyPvTimeRevision) {
  SavedState s = MakeState(1, false, true);
  s.vcpus[0].pvtime.ipa = 0x1000;
  s.vcpus[0].pvtime.stolen_ns = 0;
  s.vcpus[0].pvtime.revision = 1;
  EXPECT_TRUE(Validate(s).has_value());
  VcpuRecord r;
  r.flags = 2;
  r.ipa = 0x1000;
  r.revision = 1;
  const auto decoded = Decode(Frame(Concat({Vm().All(), r.Encoded()})));
  ASSERT_TRUE(decoded.has_value()) << decoded.error().Message();
  EXPECT_EQ(decoded->vcpus[0].pvtime.revision, 1u);
  const auto encoded = Encode(s);
  ASSERT_TRUE(encoded.has_value());
  const auto again = Decode(*encoded);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, s);
}

TEST(CodecRefuses, PvTimeFieldsWhileDisabled) {
  SavedState s = MakeState(1, false, false);
  s.vcpus[0].pvtime.stolen_ns = 5;
  VcpuRecord r;
  r.stolen = 5;
  EXPECT_TRUE(RefusedEverywhere(s, Frame(Concat({Vm().All(), r.Encoded()})), ErrorCode::kMalformed,
                                "PV time disabled"));
}

TEST(CodecValidate, AcceptsWhatEncodeWrites) {
  for (std::uint64_t seed = 0; seed < 32; ++seed) {
    const SavedState s = MakeState(seed % 9, seed % 2 == 0, seed % 3 == 0, seed);
    EXPECT_TRUE(Validate(s)) << seed;
  }
  EXPECT_FALSE(Validate(SavedState{})) << "a default state has no counter frequency";
}

TEST(CodecNames, OffsetApi) {
  EXPECT_EQ(NameOf(OffsetApi::kNone), "none");
  EXPECT_EQ(NameOf(OffsetApi::kVmOffset), "VM offset");
  EXPECT_EQ(NameOf(OffsetApi::kLegacyCounterWrites), "legacy counter writes");
  EXPECT_EQ(NameOf(static_cast<OffsetApi>(9)), "unknown");
}

}  // namespace
}  // namespace state
}  // namespace vtime
