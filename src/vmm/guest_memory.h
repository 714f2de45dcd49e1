// Guest memory for vtvmm: anonymous mappings that cost nothing until the
// guest (or a migration's pages) touch them.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "vtime/result.h"

namespace vtime::vmm {

/// Guest RAM: an anonymous mapping, reserved but not touched until written
/// (a migration destination receives pages straight into it).
class GuestMemory {
 public:
  static Result<GuestMemory> Create(std::uint64_t size, const std::string& what);
  GuestMemory(GuestMemory&& o) noexcept;
  GuestMemory& operator=(GuestMemory&&) = delete;
  ~GuestMemory();
  [[nodiscard]] std::uint8_t* data() const { return static_cast<std::uint8_t*>(p_); }
  [[nodiscard]] std::uint64_t size() const { return size_; }
  [[nodiscard]] std::span<const std::uint8_t> bytes() const { return {data(), size_}; }
  [[nodiscard]] std::span<std::uint8_t> writable() const { return {data(), size_}; }

 private:
  GuestMemory(void* p, std::uint64_t size) : p_(p), size_(size) {}
  void* p_;
  std::uint64_t size_;
};

}  // namespace vtime::vmm
