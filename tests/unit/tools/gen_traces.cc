// Writes a generated pair of traces for the merge benchmark (scripts/bench
// --merge): a host's and a guest's, each on two CPUs, as the raw per-CPU
// ring-buffer pages that `trace-cmd restore` turns into .dat files, with a
// tracing directory describing their one event, the guest's offset
// timeline and both machines' clock samples. The guest ran on the host from
// host count 10^9 on (virtual offset 10^9), so every guest record is
// covered and lands at an exact host time.
//
//   gen_traces DIR RECORDS     (RECORDS in all, half host, half guest)
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vtime/trace/clock_sample.h"
#include "vtime/trace/timeline.h"

namespace {

using vtime::trace::ClockSample;
using vtime::trace::ClockSamples;
using vtime::trace::PerfClock;

constexpr std::size_t kPage = 4096;
constexpr std::size_t kPageHeader = 16;  // u64 time stamp, u64 commit (bytes of data)
constexpr std::uint16_t kEventId = 1001;
// The common fields, then two 16-byte names and two pids: 48 bytes.
constexpr std::size_t kPayload = 48;
constexpr std::uint64_t kGuestStart = 1'000'000'000;  // host count where the guest started

// The lab's 62.5 MHz counter as Linux publishes it: 16 ns a tick.
PerfClock Clock(std::uint64_t zero) { return PerfClock{zero, 33554432, 21, 0, (1ULL << 56) - 1}; }

bool Write(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
  return static_cast<bool>(out);
}

// Ring-buffer pages of one CPU: each event a 4-byte header (type_len = its
// length in words, time_delta = ns since the one before) and its payload.
class CpuWriter {
 public:
  explicit CpuWriter(const std::filesystem::path& p) : f_(std::fopen(p.c_str(), "wb")) {
    page_.resize(kPage);
  }
  ~CpuWriter() {
    Flush();
    if (f_ != nullptr) std::fclose(f_);
  }
  CpuWriter(const CpuWriter&) = delete;
  CpuWriter& operator=(const CpuWriter&) = delete;
  bool ok() const { return f_ != nullptr && !failed_; }

  void Add(std::uint64_t ts, std::int32_t pid, std::uint32_t seq) {
    if (used_ + 4 + kPayload > kPage - kPageHeader) Flush();
    if (used_ == 0) {
      std::memcpy(page_.data(), &ts, 8);
      last_ = ts;
    }
    const std::uint64_t delta = ts - last_;  // < 2^27 ns: records are microseconds apart
    last_ = ts;
    const std::uint32_t header =
        static_cast<std::uint32_t>(kPayload / 4) | static_cast<std::uint32_t>(delta << 5);
    std::uint8_t* at = page_.data() + kPageHeader + used_;
    std::memcpy(at, &header, 4);
    std::uint8_t payload[kPayload] = {};
    std::memcpy(payload, &kEventId, 2);
    std::memcpy(payload + 4, &pid, 4);
    std::snprintf(reinterpret_cast<char*>(payload + 8), 16, "task%u", seq % 97);
    const std::int32_t prev = pid, next = pid + 1;
    std::memcpy(payload + 24, &prev, 4);
    std::snprintf(reinterpret_cast<char*>(payload + 28), 16, "task%u", (seq + 1) % 97);
    std::memcpy(payload + 44, &next, 4);
    std::memcpy(at + 4, payload, kPayload);
    used_ += 4 + kPayload;
  }

 private:
  void Flush() {
    if (used_ == 0 || f_ == nullptr) return;
    const std::uint64_t commit = used_;
    std::memcpy(page_.data() + 8, &commit, 8);
    if (std::fwrite(page_.data(), 1, kPage, f_) != kPage) failed_ = true;
    std::fill(page_.begin(), page_.end(), 0);
    used_ = 0;
  }

