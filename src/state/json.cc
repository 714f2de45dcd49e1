#include "vtime/state/json.h"

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "vtime/arch/timer.h"
#include "vtime/hex.h"

namespace vtime::state {
namespace {

using Json = nlohmann::ordered_json;

Json TimerJson(const TimerState& t) {
  Json j;
  j["ctl"] = t.ctl;
  j["ctl_bits"] = {{"enable", (t.ctl & arch::ctl::kEnable) != 0},
                   {"imask", (t.ctl & arch::ctl::kImask) != 0}};
  j["cval"] = t.cval;
  j["cval_hex"] = Hex(t.cval);
  return j;
}

Json VcpuJson(std::size_t index, const VcpuTime& v) {
  Json j;
  j["index"] = index;
  j["nested"] = v.nested;
  j["el1_virtual"] = TimerJson(v.el1_virtual);
  j["el1_physical"] = TimerJson(v.el1_physical);
  j["el2_virtual"] = TimerJson(v.el2_virtual);
  j["el2_physical"] = TimerJson(v.el2_physical);
  j["cntkctl_el1"] = v.cntkctl_el1;
  j["cnthctl_el2"] = v.cnthctl_el2;
  j["cntvoff_el2"] = v.cntvoff_el2;
  j["cntvoff_el2_hex"] = Hex(v.cntvoff_el2);
  Json pv;
  pv["enabled"] = v.pvtime.enabled;
  pv["revision"] = v.pvtime.revision;
  pv["ipa"] = v.pvtime.ipa;
  pv["ipa_hex"] = Hex(v.pvtime.ipa);
  pv["stolen_ns"] = v.pvtime.stolen_ns;
  j["pvtime"] = std::move(pv);
  return j;
}

}  // namespace

std::string ToJson(const SavedState& state) {
  Json j;
  j["format_version"] = state.format_version;
  j["counter_frequency_hz"] = state.counter_frequency_hz;
  j["offset_api"] = static_cast<std::uint8_t>(state.offset_api);
  j["offset_api_name"] = NameOf(state.offset_api);
  j["virtual_offset"] = state.virtual_offset;
  j["virtual_offset_hex"] = Hex(state.virtual_offset);
  j["physical_offset"] = state.physical_offset;
  j["physical_offset_hex"] = Hex(state.physical_offset);
  j["pause"] = {{"host_counter", state.pause.host_counter},
                {"host_counter_hex", Hex(state.pause.host_counter)},
                {"wall_clock_ns", state.pause.wall_clock_ns}};
  j["derived"] = {{"virtual_count_at_pause", state.VirtualCountAtPause()},
                  {"physical_count_at_pause", state.PhysicalCountAtPause()},
                  {"note", "computed from pause.host_counter and the offsets; not stored"}};
  Json vcpus = Json::array();
  for (std::size_t i = 0; i < state.vcpus.size(); ++i) vcpus.push_back(VcpuJson(i, state.vcpus[i]));
  j["vcpus"] = std::move(vcpus);
  return j.dump(2) + "\n";
}

}  // namespace vtime::state
