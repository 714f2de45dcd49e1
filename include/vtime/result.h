// Errors as values: every failure a user, a file or a guest can cause is
// returned as a Result<T>, never thrown and never an abort.
#pragma once

#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>

namespace vtime {

/// What kind of failure an Error reports; callers branch on this, people read
/// the context.
enum class ErrorCode {
  kInvalidArgument,  ///< A value the caller passed is not acceptable.
  kOutOfRange,       ///< A value is well-formed but outside what is allowed.
  kUnsupported,      ///< The host or the configuration lacks the feature.
  kMalformed,        ///< An encoding (ESR, file, stream) cannot be decoded.
  kAlreadyExists,    ///< A one-shot setting was set before.
  kBusy,             ///< The operation conflicts with one in progress.
  kBadState,         ///< The object is not in a state that allows this.
  kSystem,           ///< A system call failed; errno says why.
};

/// The name of an ErrorCode, for messages and logs.
std::string_view ErrorCodeName(ErrorCode code);

/// One failure: a code, the errno of a failed system call (0 if none), and a
/// one-line context saying what was being done and what was wrong.
struct Error {
  ErrorCode code = ErrorCode::kInvalidArgument;
  int sys_errno = 0;
  std::string context;

  /// "context (errno N: text)" or just the context; one line.
  [[nodiscard]] std::string Message() const;
};

/// The result of an operation that can fail: a T, or an Error.
template <class T>
class [[nodiscard]] Result : public tl::expected<T, Error> {
 public:
  using tl::expected<T, Error>::expected;
  // NOLINTNEXTLINE(google-explicit-constructor): a Result is its payload.
  Result(tl::expected<T, Error> other) : tl::expected<T, Error>(std::move(other)) {}
};

/// Builds the failing side of a Result.
inline tl::unexpected<Error> Fail(ErrorCode code, std::string context, int sys_errno = 0) {
  return tl::unexpected<Error>(Error{code, sys_errno, std::move(context)});
}

/// The success value of a Result<void>.
inline Result<void> Ok() { return {}; }

}  // namespace vtime