  std::FILE* f_;
  std::vector<std::uint8_t> page_;
  std::size_t used_ = 0;
  std::uint64_t last_ = 0;
  bool failed_ = false;
};

std::string Samples(const std::string& machine, const PerfClock& clock) {
  ClockSamples s;
  s.machine = machine;
  s.counter_frequency_hz = 62'500'000;
  s.perf = clock;
  s.wall_clock = true;
  // The wall clock 1.7e18 ns ahead of the trace clock on every machine.
  s.samples.push_back(ClockSample{100, clock.TraceNs(101) + 5'000, 102,
                                  1'700'000'000'000'000'000 + clock.TraceNs(101)});
  return s.Format();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: gen_traces DIR RECORDS\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  const std::uint64_t records = std::strtoull(argv[2], nullptr, 10);
  if (records < 4) {
    std::fprintf(stderr, "gen_traces: RECORDS must be at least 4\n");
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(dir / "tracing/events/ftrace/print", ec);
  std::filesystem::create_directories(dir / "tracing/events/vtbench/switch", ec);
  // The page and event header layouts trace-cmd records from tracefs, and
  // the formats of our one event and of ftrace's print (trace-cmd needs it).
  bool ok =
      Write(dir / "tracing/events/header_page",
            "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
            "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
            "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
            "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n") &&
      Write(dir / "tracing/events/header_event",
            "# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n"
            "\tarray       :   32 bits\n\n\tpadding     : type == 29\n"
            "\ttime_extend : type == 30\n\ttime_stamp : type == 31\n"
            "\tdata max type_len  == 28\n") &&
      Write(dir / "tracing/events/ftrace/print/format",
            "name: print\nID: 5\nformat:\n"
            "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
            "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
            "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
            "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
            "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n"
            "\tfield:char buf[];\toffset:16;\tsize:0;\tsigned:1;\n\n"
            "print fmt: \"%ps: %s\", (void *)REC->ip, REC->buf\n") &&
      Write(dir / "tracing/events/vtbench/switch/format",
            "name: switch\nID: 1001\nformat:\n"
            "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
            "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
            "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
            "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
            "\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n"
            "\tfield:int prev_pid;\toffset:24;\tsize:4;\tsigned:1;\n"
            "\tfield:char next_comm[16];\toffset:28;\tsize:16;\tsigned:0;\n"
            "\tfield:int next_pid;\toffset:44;\tsize:4;\tsigned:1;\n\n"
            "print fmt: \"prev=%s:%d next=%s:%d\", REC->prev_comm, REC->prev_pid, "
            "REC->next_comm, REC->next_pid\n") &&
      Write(dir / "kallsyms", "");
  const PerfClock host = Clock(1'000), guest = Clock(7);
  ok = ok && Write(dir / "host-samples.txt", Samples("bench-host", host)) &&
       Write(dir / "guest-samples.txt", Samples("bench-guest", guest));
  vtime::trace::Timeline t;
  t.vcpus = 2;
  t.hosts = {{"bench-host", 62'500'000}};
  t.events.push_back(vtime::trace::Event{.kind = vtime::trace::EventKind::kStart,
                                         .host = 0,
                                         .host_count = kGuestStart,
                                         .virtual_offset = kGuestStart,
                                         .physical_offset = kGuestStart});
  const auto bytes = t.Encode();
  ok = ok && Write(dir / "timeline.vtl", std::string(bytes.begin(), bytes.end()));
  // A record every 1024 ticks (16.4 us) on each CPU; the guest's records
  // at guest counts that map to the same host times, interleaved.
  const std::uint64_t per_cpu = records / 4;
  {
    CpuWriter h0(dir / "host-cpu0"), h1(dir / "host-cpu1"), g0(dir / "guest-cpu0"),
        g1(dir / "guest-cpu1");
    for (std::uint64_t i = 0; i < per_cpu; ++i) {
      const std::uint64_t at = kGuestStart + 1'000 + i * 1024;
      const auto seq = static_cast<std::uint32_t>(i);
      h0.Add(host.TraceNs(at), 100, seq);
      h1.Add(host.TraceNs(at + 256), 200, seq);
      g0.Add(guest.TraceNs(at + 512 - kGuestStart), 300, seq);
      g1.Add(guest.TraceNs(at + 768 - kGuestStart), 400, seq);
    }
    ok = ok && h0.ok() && h1.ok() && g0.ok() && g1.ok();
  }
  if (!ok) {
    std::fprintf(stderr, "gen_traces: writing in %s failed: %s\n", dir.c_str(),
                 std::strerror(errno));
    return 1;
  }
  std::printf("gen_traces: %llu records in %s\n", static_cast<unsigned long long>(per_cpu * 4),
              dir.c_str());
  return 0;
}
