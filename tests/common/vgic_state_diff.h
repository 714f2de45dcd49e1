// Test helpers shared by the vGIC state's unit tests (the codec) and lab
// tests (KVM's save and restore): look up an attribute, list every entry in
// which two states differ, and a small sample state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vtime/backend/vgic_codec.h"

namespace vtime::kvm::testing {

template <class V>
std::optional<V> Find(const std::vector<std::pair<std::uint64_t, V>>& list, std::uint64_t attr) {
  for (const auto& [a, v] : list) {
    if (a == attr) return v;
  }
  return std::nullopt;
}

// Every entry that differs between two lists, one per line (empty if equal).
template <class V>
void DiffList(const char* what, const std::vector<std::pair<std::uint64_t, V>>& x,
              const std::vector<std::pair<std::uint64_t, V>>& y, std::string& out) {
  for (const auto& [attr, value] : x) {
    auto other = Find(y, attr);
    if (other != value) {
      out += std::string(what) + " attr " + std::to_string(attr) + ": " + std::to_string(value) +
             " vs " + (other ? std::to_string(*other) : std::string("absent")) + "\n";
    }
  }
  for (const auto& [attr, value] : y) {
    if (!Find(x, attr))
      out += std::string(what) + " attr " + std::to_string(attr) + " only in second\n";
  }
}

// A small well-shaped state with something in every list, made without KVM.
inline VgicState Sample() {
  VgicState s;
  s.nr_irqs = 64;
  s.dist = {{0x0000, 0x12},       {0x0008, 0x43b}, {0x0084, 0xffffffff}, {0x0104, 0x100},
            {0x0420, 0xa0a0a0a0}, {0x6100, 1},     {0x6104, 0}};
  s.redist = {{0x0000'0000'0001'0100, 1U << 27}, {0x0000'0001'0001'0200, 8}};
  s.cpu_sysregs = {{vgic::VcpuAttr(0, vgic::kIccPmr), 0xf0},
                   {vgic::VcpuAttr(1, vgic::kIccCtlr), 0x40400}};
  s.line_levels = {{32, 0x400}};
  return s;
}

inline std::string Diff(const VgicState& x, const VgicState& y) {
  std::string out;
  if (x.nr_irqs != y.nr_irqs) out += "nr_irqs differ\n";
  DiffList("dist", x.dist, y.dist, out);
  DiffList("redist", x.redist, y.redist, out);
  DiffList("sysreg", x.cpu_sysregs, y.cpu_sysregs, out);
  DiffList("level", x.line_levels, y.line_levels, out);
  return out;
}

}  // namespace vtime::kvm::testing
