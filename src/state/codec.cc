#include "vtime/state/codec.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vtime/arch/timer.h"
#include "vtime/hex.h"
#include "vtime/pvtime/record.h"
#include "vtime/wire.h"

namespace vtime::state {

std::string_view NameOf(OffsetApi api) {
  switch (api) {
    case OffsetApi::kNone:
      return "none";
    case OffsetApi::kVmOffset:
      return "VM offset";
    case OffsetApi::kLegacyCounterWrites:
      return "legacy counter writes";
  }
  return "unknown";
}

namespace {

constexpr wire::Magic kFrameMagic = {kMagic[0], kMagic[1], kMagic[2], kMagic[3],
                                     kMagic[4], kMagic[5], kMagic[6], kMagic[7]};

using Bytes = std::span<const std::uint8_t>;

// The CTL bits a saved timer keeps: the ones a write stores (ENABLE, IMASK).
constexpr std::uint64_t kCtlSaved = arch::ctl::kWritable;

constexpr std::uint32_t kVcpuNested = 1U << 0;
constexpr std::uint32_t kVcpuPvTime = 1U << 1;
constexpr std::uint32_t kVcpuFlags = kVcpuNested | kVcpuPvTime;

constexpr std::uint32_t kMaxOffsetApi = static_cast<std::uint32_t>(OffsetApi::kLegacyCounterWrites);

// ---- little-endian access ------------------------------------------------

// Callers check bounds first: these read `N` bytes at `at` unconditionally.
template <class T>
T Load(Bytes bytes, std::size_t at) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    v = static_cast<T>(v | static_cast<T>(static_cast<T>(bytes[at + i]) << (8 * i)));
  }
  return v;
}

template <class T>
void Store(std::vector<std::uint8_t>& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
}


std::string Dec(std::uint64_t v) { return std::to_string(v); }

// ---- validation ------------------------------------------------------------

tl::unexpected<Error> Malformed(std::string why) {
  return Fail(ErrorCode::kMalformed, "saved state: " + std::move(why));
}

tl::unexpected<Error> Unsupported(std::string why) {
  return Fail(ErrorCode::kUnsupported, "saved state: " + std::move(why));
}

Result<void> CheckFormatVersion(std::uint32_t version) {
  if (version == 0) return Malformed("format version 0 does not exist (versions start at 1)");
  if (version > kFormatVersion) {
    return Unsupported("format version " + Dec(version) + " is newer than this vtime reads (1.." +
                       Dec(kFormatVersion) + "); upgrade vtime on this host");
  }
  return Ok();
}

Result<void> CheckOffsetApi(std::uint32_t api) {
  if (api > kMaxOffsetApi) {
    return Malformed("offset API " + Dec(api) +
                     " is out of range (0 none, 1 VM offset, 2 legacy counter writes)");
  }
  return Ok();
}

std::string VcpuName(std::size_t index) { return "vCPU " + Dec(index); }

Result<void> CheckTimer(std::size_t index, std::string_view timer, const TimerState& t) {
  if ((t.ctl & ~kCtlSaved) != 0) {
    return Malformed(VcpuName(index) + " " + std::string(timer) + " CTL " + Hex(t.ctl) +
                     " has bits other than ENABLE and IMASK (ISTATUS is derived, never saved)");
  }
  return Ok();
}

Result<void> CheckVcpu(std::size_t index, const VcpuTime& v) {
  const struct {
    std::string_view name;
    const TimerState& timer;
  } timers[] = {{"el1_virtual", v.el1_virtual},
                {"el1_physical", v.el1_physical},
                {"el2_virtual", v.el2_virtual},
                {"el2_physical", v.el2_physical}};
  for (const auto& t : timers) {
    if (auto ok = CheckTimer(index, t.name, t.timer); !ok) return ok;
  }
  if (!v.nested) {
    const TimerState zero;
    std::string_view field;
    if (v.el2_virtual != zero) {
      field = "el2_virtual timer";
    } else if (v.el2_physical != zero) {
      field = "el2_physical timer";
    } else if (v.cnthctl_el2 != 0) {
      field = "cnthctl_el2";
    } else if (v.cntvoff_el2 != 0) {
      field = "cntvoff_el2";
    }
    if (!field.empty()) {
      return Malformed(VcpuName(index) + " is not nested but its " + std::string(field) +
                       " is set (EL2 state exists only under nested virtualization)");
    }
  }
  const PvTimeState& pv = v.pvtime;
  if (!pv.enabled) {
    if (pv.ipa != 0 || pv.revision != 0 || pv.stolen_ns != 0) {
      return Malformed(VcpuName(index) +
                       " has PV time disabled but its ipa, revision or stolen_ns is non-zero");
    }
    return Ok();
  }
  if (pv.ipa % pvtime::kRecordAlignment != 0) {
    return Malformed(VcpuName(index) + " PV time record IPA " + Hex(pv.ipa) + " is not " +
                     Dec(pvtime::kRecordAlignment) + "-byte aligned");
  }
  // The revision is not checked: it is the one the source host served, and
  // only a destination knows whether it can serve it too.
  return Ok();
}

