// vtime-ptp: measures this machine's CLOCK_REALTIME against a PTP clock,
// in a KVM guest KVM's virtual PTP clock (/dev/ptp0, "KVM virtual PTP"),
// which gives the host's CLOCK_REALTIME. So the offset it prints is the
// host's wall clock minus the guest's, with how sure the measurement is.
#include <fcntl.h>
#include <linux/ptp_clock.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/timex.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "options.h"
#include "ptp_offset.h"
#include "vtime/result.h"

namespace {

using vtime::ErrorCode;
using vtime::Fail;
using vtime::Ok;
using vtime::Result;
using vtime::guest_tools::ClockStamp;
using vtime::guest_tools::OffsetEstimate;
using vtime::guest_tools::OptionValue;

constexpr const char* kHelp = R"(Usage: vtime-ptp [--device PATH] [--method auto|precise|sys-offset]
                 [--samples N] [--count N] [--interval-ms MS] [--step-over-us US]

Measures the offset of a PTP clock (default /dev/ptp0; in a KVM guest that is
KVM's "KVM virtual PTP", the host's CLOCK_REALTIME) from this machine's
CLOCK_REALTIME, COUNT times (default 1), MS ms apart (default 1000):
  vtime-ptp: device=PATH clock_name="NAME" kvm=yes|no cross_timestamping=0|1
  vtime-ptp: measurement=I method=precise offset_ns=D uncertainty_ns=U
             device_ns=P sys_realtime_ns=S
  vtime-ptp: measurement=I method=sys-offset offset_ns=D uncertainty_ns=U
             samples=N best=K bracket_ns=W rejected=R
offset_ns = PTP time - CLOCK_REALTIME. The true offset lies within
offset_ns +- uncertainty_ns.

  --step-over-us US    after a measurement whose |offset_ns| exceeds US
                       microseconds (and its uncertainty), step
                       CLOCK_REALTIME by offset_ns (clock_adjtime
                       ADJ_SETOFFSET, needs CAP_SYS_TIME) and say so:
                         vtime-ptp: measurement=I stepped_ns=D
                       With a large --count and a short --interval-ms this
                       keeps a guest's wall clock on its host's, e.g. after
                       its VMM resumed it with its counters frozen.

  --method precise     PTP_SYS_OFFSET_PRECISE: one cross-timestamp, both
                       times from one counter value; uncertainty_ns=1 (the
                       two conversions' rounding to whole ns)
  --method sys-offset  PTP_SYS_OFFSET: N (--samples, 1..25, default 10) PTP
                       readings, each between two CLOCK_REALTIME readings;
                       the narrowest bracket wins, uncertainty_ns is half
                       its width, rounded up
  --method auto        (default) precise if the clock offers it and it works,
                       else sys-offset (a line says why)

Exit status: 0 when every measurement succeeded, 1 when the device is missing
or a measurement failed (the reason on stderr), 2 for a bad command line.
)";

constexpr const char* kProg = "vtime-ptp";
// The name KVM's PTP driver registers its clock under (drivers/ptp,
// ptp_kvm_common.c), shown in sysfs as clock_name.
constexpr std::string_view kKvmClockName = "KVM virtual PTP";

enum class Method { kAuto, kPrecise, kSysOffset };

struct Options {
  std::string device = "/dev/ptp0";
  Method method = Method::kAuto;
  unsigned samples = 10;
  unsigned count = 1;
  unsigned interval_ms = 1000;
  std::optional<std::uint64_t> step_over_ns;
};

Result<Options> ParseOptions(const std::vector<std::string_view>& args) {
  Options options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg == "--device" || arg == "--method") {
      if (i + 1 >= args.size()) {
        return Fail(ErrorCode::kInvalidArgument, std::string(arg) + " needs a value");
      }
      const std::string_view value = args[++i];
      if (arg == "--device") {
        options.device = value;
      } else if (value == "auto") {
        options.method = Method::kAuto;
      } else if (value == "precise") {
        options.method = Method::kPrecise;
      } else if (value == "sys-offset") {
        options.method = Method::kSysOffset;
      } else {
        return Fail(ErrorCode::kInvalidArgument,
                    "--method needs auto, precise or sys-offset, not '" + std::string(value) + "'");
      }
      continue;
    }
    Result<unsigned> value = 0u;
    if (arg == "--samples") {
      value = OptionValue<unsigned>(args, i, 1, PTP_MAX_SAMPLES);
      if (value) options.samples = *value;
    } else if (arg == "--count") {
      value = OptionValue<unsigned>(args, i, 1, 1'000'000);
      if (value) options.count = *value;
    } else if (arg == "--interval-ms") {
      value = OptionValue<unsigned>(args, i, 0, 3'600'000);
      if (value) options.interval_ms = *value;
    } else if (arg == "--step-over-us") {
      value = OptionValue<unsigned>(args, i, 1, 3'600'000'000U);
      if (value) options.step_over_ns = std::uint64_t{*value} * 1000;
    } else {
      return Fail(ErrorCode::kInvalidArgument,
                  "unknown argument '" + std::string(arg) + "' (see --help)");
    }
    if (!value) return tl::unexpected(value.error());
  }
  return options;
}

