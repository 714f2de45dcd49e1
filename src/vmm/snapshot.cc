#include "vmm/snapshot.h"

#include <string>

#include "vtime/state/codec.h"
#include "vtime/trace/timeline.h"
#include "vtime/wire.h"

namespace vtime::vmm {
namespace {

constexpr wire::Magic kMagic = {'V', 'T', 'S', 'N', 'A', 'P', '\0', '\0'};
constexpr std::uint32_t kMaxRegisters = 4096;

enum Tag : std::uint32_t {
  kMachine = 1,
  kTime = 2,
  kVcpu = 3,
  kVgic = 4,
  kRam = 5,
  kPvtime = 6,
  kUserGic = 7,
  kRtc = 8,
  kUart = 9,
  kVirtioConsole = 10,
  kTimeline = 11,
  kDebugPrint = 12,
};

tl::unexpected<Error> Bad(const std::string& why) {
  return Fail(ErrorCode::kMalformed, "snapshot: " + why);
}

Result<void> Validate(const MachineSnapshot& s, RamContents ram) {
  if (s.cpus == 0 || s.cpus > layout::kMaxVcpus) {
    return Bad(std::to_string(s.cpus) + " vCPUs (1.." + std::to_string(layout::kMaxVcpus) + ")");
  }
  if (s.vcpus.size() != s.cpus) return Bad("vCPU sections do not match the vCPU count");
  if (s.time.vcpus.size() != s.cpus) return Bad("guest time covers a different number of vCPUs");
  for (const state::VcpuTime& v : s.time.vcpus) {
    if (v.nested != s.time.vcpus[0].nested) {
      return Bad("some vCPUs are nested (at vEL2) and some are not: a VM's vCPUs all are or none");
    }
  }
  if (!s.time.vcpus.empty() && s.time.vcpus[0].nested && s.irqchip != IrqChip::kKernel) {
    return Bad("nested vCPUs with the user irqchip: a guest hypervisor needs the in-kernel GIC");
  }
  if (s.ram_size == 0 || s.ram_size > layout::kMaxRam || s.ram_size % 0x10000 != 0) {
    return Bad("RAM size " + std::to_string(s.ram_size) +
               " is not a multiple of 64 KiB up to 64 GiB");
  }
  if (ram == RamContents::kIncluded && s.ram.size() != s.ram_size) {
    return Bad("RAM contents do not match the RAM size");
  }
  if (ram == RamContents::kSentSeparately && !s.ram.empty()) {
    return Bad("RAM contents in a snapshot whose RAM is sent separately");
  }
  if (s.pvtime != (s.pvtime_region.size() == layout::kPvtimeSize) ||
      (!s.pvtime && !s.pvtime_region.empty())) {
    return Bad("PV-time region does not match the PV-time setting");
  }
  if (s.pvtime && s.pvtime_base % layout::kPvtimeSize != 0)
    return Bad("PV-time base is not 64 KiB aligned");
  for (std::uint32_t ppi : {s.vtimer_ppi, s.ptimer_ppi}) {
    if (ppi < 16 || ppi > 31)
      return Bad("timer interrupt " + std::to_string(ppi) + " is not a PPI");
  }
  if (s.vtimer_ppi == s.ptimer_ppi) return Bad("both timers on one PPI");
  if ((s.irqchip == IrqChip::kKernel) == s.vgic.empty()) {
    return Bad("vGIC state present without the in-kernel irqchip, or missing with it");
  }
  if ((s.irqchip == IrqChip::kUser) == s.user_gic.empty()) {
    return Bad("user GIC state present without the user irqchip, or missing with it");
  }
  for (const VcpuSnapshot& v : s.vcpus) {
    if (v.registers.size() > kMaxRegisters) return Bad("too many registers");
    for (const RegisterValue& r : v.registers) {
      if (r.bytes.size() != RegisterSize(r.id)) return Bad("register size does not match its id");
    }
  }
  if (!s.timeline.empty()) {
    auto timeline = trace::Timeline::Decode(s.timeline);
    if (!timeline) return Bad(timeline.error().context);
    if (timeline->vcpus != s.cpus) return Bad("the timeline is of a guest with other vCPUs");
    if (timeline->events.back().kind != trace::EventKind::kPause) {
      return Bad("the timeline does not end with the snapshot's pause");
    }
  }
  return state::Validate(s.time);
}

void Section(wire::Writer& w, std::uint32_t tag, std::span<const std::uint8_t> body) {
  w.U32(tag);
  w.U32(0);
  w.Blob(body);
}

}  // namespace

std::uint64_t MaxRamlessSnapshotBytes(std::uint32_t cpus) {
  // Per vCPU: its section header and registers of at most 2048 bits each,
  // plus 64 KiB of interrupt-controller state; for the VM: 1 MiB for the
  // machine, time and distributor sections, and the PV-time region.
  constexpr std::uint64_t kLargestRegister = 256;
  constexpr std::uint64_t kPerVcpu = 64 + kMaxRegisters * (8 + kLargestRegister) + (64 << 10);
  return (1ULL << 20) + layout::kPvtimeSize + std::uint64_t{cpus} * kPerVcpu;
}

std::size_t RegisterSize(std::uint64_t id) {
  const unsigned field = static_cast<unsigned>((id >> 52) & 0xf);
  return field > 8 ? 0 : std::size_t{1} << field;  // up to 2048-bit (SVE) registers
}

Result<std::vector<std::uint8_t>> EncodeSnapshot(const MachineSnapshot& s, RamContents ram) {
  if (auto ok = Validate(s, ram); !ok) return tl::unexpected(ok.error());
  auto time = state::Encode(s.time);
  if (!time) return tl::unexpected(time.error());
  wire::Writer payload;
  {
    wire::Writer m;
    m.U32(s.cpus);
    m.U64(s.ram_size);
    m.U8(s.irqchip == IrqChip::kKernel ? 0 : 1);
    m.U8(s.pvtime ? 1 : 0);
    m.U64(s.pvtime_base);
    m.U32(s.vtimer_ppi);
    m.U32(s.ptimer_ppi);
    Section(payload, kMachine, m.Take());
  }
  Section(payload, kTime, *time);
  for (std::uint32_t i = 0; i < s.cpus; ++i) {
    wire::Writer v;
    v.U32(i);
    v.U32(s.vcpus[i].mp_state);
    v.U32(static_cast<std::uint32_t>(s.vcpus[i].registers.size()));
    for (const RegisterValue& r : s.vcpus[i].registers) {
      v.U64(r.id);
      v.Bytes(r.bytes);
    }
    Section(payload, kVcpu, v.Take());
  }
  if (!s.vgic.empty()) Section(payload, kVgic, s.vgic);
  if (!s.user_gic.empty()) Section(payload, kUserGic, s.user_gic);
  if (!s.uart.empty()) Section(payload, kUart, s.uart);
  if (!s.virtio_console.empty()) Section(payload, kVirtioConsole, s.virtio_console);
  if (!s.timeline.empty()) Section(payload, kTimeline, s.timeline);
  if (s.debug_print_addr != 0) {
    wire::Writer d;
    d.U64(s.debug_print_addr);
    Section(payload, kDebugPrint, d.Take());
  }
  Section(payload, kRam, s.ram);
  if (s.pvtime) Section(payload, kPvtime, s.pvtime_region);
  if (!s.rtc.IsReset()) {
    wire::Writer rtc;
    rtc.U64(static_cast<std::uint64_t>(s.rtc.offset_s));
    rtc.U32(s.rtc.match);
    rtc.U32(s.rtc.load);
    rtc.U8(s.rtc.imsc ? 1 : 0);
    rtc.U8(s.rtc.ris ? 1 : 0);
    Section(payload, kRtc, rtc.Take());
  }
  return wire::Frame(kMagic, kSnapshotVersion, payload.Take());
}

Result<MachineSnapshot> DecodeSnapshot(std::span<const std::uint8_t> bytes, RamContents contents) {
  auto frame = wire::Unframe(bytes, kMagic, kSnapshotVersion, "snapshot");
  if (!frame) return tl::unexpected(frame.error());
  MachineSnapshot s;
  bool seen[kDebugPrint + 1] = {};
  wire::Reader r(frame->payload, "snapshot");
  while (!r.done()) {
    auto tag = r.U32();
    auto reserved = r.U32();
    if (!tag || !reserved) return Bad("truncated section header");
    auto body = r.Blob();
    if (!body) return tl::unexpected(body.error());
    if (*reserved != 0) return Bad("section reserved field is not 0");
    if (*tag < kMachine || *tag > kDebugPrint)
      return Bad("unknown section " + std::to_string(*tag));
    if (*tag != kVcpu && seen[*tag]) return Bad("duplicate section " + std::to_string(*tag));
    if (*tag != kMachine && !seen[kMachine]) return Bad("the machine section must come first");
    seen[*tag] = true;
    wire::Reader b(*body, "snapshot section " + std::to_string(*tag));
    switch (*tag) {
      case kMachine: {
        auto cpus = b.U32();
        auto ram = b.U64();
        auto chip = b.U8();
        auto pv = b.U8();
        auto base = b.U64();
        auto vppi = b.U32();
        auto pppi = b.U32();
        if (!cpus || !ram || !chip || !pv || !base || !vppi || !pppi || !b.done()) {
          return Bad("machine section has the wrong length");
        }
        if (*chip > 1 || *pv > 1) return Bad("machine section has an impossible value");
        s.cpus = *cpus;
        if (s.cpus == 0 || s.cpus > layout::kMaxVcpus) return Bad("impossible vCPU count");
        s.ram_size = *ram;
        s.irqchip = *chip == 0 ? IrqChip::kKernel : IrqChip::kUser;
        s.pvtime = *pv == 1;
        s.pvtime_base = *base;
        s.vtimer_ppi = *vppi;
        s.ptimer_ppi = *pppi;
        break;
      }
      case kTime: {
        auto time = state::Decode(*body);
        if (!time) return Bad("guest time: " + time.error().context);
        s.time = std::move(*time);
        break;
      }
      case kVcpu: {
        auto index = b.U32();
        auto mp = b.U32();
        auto count = b.U32();
        if (!index || !mp || !count) return Bad("truncated vCPU section");
        if (*index != s.vcpus.size() || *index >= s.cpus) return Bad("vCPU sections out of order");
        if (*count > kMaxRegisters) return Bad("too many registers");
        VcpuSnapshot v;
        v.mp_state = *mp;
        for (std::uint32_t i = 0; i < *count; ++i) {
          auto id = b.U64();
          if (!id) return tl::unexpected(id.error());
          const std::size_t size = RegisterSize(*id);
          if (size == 0) return Bad("register id with an impossible size");
          auto value = b.Bytes(size);
          if (!value) return tl::unexpected(value.error());
          v.registers.push_back(RegisterValue{*id, {value->begin(), value->end()}});
        }
        if (!b.done()) return Bad("vCPU section has trailing bytes");
        s.vcpus.push_back(std::move(v));
        break;
      }
      case kVgic:
        s.vgic.assign(body->begin(), body->end());
        break;
      case kUserGic:
        s.user_gic.assign(body->begin(), body->end());
        break;
      case kUart:
        if (body->empty()) return Bad("empty UART section");
        s.uart.assign(body->begin(), body->end());
        break;
      case kVirtioConsole:
        if (body->empty()) return Bad("empty virtio console section");
        s.virtio_console.assign(body->begin(), body->end());
        break;
      case kTimeline:
        if (body->empty()) return Bad("empty timeline section");
        s.timeline.assign(body->begin(), body->end());
        break;
      case kDebugPrint: {
        auto addr = b.U64();
        if (!addr || !b.done()) return Bad("debug-print section has the wrong length");
        s.debug_print_addr = *addr;
        break;
      }
      case kRam:
        s.ram.assign(body->begin(), body->end());
        break;
      case kPvtime:
        s.pvtime_region.assign(body->begin(), body->end());
        break;
      case kRtc: {
        auto offset = b.U64();
        auto match = b.U32();
        auto load = b.U32();
        auto imsc = b.U8();
        auto ris = b.U8();
        if (!offset || !match || !load || !imsc || !ris || !b.done()) {
          return Bad("RTC section has the wrong length");
        }
        if (*imsc > 1 || *ris > 1) return Bad("RTC section has an impossible value");
        s.rtc =
            Pl031State{static_cast<std::int64_t>(*offset), *match, *load, *imsc == 1, *ris == 1};
        break;
      }
      default:
        break;
    }
  }
  if (!seen[kMachine] || !seen[kTime] || !seen[kRam]) return Bad("a required section is missing");
  if (auto ok = Validate(s, contents); !ok) return tl::unexpected(ok.error());
  return s;
}

}  // namespace vtime::vmm