// ---- format version 1 ------------------------------------------------------

struct FieldV1 {
  RecordTag tag;
  std::string_view name;
  std::uint32_t size;
};

// The VM-level records, each required exactly once; bit i of a "seen" mask
// stands for kVmFieldsV1[i].
constexpr std::array<FieldV1, 5> kVmFieldsV1 = {{
    {RecordTag::kCounterFrequency, "counter_frequency", 8},
    {RecordTag::kOffsetApi, "offset_api", 4},
    {RecordTag::kVirtualOffset, "virtual_offset", 8},
    {RecordTag::kPhysicalOffset, "physical_offset", 8},
    {RecordTag::kPause, "pause", 16},
}};

std::string FieldName(const FieldV1& f) {
  return std::string(f.name) + " (tag " + Hex(static_cast<std::uint16_t>(f.tag)) + ")";
}

void PutRecordHeader(std::vector<std::uint8_t>& out, RecordTag tag, std::uint32_t size) {
  Store(out, static_cast<std::uint16_t>(tag));
  Store(out, std::uint16_t{0});
  Store(out, size);
}

void PutTimer(std::vector<std::uint8_t>& out, const TimerState& t) {
  Store(out, t.ctl);
  Store(out, t.cval);
}

void EncodePayloadV1(const SavedState& s, std::vector<std::uint8_t>& out) {
  PutRecordHeader(out, RecordTag::kCounterFrequency, 8);
  Store(out, s.counter_frequency_hz);
  PutRecordHeader(out, RecordTag::kOffsetApi, 4);
  Store(out, std::uint32_t{static_cast<std::uint8_t>(s.offset_api)});
  PutRecordHeader(out, RecordTag::kVirtualOffset, 8);
  Store(out, s.virtual_offset);
  PutRecordHeader(out, RecordTag::kPhysicalOffset, 8);
  Store(out, s.physical_offset);
  PutRecordHeader(out, RecordTag::kPause, 16);
  Store(out, s.pause.host_counter);
  Store(out, static_cast<std::uint64_t>(s.pause.wall_clock_ns));
  for (std::size_t i = 0; i < s.vcpus.size(); ++i) {
    const VcpuTime& v = s.vcpus[i];
    PutRecordHeader(out, RecordTag::kVcpu, kVcpuRecordSizeV1);
    Store(out, static_cast<std::uint32_t>(i));
    Store(out, (v.nested ? kVcpuNested : 0U) | (v.pvtime.enabled ? kVcpuPvTime : 0U));
    PutTimer(out, v.el1_virtual);
    PutTimer(out, v.el1_physical);
    PutTimer(out, v.el2_virtual);
    PutTimer(out, v.el2_physical);
    Store(out, v.cntkctl_el1);
    Store(out, v.cnthctl_el2);
    Store(out, v.cntvoff_el2);
    Store(out, v.pvtime.ipa);
    Store(out, v.pvtime.revision);
    Store(out, std::uint32_t{0});
    Store(out, v.pvtime.stolen_ns);
  }
}

// Reads consecutive little-endian fields of one record whose length was
// already checked.
class FieldReader {
 public:
  explicit FieldReader(Bytes value) : value_(value) {}
  template <class T>
  T Next() {
    const T v = Load<T>(value_, at_);
    at_ += sizeof(T);
    return v;
  }
  TimerState NextTimer() {
    TimerState t;
    t.ctl = Next<std::uint64_t>();
    t.cval = Next<std::uint64_t>();
    return t;
  }

