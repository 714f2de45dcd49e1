#include "vtime/pvtime/restore.h"

#include <string>

#include "vtime/hex.h"

namespace vtime::pvtime {

Result<void> CheckServable(const state::SavedState& saved, std::span<const std::uint32_t> served) {
  for (std::size_t i = 0; i < saved.vcpus.size(); ++i) {
    const state::PvTimeState& pv = saved.vcpus[i].pvtime;
    if (!pv.enabled) continue;
    if (auto ok = CheckServable(pv.revision, served); !ok) {
      return Fail(ok.error().code, "vCPU " + std::to_string(i) + ": " + ok.error().context);
    }
  }
  return Ok();
}

Result<std::vector<RecordMismatch>> CompareRestored(const state::SavedState& saved,
                                                    std::span<const std::uint8_t> region,
                                                    std::uint64_t region_base) {
  std::vector<RecordMismatch> out;
  for (std::size_t i = 0; i < saved.vcpus.size(); ++i) {
    const state::PvTimeState& pv = saved.vcpus[i].pvtime;
    if (!pv.enabled) continue;
    auto record = RecordAt(region, region_base, pv.ipa);
    if (!record) {
      return Fail(record.error().code, "vCPU " + std::to_string(i) + ": " + record.error().context);
    }
    RecordMismatch m{i, pv.ipa, {}};
    if (record->revision != pv.revision) {
      m.fields.push_back({"revision", pv.revision, record->revision});
    }
    if (record->attributes != kAttributesNone) {
      m.fields.push_back({"attributes", kAttributesNone, record->attributes});
    }
    if (record->stolen_ns != pv.stolen_ns) {
      m.fields.push_back({"stolen_time", pv.stolen_ns, record->stolen_ns});
    }
    if (!m.fields.empty()) out.push_back(std::move(m));
  }
  return out;
}

std::string DescribeMismatches(std::span<const RecordMismatch> mismatches) {
  std::string out;
  for (const RecordMismatch& m : mismatches) {
    out += "PV time mismatch: vCPU " + std::to_string(m.vcpu) + " record at " + Hex(m.ipa) + ":";
    const char* sep = " ";
    for (const FieldMismatch& f : m.fields) {
      // Revision and attributes are what the host served; the count is
      // what the saved state holds.
      const bool ns = f.field == "stolen_time";
      const auto value = [ns](std::uint64_t v) { return ns ? std::to_string(v) + " ns" : Hex(v); };
      out += sep + std::string(f.field) + " in memory " + value(f.region) +
             (ns ? ", saved " : ", served ") + value(f.saved);
      sep = "; ";
    }
    out += "; the restored record is kept as it is (KVM counts on from guest memory)\n";
  }
  return out;
}

}  // namespace vtime::pvtime