// Owns the PTP clock's file descriptor; one method per ioctl.
class PtpClock {
 public:
  static Result<PtpClock> Open(const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      std::string context = "cannot open " + path;
      if (err == ENOENT) {
        context +=
            ": this machine has no PTP clock there (a KVM guest has one when its kernel "
            "has CONFIG_PTP_1588_CLOCK_KVM and the host offers KVM's PTP hypercall)";
      }
      return Fail(ErrorCode::kUnsupported, std::move(context), err);
    }
    return PtpClock(fd);
  }
  PtpClock(const PtpClock&) = delete;
  PtpClock& operator=(const PtpClock&) = delete;
  PtpClock(PtpClock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  PtpClock& operator=(PtpClock&&) = delete;
  ~PtpClock() {
    if (fd_ >= 0) close(fd_);
  }

  // The clock's name from sysfs (/sys/dev/char/MAJ:MIN/clock_name, the same
  // file as /sys/class/ptp/ptpN/clock_name), found from the open device so
  // that any --device path works.
  [[nodiscard]] Result<std::string> ClockName() const {
    struct stat st {};
    if (fstat(fd_, &st) != 0) return Fail(ErrorCode::kSystem, "fstat", errno);
    if (!S_ISCHR(st.st_mode)) return Fail(ErrorCode::kInvalidArgument, "not a character device");
    const std::string path = "/sys/dev/char/" + std::to_string(major(st.st_rdev)) + ":" +
                             std::to_string(minor(st.st_rdev)) + "/clock_name";
    std::ifstream in(path);
    std::string name;
    if (!in || !std::getline(in, name)) {
      return Fail(ErrorCode::kUnsupported, "cannot read " + path + " (not a PTP clock?)");
    }
    return name;
  }

  // PTP_CLOCK_GETCAPS: the kernel writes the clock's capabilities.
  [[nodiscard]] Result<ptp_clock_caps> GetCaps() const {
    ptp_clock_caps caps{};
    if (ioctl(fd_, PTP_CLOCK_GETCAPS, &caps) != 0) {
      return Fail(ErrorCode::kSystem, "PTP_CLOCK_GETCAPS", errno);
    }
    return caps;
  }

  // PTP_SYS_OFFSET_PRECISE: the kernel writes one cross-timestamp (device,
  // CLOCK_REALTIME and CLOCK_MONOTONIC_RAW of the same instant).
  [[nodiscard]] Result<ptp_sys_offset_precise> SysOffsetPrecise() const {
    ptp_sys_offset_precise precise{};
    if (ioctl(fd_, PTP_SYS_OFFSET_PRECISE, &precise) != 0) {
      return Fail(ErrorCode::kSystem, "PTP_SYS_OFFSET_PRECISE", errno);
    }
    return precise;
  }

  // PTP_SYS_OFFSET: the kernel reads n_samples, writes 2n+1 stamps.
  [[nodiscard]] Result<ptp_sys_offset> SysOffset(unsigned samples) const {
    ptp_sys_offset offset{};
    offset.n_samples = samples;
    if (ioctl(fd_, PTP_SYS_OFFSET, &offset) != 0) {
      return Fail(ErrorCode::kSystem, "PTP_SYS_OFFSET with " + std::to_string(samples) + " samples",
                  errno);
    }
    return offset;
  }

 private:
  explicit PtpClock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

ClockStamp Stamp(const ptp_clock_time& t) { return ClockStamp{t.sec, t.nsec}; }

// What one measurement found.
struct Measured {
  std::int64_t offset_ns = 0;
  std::uint64_t uncertainty_ns = 0;
};

Result<Measured> MeasurePrecise(const PtpClock& clock, unsigned index) {
  auto precise = clock.SysOffsetPrecise();
  if (!precise) return tl::unexpected(precise.error());
  auto device = vtime::guest_tools::ToNanoseconds(Stamp(precise->device));
  if (!device) return tl::unexpected(device.error());
  auto sys = vtime::guest_tools::ToNanoseconds(Stamp(precise->sys_realtime));
  if (!sys) return tl::unexpected(sys.error());
  auto estimate = vtime::guest_tools::PreciseOffset(*device, *sys);
  if (!estimate) return tl::unexpected(estimate.error());
  std::printf("%s: measurement=%u method=precise offset_ns=%" PRId64 " uncertainty_ns=%" PRIu64
              " device_ns=%" PRId64 " sys_realtime_ns=%" PRId64 "\n",
              kProg, index, estimate->offset_ns, estimate->uncertainty_ns, *device, *sys);
  return Measured{estimate->offset_ns, estimate->uncertainty_ns};
}

Result<Measured> MeasureSysOffset(const PtpClock& clock, unsigned index, unsigned samples) {
  auto raw = clock.SysOffset(samples);
  if (!raw) return tl::unexpected(raw.error());
  std::vector<ClockStamp> stamps;
  for (unsigned i = 0; i < 2 * raw->n_samples + 1; ++i) stamps.push_back(Stamp(raw->ts[i]));
  auto split = vtime::guest_tools::SamplesFromSysOffset(stamps);
  if (!split) return tl::unexpected(split.error());
  auto estimate = vtime::guest_tools::BestBracketedOffset(*split);
  if (!estimate) return tl::unexpected(estimate.error());
  std::printf("%s: measurement=%u method=sys-offset offset_ns=%" PRId64 " uncertainty_ns=%" PRIu64
              " samples=%u best=%zu bracket_ns=%" PRIu64 " rejected=%zu\n",
              kProg, index, estimate->offset_ns, estimate->uncertainty_ns, raw->n_samples,
              estimate->sample_index, estimate->bracket_ns, estimate->rejected);
  return Measured{estimate->offset_ns, estimate->uncertainty_ns};
}

// Steps CLOCK_REALTIME by offset_ns when it is over the threshold and its
// uncertainty: the host's wall clock, as the PTP clock gave it.
Result<void> MaybeStep(const Options& options, unsigned index, const Measured& m) {
  if (!options.step_over_ns) return Ok();
  const std::uint64_t size = m.offset_ns < 0 ? 0 - static_cast<std::uint64_t>(m.offset_ns)
                                             : static_cast<std::uint64_t>(m.offset_ns);
  if (size <= *options.step_over_ns || size <= m.uncertainty_ns) return Ok();
  timex tx{};
  tx.modes = ADJ_SETOFFSET | ADJ_NANO;
  // ADJ_SETOFFSET takes a normalised timeval: tv_usec (nanoseconds with
  // ADJ_NANO) in [0, 1e9), tv_sec carrying the sign.
  std::int64_t sec = m.offset_ns / 1'000'000'000;
  std::int64_t nsec = m.offset_ns % 1'000'000'000;
  if (nsec < 0) {
    nsec += 1'000'000'000;
    --sec;
  }
  tx.time.tv_sec = static_cast<time_t>(sec);
  tx.time.tv_usec = static_cast<suseconds_t>(nsec);
  if (clock_adjtime(CLOCK_REALTIME, &tx) < 0) {
    return Fail(ErrorCode::kSystem, "clock_adjtime(CLOCK_REALTIME, ADJ_SETOFFSET)", errno);
  }
  std::printf("%s: measurement=%u stepped_ns=%" PRId64 "\n", kProg, index, m.offset_ns);
  return Ok();
}

Result<void> Run(const Options& options) {
  auto clock = PtpClock::Open(options.device);
  if (!clock) return tl::unexpected(clock.error());
  auto name = clock->ClockName();
  if (!name) return tl::unexpected(name.error());
  auto caps = clock->GetCaps();
  if (!caps) return tl::unexpected(caps.error());
  const bool kvm = *name == kKvmClockName;
  std::printf("%s: device=%s clock_name=\"%s\" kvm=%s cross_timestamping=%d\n", kProg,
              options.device.c_str(), name->c_str(), kvm ? "yes" : "no", caps->cross_timestamping);
  if (!kvm) {
    std::printf("%s: note: not KVM's PTP clock (that one is named \"%.*s\"); measuring anyway\n",
                kProg, static_cast<int>(kKvmClockName.size()), kKvmClockName.data());
  }

  bool precise = options.method != Method::kSysOffset;
  if (options.method == Method::kAuto && caps->cross_timestamping == 0) {
    std::printf("%s: the clock has no cross-timestamping: using PTP_SYS_OFFSET\n", kProg);
    precise = false;
  }
  const timespec interval{static_cast<time_t>(options.interval_ms / 1000),
                          static_cast<long>(options.interval_ms % 1000 * 1'000'000)};
  for (unsigned i = 1; i <= options.count; ++i) {
    if (i > 1) clock_nanosleep(CLOCK_MONOTONIC, 0, &interval, nullptr);
    if (precise) {
      auto r = MeasurePrecise(*clock, i);
      if (r) {
        if (auto s = MaybeStep(options, i, *r); !s) return s;
        std::fflush(stdout);
        continue;
      }
      if (options.method == Method::kPrecise) return tl::unexpected(r.error());
      // A clock can advertise cross-timestamping and still refuse one (the
      // ioctl then fails, e.g. with EOPNOTSUPP), so auto falls back to
      // PTP_SYS_OFFSET for this and every later measurement.
      std::printf("%s: %s: using PTP_SYS_OFFSET\n", kProg, r.error().Message().c_str());
      precise = false;
    }
    auto r = MeasureSysOffset(*clock, i, options.samples);
    if (!r) return tl::unexpected(r.error());
    if (auto s = MaybeStep(options, i, *r); !s) return s;
    std::fflush(stdout);
  }
  return Ok();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::string_view arg : args) {
    if (arg == "-h" || arg == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
  }
  auto options = ParseOptions(args);
  if (!options) {
    std::fprintf(stderr, "%s: %s\n", kProg, options.error().Message().c_str());
    return 2;
  }
  if (auto r = Run(*options); !r) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: %s\n", kProg, r.error().Message().c_str());
    return 1;
  }
  return 0;
}