 private:
  Bytes value_;
  std::size_t at_ = 0;
};

Result<VcpuTime> DecodeVcpuV1(Bytes value, std::size_t expected_index, std::size_t offset) {
  FieldReader r(value);
  const auto index = r.Next<std::uint32_t>();
  if (index != expected_index) {
    return Malformed("vCPU record at payload offset " + Dec(offset) + " has index " + Dec(index) +
                     ", expected " + Dec(expected_index) + " (indices must be 0..n-1 in order)");
  }
  const auto flags = r.Next<std::uint32_t>();
  if ((flags & ~kVcpuFlags) != 0) {
    return Malformed(VcpuName(index) + " flags " + Hex(flags) +
                     " have undefined bits (only 0x1 nested and 0x2 PV time exist)");
  }
  VcpuTime v;
  v.nested = (flags & kVcpuNested) != 0;
  v.pvtime.enabled = (flags & kVcpuPvTime) != 0;
  v.el1_virtual = r.NextTimer();
  v.el1_physical = r.NextTimer();
  v.el2_virtual = r.NextTimer();
  v.el2_physical = r.NextTimer();
  v.cntkctl_el1 = r.Next<std::uint64_t>();
  v.cnthctl_el2 = r.Next<std::uint64_t>();
  v.cntvoff_el2 = r.Next<std::uint64_t>();
  v.pvtime.ipa = r.Next<std::uint64_t>();
  v.pvtime.revision = r.Next<std::uint32_t>();
  if (const auto reserved = r.Next<std::uint32_t>(); reserved != 0) {
    return Malformed(VcpuName(index) + " reserved word at record offset 108 is " + Hex(reserved) +
                     ", must be 0");
  }
  v.pvtime.stolen_ns = r.Next<std::uint64_t>();
  return v;
}

Result<SavedState> DecodePayloadV1(Bytes payload) {
  SavedState s;
  s.format_version = 1;
  unsigned seen = 0;
  std::size_t pos = 0;
  while (pos < payload.size()) {
    const std::size_t left = payload.size() - pos;
    if (left < kRecordHeaderSize) {
      return Malformed("record header at payload offset " + Dec(pos) + " is truncated (" +
                       Dec(left) + " of 8 bytes)");
    }
    const auto tag = Load<std::uint16_t>(payload, pos);
    const auto reserved = Load<std::uint16_t>(payload, pos + 2);
    const auto size = Load<std::uint32_t>(payload, pos + 4);
    const std::string where = " at payload offset " + Dec(pos);
    if (size > left - kRecordHeaderSize) {
      return Malformed("record tag " + Hex(tag) + where + " has length " + Dec(size) +
                       ", which overruns the payload (" + Dec(left - kRecordHeaderSize) +
                       " bytes left)");
    }
    if (reserved != 0) {
      return Malformed("record tag " + Hex(tag) + where + " has reserved field " + Hex(reserved) +
                       ", must be 0");
    }
    const Bytes value = payload.subspan(pos + kRecordHeaderSize, size);
    if (tag == static_cast<std::uint16_t>(RecordTag::kVcpu)) {
      if (size != kVcpuRecordSizeV1) {
        return Malformed("field vcpu (tag 0x10)" + where + " has length " + Dec(size) +
                         ", format version 1 says " + Dec(kVcpuRecordSizeV1));
      }
      if (s.vcpus.size() == kMaxVcpus) {
        return Malformed("more than " + Dec(kMaxVcpus) + " vCPUs (the most a saved state holds)");
      }
      auto vcpu = DecodeVcpuV1(value, s.vcpus.size(), pos);
      if (!vcpu) return tl::unexpected(std::move(vcpu.error()));
      s.vcpus.push_back(*vcpu);
    } else {
      const auto* field = std::find_if(kVmFieldsV1.begin(), kVmFieldsV1.end(), [&](const auto& f) {
        return static_cast<std::uint16_t>(f.tag) == tag;
      });
      if (field == kVmFieldsV1.end()) {
        return Malformed("unknown field " + Hex(tag) + where + " (format version 1)");
      }
      if (size != field->size) {
        return Malformed("field " + FieldName(*field) + where + " has length " + Dec(size) +
                         ", format version 1 says " + Dec(field->size));
      }
      const unsigned bit = 1U << (field - kVmFieldsV1.begin());
      if ((seen & bit) != 0) return Malformed("duplicate field " + FieldName(*field) + where);
      seen |= bit;
      FieldReader r(value);
      switch (field->tag) {
        case RecordTag::kCounterFrequency:
          s.counter_frequency_hz = r.Next<std::uint64_t>();
          break;
        case RecordTag::kOffsetApi: {
          const auto api = r.Next<std::uint32_t>();
          if (auto ok = CheckOffsetApi(api); !ok) return tl::unexpected(std::move(ok.error()));
          s.offset_api = static_cast<OffsetApi>(api);
          break;
        }
        case RecordTag::kVirtualOffset:
          s.virtual_offset = r.Next<std::uint64_t>();
          break;
        case RecordTag::kPhysicalOffset:
          s.physical_offset = r.Next<std::uint64_t>();
          break;
        case RecordTag::kPause:
          s.pause.host_counter = r.Next<std::uint64_t>();
          s.pause.wall_clock_ns = static_cast<std::int64_t>(r.Next<std::uint64_t>());
          break;
        case RecordTag::kVcpu:
          break;
      }
    }
    pos += kRecordHeaderSize + size;
  }
  for (std::size_t i = 0; i < kVmFieldsV1.size(); ++i) {
    if ((seen & (1U << i)) == 0) {
      return Malformed("missing required field " + FieldName(kVmFieldsV1[i]));
    }
  }
  return s;
}

