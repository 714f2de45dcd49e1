// Versions, status names and the thread-local error message.
#include <algorithm>
#include <cstddef>
#include <string>

#include "capi/boundary.h"

namespace vtime::capi {
namespace {

// Long enough for any message vtime writes (a decode error names the field
// and both values); a longer one is cut, never overrun.
constexpr std::size_t kMessageCapacity = 512;

// A fixed buffer rather than a std::string: writing it cannot fail, and a
// thread's exit has no destructor to run inside the library.
thread_local char t_message[kMessageCapacity] = "";

#define VTIME_STRINGIFY_(x) #x
#define VTIME_STRINGIFY(x) VTIME_STRINGIFY_(x)
constexpr const char kVersionString[] = VTIME_STRINGIFY(VTIME_VERSION_MAJOR) "." VTIME_STRINGIFY(
    VTIME_VERSION_MINOR) "." VTIME_STRINGIFY(VTIME_VERSION_PATCH);

}  // namespace

vtime_status SetErrorParts(vtime_status status,
                           std::initializer_list<std::string_view> parts) noexcept {
  std::size_t at = 0;
  for (std::string_view part : parts) {
    const std::size_t n = std::min(part.size(), kMessageCapacity - 1 - at);
    std::memcpy(t_message + at, part.data(), n);
    at += n;
  }
  t_message[at] = '\0';
  return status;
}

vtime_status StatusOf(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return VTIME_ERR_INVALID_ARGUMENT;
    case ErrorCode::kOutOfRange:
      return VTIME_ERR_OUT_OF_RANGE;
    case ErrorCode::kUnsupported:
      return VTIME_ERR_UNSUPPORTED;
    case ErrorCode::kMalformed:
      return VTIME_ERR_MALFORMED;
    case ErrorCode::kAlreadyExists:
      return VTIME_ERR_ALREADY_EXISTS;
    case ErrorCode::kBusy:
      return VTIME_ERR_BUSY;
    case ErrorCode::kBadState:
      return VTIME_ERR_BAD_STATE;
    case ErrorCode::kSystem:
      return VTIME_ERR_SYSTEM;
  }
  return VTIME_ERR_INTERNAL;
}

vtime_status FailWith(std::string_view function, const Error& error) {
  return SetError(StatusOf(error.code), function, error.Message());
}

}  // namespace vtime::capi

using vtime::capi::kVersionString;

extern "C" {

uint32_t vtime_version(void) noexcept { return VTIME_VERSION; }

const char* vtime_version_string(void) noexcept { return kVersionString; }

const char* vtime_status_name(uint32_t status) noexcept {
  // A uint32_t, not the enum: a caller may pass any value.
  switch (status) {
    case VTIME_OK:
      return "ok";
    case VTIME_ERR_INVALID_ARGUMENT:
      return "invalid argument";
    case VTIME_ERR_OUT_OF_RANGE:
      return "out of range";
    case VTIME_ERR_UNSUPPORTED:
      return "unsupported";
    case VTIME_ERR_MALFORMED:
      return "malformed";
    case VTIME_ERR_ALREADY_EXISTS:
      return "already exists";
    case VTIME_ERR_BUSY:
      return "busy";
    case VTIME_ERR_BAD_STATE:
      return "bad state";
    case VTIME_ERR_SYSTEM:
      return "system error";
    case VTIME_ERR_BAD_HANDLE:
      return "bad handle";
    case VTIME_ERR_BUFFER_TOO_SMALL:
      return "buffer too small";
    case VTIME_ERR_NO_MEMORY:
      return "out of memory";
    case VTIME_ERR_INTERNAL:
      return "internal error";
  }
  return "unknown status";
}

const char* vtime_last_error(void) noexcept { return vtime::capi::t_message; }

}  // extern "C"
