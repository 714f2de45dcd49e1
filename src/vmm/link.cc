#include "vmm/link.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

namespace vtime::vmm {
namespace {

class PlainTcp final : public Link {
 public:
  explicit PlainTcp(Fd fd) : fd_(std::move(fd)) {}

  Result<void> WriteAll(std::span<const std::uint8_t> bytes) override {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Fail(ErrorCode::kSystem, "link: send", errno);
      }
      bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
    return Ok();
  }

  Result<void> ReadAll(std::span<std::uint8_t> bytes, unsigned timeout_ms) override {
    while (!bytes.empty()) {
      pollfd p{fd_.get(), POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(timeout_ms));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Fail(ErrorCode::kSystem, "link: receive", errno);
      }
      if (r == 0) {
        return Fail(ErrorCode::kSystem,
                    "link: receive: timed out after " + std::to_string(timeout_ms) + " ms");
      }
      const ssize_t n = ::recv(fd_.get(), bytes.data(), bytes.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Fail(ErrorCode::kSystem, "link: receive", errno);
      }
      if (n == 0) {
        return Fail(ErrorCode::kMalformed, "link: the other side closed the link with " +
                                               std::to_string(bytes.size()) +
                                               " bytes still to come");
      }
      bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
    return Ok();
  }

  void CloseWrite() override { ::shutdown(fd_.get(), SHUT_WR); }
  [[nodiscard]] int fd() const override { return fd_.get(); }
  [[nodiscard]] std::string Describe() const override { return "plain TCP"; }

 private:
  Fd fd_;
};

}  // namespace

std::unique_ptr<Link> PlainLink(Fd fd) { return std::make_unique<PlainTcp>(std::move(fd)); }

}  // namespace vtime::vmm
