#include "vtime/result.h"

#include <cstring>

namespace vtime {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kOutOfRange:
      return "out of range";
    case ErrorCode::kUnsupported:
      return "unsupported";
    case ErrorCode::kMalformed:
      return "malformed";
    case ErrorCode::kAlreadyExists:
      return "already exists";
    case ErrorCode::kBusy:
      return "busy";
    case ErrorCode::kBadState:
      return "bad state";
    case ErrorCode::kSystem:
      return "system error";
  }
  return "unknown error";
}

std::string Error::Message() const {
  if (sys_errno == 0) return context;
  return context + " (errno " + std::to_string(sys_errno) + ": " + std::strerror(sys_errno) + ")";
}

}  // namespace vtime
