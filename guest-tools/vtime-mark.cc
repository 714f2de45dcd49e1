// vtime-mark: marks moments in a Linux guest's trace and in its host's. At
// each mark it reads CNTVCT_EL0, writes "vtime-mark I VALUE" to tracefs's
// trace_marker (the guest's own trace records that with its trace clock),
// then stores VALUE to vtvmm's trace-marker register with one 8-byte write,
// which exits to the host, whose kvm:kvm_mmio trace event carries VALUE. The
// register is reached through /dev/mem: its page is not RAM and no driver
// claims it (vtvmm's device tree calls it "vtime,trace-marker"), which
// arm64's CONFIG_STRICT_DEVMEM and CONFIG_IO_STRICT_DEVMEM allow.
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "arm_counter.h"
#include "options.h"
#include "vtime/parse.h"

namespace {

using vtime::guest_tools::OptionValue;

constexpr std::uint64_t kDefaultMarker = 0x090e0000;  // vtvmm's layout::kTraceMarker

constexpr const char* kHelp =
    R"(Usage: vtime-mark [--count N] [--interval-ms MS] [--marker ADDRESS]
                  [--trace-marker FILE]

Marks N moments (default 20, MS ms apart, default 10) for a merge of this
guest's trace with its host's. At each it reads CNTVCT_EL0 (VALUE), writes
"vtime-mark I VALUE" to the trace marker FILE (default
/sys/kernel/tracing/trace_marker, else /sys/kernel/debug/tracing/trace_marker)
and then stores VALUE with one 8-byte write to the trace-marker register at
guest-physical ADDRESS (default 0x090e0000, vtvmm's), mapped through
/dev/mem. The host's kvm:kvm_mmio event of that write carries VALUE. At the
end it prints one line per mark, "vtime-mark: mark I VALUE", and a summary.

Exit status: 0 done, 1 a file could not be opened, mapped or written, 2 usage.
)";

int Usage(const std::string& why) {
  std::fprintf(stderr, "vtime-mark: %s\n(vtime-mark --help for usage)\n", why.c_str());
  return 2;
}

int SysFail(const std::string& what) {
  std::fprintf(stderr, "vtime-mark: %s: %s\n", what.c_str(), std::strerror(errno));
  return 1;
}

#if defined(__aarch64__)
// One 64-bit store without writeback, so that KVM gets a valid syndrome
// and can hand the access to the VMM.
inline void Store64(volatile std::uint64_t* at, std::uint64_t value) {
  asm volatile("str %0, [%1]" : : "r"(value), "r"(at) : "memory");
}
#else
inline void Store64(volatile std::uint64_t* at, std::uint64_t value) { *at = value; }
#endif

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  unsigned count = 20, interval_ms = 10;
  std::uint64_t marker = kDefaultMarker;
  std::string trace_marker;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    if (a == "--count" || a == "--interval-ms") {
      auto v = a == "--count" ? OptionValue<unsigned>(args, i, 1, 1'000'000)
                              : OptionValue<unsigned>(args, i, 0, 60'000);
      if (!v) return Usage(v.error().context);
      (a == "--count" ? count : interval_ms) = *v;
    } else if (a == "--marker" && i + 1 < args.size()) {
      if (!vtime::ParseU64(args[++i], &marker) || marker % 8 != 0) {
        return Usage("--marker needs an 8-byte aligned address, not '" + std::string(args[i]) +
                     "'");
      }
    } else if (a == "--trace-marker" && i + 1 < args.size() && !args[i + 1].empty()) {
      trace_marker = std::string(args[++i]);
    } else {
      return Usage("unknown or incomplete argument '" + std::string(a) + "'");
    }
  }
  if (!vtime::guest_tools::kHaveCounter) {
    std::fprintf(stderr, "vtime-mark: reads the arm64 counter: an arm64 build is needed\n");
    return 1;
  }

  int tm = -1;
  if (trace_marker.empty()) {
    for (const char* path :
         {"/sys/kernel/tracing/trace_marker", "/sys/kernel/debug/tracing/trace_marker"}) {
      tm = open(path, O_WRONLY | O_CLOEXEC);
      if (tm >= 0) break;
    }
    if (tm < 0)
      return SysFail("cannot open /sys/kernel/tracing/trace_marker (is tracefs mounted?)");
  } else {
    tm = open(trace_marker.c_str(), O_WRONLY | O_CLOEXEC);
    if (tm < 0) return SysFail("cannot open " + trace_marker);
  }

  const long page = sysconf(_SC_PAGESIZE);
  const std::uint64_t base = marker & ~static_cast<std::uint64_t>(page - 1);
  const int mem = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
  if (mem < 0) return SysFail("cannot open /dev/mem");
  void* map = mmap(nullptr, static_cast<std::size_t>(page), PROT_READ | PROT_WRITE, MAP_SHARED, mem,
                   static_cast<off_t>(base));
  if (map == MAP_FAILED) {
    char what[96];
    std::snprintf(what, sizeof what, "cannot map /dev/mem at 0x%llx (a driver's or RAM?)",
                  static_cast<unsigned long long>(base));
    return SysFail(what);
  }
  auto* reg = reinterpret_cast<volatile std::uint64_t*>(static_cast<char*>(map) + (marker - base));

  std::vector<std::uint64_t> values;
  values.reserve(count);
  for (unsigned i = 0; i < count; ++i) {
    if (i != 0 && interval_ms != 0) {
      const timespec ts{static_cast<time_t>(interval_ms / 1000),
                        static_cast<long>(interval_ms % 1000) * 1'000'000L};
      nanosleep(&ts, nullptr);
    }
    const std::uint64_t value = vtime::guest_tools::ReadCntvct();
    char text[64];
    const int n = std::snprintf(text, sizeof text, "vtime-mark %u %llu", i,
                                static_cast<unsigned long long>(value));
    if (write(tm, text, static_cast<std::size_t>(n)) != n)
      return SysFail("writing the trace marker");
    Store64(reg, value);
    values.push_back(value);
  }
  munmap(map, static_cast<std::size_t>(page));
  close(mem);
  close(tm);
  for (unsigned i = 0; i < count; ++i) {
    std::printf("vtime-mark: mark %u %llu\n", i, static_cast<unsigned long long>(values[i]));
  }
  std::printf("vtime-mark: marks=%u interval_ms=%u marker=0x%llx cntfrq=%llu\n", count, interval_ms,
              static_cast<unsigned long long>(marker),
              static_cast<unsigned long long>(vtime::guest_tools::ReadCntfrq()));
  return 0;
}