// ---- the version table -----------------------------------------------------

// One entry per format version, oldest first: decoding an older version
// keeps working as the format grows, and a state can be written in any
// version this vtime knows.
struct VersionCodec {
  std::uint32_t version;
  Result<SavedState> (*decode_payload)(Bytes payload);
  void (*encode_payload)(const SavedState& state, std::vector<std::uint8_t>& out);
};

constexpr std::array<VersionCodec, 1> kCodecs = {{
    {1, &DecodePayloadV1, &EncodePayloadV1},
}};

constexpr bool EveryVersionHasACodec() {
  if (kCodecs.size() != kFormatVersion) return false;
  for (std::size_t i = 0; i < kCodecs.size(); ++i) {
    if (kCodecs[i].version != i + 1) return false;
  }
  return true;
}
static_assert(EveryVersionHasACodec(), "each format version 1..kFormatVersion needs a codec");

const VersionCodec& CodecFor(std::uint32_t version) { return kCodecs[version - 1]; }

}  // namespace

Result<void> Validate(const SavedState& state) {
  if (auto ok = CheckFormatVersion(state.format_version); !ok) return ok;
  if (state.counter_frequency_hz == 0) {
    return Malformed("counter frequency is 0 Hz (a counter that does not count)");
  }
  if (auto ok = CheckOffsetApi(static_cast<std::uint8_t>(state.offset_api)); !ok) return ok;
  if (state.vcpus.size() > kMaxVcpus) {
    return Malformed(Dec(state.vcpus.size()) + " vCPUs, more than the " + Dec(kMaxVcpus) +
                     " a saved state holds");
  }
  for (std::size_t i = 0; i < state.vcpus.size(); ++i) {
    if (auto ok = CheckVcpu(i, state.vcpus[i]); !ok) return ok;
  }
  return Ok();
}

Result<std::vector<std::uint8_t>> Encode(const SavedState& state) {
  if (auto ok = Validate(state); !ok) return tl::unexpected(std::move(ok.error()));
  std::vector<std::uint8_t> payload;
  payload.reserve(5 * (kRecordHeaderSize + 16) +
                  state.vcpus.size() * (kRecordHeaderSize + kVcpuRecordSizeV1));
  CodecFor(state.format_version).encode_payload(state, payload);
  return wire::Frame(kFrameMagic, state.format_version, payload);
}

Result<SavedState> Decode(Bytes bytes) {
  // The frame (magic, version, flags, length, CRC-32) is vtime's common one.
  auto frame = wire::Unframe(bytes, kFrameMagic, kFormatVersion, "saved state");
  if (!frame) return tl::unexpected(std::move(frame.error()));
  auto state = CodecFor(frame->version).decode_payload(frame->payload);
  if (!state) return state;
  state->format_version = frame->version;
  if (auto ok = Validate(*state); !ok) return tl::unexpected(std::move(ok.error()));
  return state;
}

}  // namespace vtime::state
