#include "vmm/machine_impl.h"

namespace vtime::vmm::detail {

Result<void> VmMachine::OpenMonitor() {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (config_.monitor_path.size() >= sizeof sa.sun_path) {
    return Fail(ErrorCode::kInvalidArgument, "--monitor path is too long");
  }
  std::memcpy(sa.sun_path, config_.monitor_path.c_str(), config_.monitor_path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Fail(ErrorCode::kSystem, "monitor socket", errno);
  ::unlink(config_.monitor_path.c_str());
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0 ||
      ::listen(fd.get(), 4) != 0) {
    return Fail(ErrorCode::kSystem, "monitor socket " + config_.monitor_path, errno);
  }
  monitor_ = std::move(fd);
  return Ok();
}

std::string VmMachine::MonitorReply(const std::string& line) {
  const auto space = line.find(' ');
  const std::string verb = line.substr(0, space);
  const std::string arg = space == std::string::npos ? "" : line.substr(space + 1);
  if (in_doubt_) {
    // Only the operator's decision, or a look, while a hand-over is in doubt.
    if (line == "resume") {
      operator_says_ = false;
      return "ok: resuming the guest here";
    }
    if (line == "quit") {
      operator_says_ = true;
      return "ok: leaving the guest to the destination; exiting";
    }
    if (line != "stats") {
      return "error: a migration is in doubt: answer 'resume' (the destination does not run "
             "the guest) or 'quit' (it does)";
    }
  } else if (line == "resume" || line == "quit") {
    return "error: no migration is in doubt";
  }
  if (verb == "snapshot" && !arg.empty()) {
    config_.snapshot_path = arg;
    if (auto r = WriteSnapshot(); !r) {
      ResumeAll();
      return "error: " + r.error().Message() + "; the guest keeps running";
    }
    return "ok: " + result_.detail;
  }
  if (verb == "pause" && !arg.empty()) {
    std::uint64_t ms = 0;
    const auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), ms);
    if (ec != std::errc{} || end != arg.data() + arg.size() || ms == 0 || ms > kMaxPauseMs) {
      return "error: pause needs a time in milliseconds, 1 to " + std::to_string(kMaxPauseMs);
    }
    auto r = PauseFor(ms);
    if (!r) return "error: " + r.error().Message();
    return "ok: " + *r;
  }
  if (verb == "migrate" && !arg.empty()) {
    config_.migrate_to = arg;
    if (auto r = MigrateOut(); !r) {
      return "error: " + r.error().Message() + "; the guest keeps running here";
    }
    return "ok: " + result_.detail;
  }
  if (verb == "stats" && arg.empty()) {
    const RunStats st = stats();
    return "ok: exits=" + std::to_string(st.exits) + " mmio=" + std::to_string(st.mmio_exits) +
           " intr=" + std::to_string(st.intr_exits) +
           " trace_marks=" + std::to_string(st.trace_marks) +
           " counter_offset_ioctls=" + std::to_string(st.counter_offset_ioctls) +
           " virtual_offset=" + std::to_string(clock_.virtual_offset().value) +
           " physical_offset=" + std::to_string(clock_.physical_offset().value) + StealReport();
  }
  return "error: unknown command '" + line +
         "'; commands: snapshot FILE, migrate ADDRESS:PORT, pause MS, stats (and, while a "
         "migration is in doubt, resume or quit)";
}

void VmMachine::ServeMonitor() {
  // One short connection per command; the socket is non-blocking, so a
  // client that connects and sends nothing cannot stall the VM.
  const int fd = ::accept4(monitor_.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  Fd client(fd);
  std::string line;
  char c;
  for (int waited = 0; line.size() < 4096;) {
    pollfd p{client.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) {
      if (++waited >= 20) return;  // 2 s without a full line: drop it
      continue;
    }
    const ssize_t n = ::read(client.get(), &c, 1);
    if (n <= 0 || c == '\n') break;
    line.push_back(c);
  }
  const std::string reply = MonitorReply(line) + "\n";
  (void)!::write(client.get(), reply.data(), reply.size());
}

}  // namespace vtime::vmm::detail

namespace vtime::vmm {

Result<std::string> MonitorCommand(const std::string& socket_path, const std::string& command) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof sa.sun_path) {
    return Fail(ErrorCode::kInvalidArgument, "monitor path is too long");
  }
  std::memcpy(sa.sun_path, socket_path.c_str(), socket_path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    return Fail(ErrorCode::kSystem, "connecting to the monitor " + socket_path, errno);
  }
  const std::string line = command + "\n";
  if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return Fail(ErrorCode::kSystem, "sending to the monitor", errno);
  }
  std::string reply;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  if (reply.empty()) return Fail(ErrorCode::kSystem, "the monitor closed without a reply");
  return reply;
}

}  // namespace vtime::vmm
