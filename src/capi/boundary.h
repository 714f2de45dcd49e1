// What every C API function shares: the handle objects behind the opaque
// pointers, the type-tag check that refuses a NULL or foreign handle, the
// thread-local error message, and the guard that keeps C++ exceptions from
// crossing into C.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <new>
#include <string_view>

#include "vtime/arch/emulate.h"
#include "vtime/arch/vm_clock.h"
#include "vtime/result.h"
#include "vtime/state/policy.h"
#include "vtime/state/saved_state.h"
#include "vtime/units.h"
#include "vtime/vtime.h"

// The objects behind the C handles. Each starts with a tag that names its
// kind, so a handle of the wrong kind (or a stray pointer to memory that is
// not a handle) is refused instead of being used as the wrong type; destroy
// clears it.
struct vtime_clock {
  std::uint64_t tag;
  vtime::arch::VmClock model;
  vtime::FrequencyHz cntfrq;
};

struct vtime_vcpu {
  std::uint64_t tag;
  vtime::arch::VcpuTimerState model;
};

struct vtime_state {
  std::uint64_t tag;
  vtime::state::SavedState model;
};

namespace vtime::capi {

// ASCII "vtCLOCK\1", "vtVCPU\0\1", "vtSTATE\1": unlikely in memory that is
// not a handle.
template <class T>
inline constexpr std::uint64_t kTag = 0;
template <>
inline constexpr std::uint64_t kTag<vtime_clock> = 0x01'4b'43'4f'4c'43'74'76ULL;
template <>
inline constexpr std::uint64_t kTag<vtime_vcpu> = 0x01'00'55'50'43'56'74'76ULL;
template <>
inline constexpr std::uint64_t kTag<vtime_state> = 0x01'45'54'41'54'53'74'76ULL;

// True when p is a live handle of kind T. The tag is read as bytes because p
// may point at an object of another kind.
template <class T>
bool IsHandle(const T* p) {
  if (p == nullptr) return false;
  std::uint64_t tag;
  std::memcpy(&tag, static_cast<const void*>(p), sizeof tag);
  return tag == kTag<T>;
}

// Clears the tag (so a stale copy of the pointer is refused while the memory
// has not been reused) and frees the handle. Ignores what is not a handle.
template <class T>
void DestroyHandle(T* p) {
  if (!IsHandle(p)) return;
  // A volatile store: the compiler must not drop it as dead before delete.
  *static_cast<volatile std::uint64_t*>(&p->tag) = 0;
  delete p;
}

// A number as decimal text in a buffer of its own, for messages: making it
// allocates nothing and cannot throw.
class Decimal {
 public:
  explicit Decimal(std::uint64_t v) noexcept
      : size_(static_cast<std::size_t>(std::to_chars(text_, text_ + sizeof text_, v).ptr - text_)) {
  }
  explicit operator std::string_view() const noexcept { return {text_, size_}; }

 private:
  char text_[20];  // 2^64-1 has 20 digits
  std::size_t size_;
};

// Records the message of a failing call, "function: part part ...",
// truncated to the thread's buffer, and returns its status. It allocates
// nothing, so it is safe in the handlers of Guard.
vtime_status SetErrorParts(vtime_status status,
                           std::initializer_list<std::string_view> parts) noexcept;
template <class... Parts>
vtime_status SetError(vtime_status status, std::string_view function,
                      const Parts&... parts) noexcept {
  return SetErrorParts(status, {function, ": ", std::string_view(parts)...});
}
// The same for an Error from the C++ layers, its code mapped to a status.
vtime_status FailWith(std::string_view function, const Error& error);
vtime_status StatusOf(ErrorCode code) noexcept;

// A resume plan as the C struct.
inline vtime_resume_plan ToC(const state::ResumePlan& plan) noexcept {
  vtime_resume_plan out{};
  out.vm_offset = plan.vm_offset;
  out.virtual_offset = plan.virtual_offset;
  out.physical_offset = plan.physical_offset;
  out.virtual_count_at_resume = plan.virtual_count_at_resume;
  out.physical_count_at_resume = plan.physical_count_at_resume;
  out.advanced_ticks = plan.advanced_ticks;
  out.wall_clock_went_backwards = plan.wall_clock_went_backwards ? 1 : 0;
  return out;
}

inline vtime_status BadHandle(std::string_view function, std::string_view which) noexcept {
  return SetError(VTIME_ERR_BAD_HANDLE, function, which,
                  " is NULL or not a live handle of its kind");
}
inline vtime_status NullArgument(std::string_view function, std::string_view which) noexcept {
  return SetError(VTIME_ERR_INVALID_ARGUMENT, function, which, " is NULL");
}

// Runs body, turning any exception into a status: nothing thrown inside vtime
// (std::bad_alloc from a container, a bug) may unwind into a C caller.
template <class Body>
vtime_status Guard(std::string_view function, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return SetError(VTIME_ERR_NO_MEMORY, function, "out of memory");
  } catch (const std::exception& e) {
    return SetError(VTIME_ERR_INTERNAL, function, "unexpected exception (a vtime bug): ", e.what());
  } catch (...) {
    return SetError(VTIME_ERR_INTERNAL, function, "unexpected exception (a vtime bug)");
  }
}

}  // namespace vtime::capi
