// vtvmm: the vtime reference VMM. Runs an arm64 guest program under KVM in
// QEMU virt's layout and exits with the guest's status.
#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/layout.h"
#include "vmm/machine.h"
#include "vmm/snapshot.h"
#include "vtime/pvtime/record.h"
#include "vtime/state/codec.h"
#include "vtime/state/json.h"
#if VTIME_HAVE_KVM
#include "backend/kvm/host_counter.h"
#include "vmm/migration.h"
#include "vtime/backend/kvm.h"
#endif

namespace {

using vtime::vmm::IrqChip;
using vtime::vmm::MachineConfig;

constexpr int kUsageError = 2;
constexpr int kVmmError = 125;

constexpr const char* kHelp = R"(Usage: vtvmm [OPTIONS] IMAGE
       vtvmm [OPTIONS] --restore SNAPSHOT [--policy freeze|wallclock]
       vtvmm [OPTIONS] --incoming PORT [--policy freeze|wallclock]
       vtvmm --probe
       vtvmm state show FILE
       vtvmm monitor SOCKET COMMAND...

Runs IMAGE, an arm64 guest program, under KVM and exits with its status.
IMAGE is an ELF executable (loaded at its physical addresses, started at its
entry point) or a raw binary (loaded at @RAW_LOAD@ and started at its first
byte). The machine copies QEMU's virt layout, so programs written for it run
unchanged: RAM at @RAM@, PL011 UART at @UART@ (its output goes to
stdout), GICv3 distributor @GICD@ and redistributors @GICR@, PSCI 0.2
over HVC, an arm,armv8-timer; x0 holds the device tree's address.

A guest ends by PSCI SYSTEM_OFF (status 0) or by writing a 32-bit status to
the vtime test finisher at @TEST_EXIT@ (vtvmm exits with status & 0xff). PSCI
SYSTEM_RESET reboots it: a new VM, the image loaded afresh, the same counter
offset (guest time runs on), unless --no-reboot (then status 0).

Options:
  --cpus N               vCPUs, one thread each (1 to @MAX_CPUS@, default @CPUS@;
                         others start powered off and come up with PSCI
                         CPU_ON)
  --memory MB            guest RAM in MiB (default @MEMORY_MB@)
  --irqchip kernel|user  kernel (default): in-kernel vGICv3.
                         user: no vGIC; vtvmm emulates a GICv2-style
                         distributor (@GICD@) and CPU interface
                         (@GICC@) and takes the timer lines from KVM on
                         every exit (KVM_CAP_ARM_USER_IRQ)
  --counter-offset N     set the VM counter offset: the guest's virtual and
                         physical counters read host counter - N
                         (KVM_ARM_SET_COUNTER_OFFSET; on kernels without it,
                         one legacy counter-value write). Default: KVM's
                         own rule (the virtual counter starts near 0)
  --guest-counter N      like --counter-offset, with the offset chosen so
                         that the guest's counters read N at start-up
  --legacy-counter-writes
                         carry the offset with counter-value writes
                         (KVM_REG_ARM_TIMER_CNT/PTIMER_CNT) instead of the
                         VM offset API, as VMMs for kernels before 6.4 do
  --pvtime on|off        PV stolen time (default on where KVM supports it)
  --pvtime-base ADDR     the records' region (default @PVTIME@, @PVTIME_KIB@ KiB;
                         vCPU i's record at ADDR + @PVTIME_STRIDE@*i)
  --vtimer-ppi N         virtual timer INTID (default @VTIMER@)
  --ptimer-ppi N         physical timer INTID (default @PTIMER@)
  --timeout SECS         stop the guest after SECS seconds (status 124;
                         counted afresh at each reboot)
  --no-reboot            exit on PSCI SYSTEM_RESET instead of rebooting
  --snapshot FILE        on SIGUSR2 (or after --snapshot-after), pause the
                         VM, write a snapshot to FILE and stop: guest RAM,
                         registers, vGIC, PV time and guest time saved as
                         offsets plus one (host counter, wall clock) pair
  --snapshot-after MS    take the --snapshot after MS ms of running
  --restore FILE         resume a snapshot instead of booting an image; its
                         machine settings (CPUs, memory, irqchip, PV time,
                         PPIs) replace the options above
  --policy P             how guest time resumes: freeze (default: the guest
                         continues at the count it paused at) or wallclock
                         (its counters advance by the real time elapsed)
  --migrate-to ADDR:PORT on SIGUSR2 (or after --migrate-after), send the VM
                         to a vtvmm waiting with --incoming (numeric IPv4),
                         with progress on stderr. RAM goes first while the
                         guest runs (pre-copy), then the guest pauses for the
                         pages it dirtied and its registers; vtvmm exits once
                         the destination has restored it. A destination that
                         is absent, refuses or drops the link leaves the
                         guest running here.
  --precopy on|off       off: stop-and-copy instead (the guest pauses for the
                         whole transfer; older destinations take only this)
  --migrate-after MS     migrate after MS ms of running
  --migrate-fault corrupt|truncate
                         (testing) damage the migration stream
  --incoming PORT        wait for one migration on PORT (up to --timeout, or
                         10 minutes), restore it (refusing a damaged or
                         impossible one with the reason, which the source is
                         told) and run it
  --monitor SOCKET       take commands on a Unix socket while the guest runs;
                         send them with `vtvmm monitor SOCKET COMMAND`:
                           snapshot FILE        (as --snapshot; the VM stops)
                           migrate ADDRESS:PORT (as --migrate-to)
                           stats                (exits, offsets)
  --time-transfer offsets|values
                         how a snapshot carries guest time: offsets (default,
                         vtime: the offsets and one capture pair) or values
                         (for comparison: each vCPU's CNTVCT/CNTPCT read at
                         pause and written back per vCPU, as VMMs do today)
  --restore-check        with --restore: set everything up, print the
                         guest-visible timer state read back from KVM, and
                         exit without running the guest
  --stats                print exit counts on stderr at the end
  --kvm PATH             the KVM device (default /dev/kvm)
  --probe                print what this host's KVM offers and exit
  --help                 this text

`vtvmm state show FILE` prints the guest time saved in FILE (a snapshot or a
bare saved-state encoding) as JSON, with the values derived from it marked;
it works on any host, with or without KVM.

Numbers may be decimal or 0x-prefixed hexadecimal.
Exit status: the guest's; 124 on --timeout; 125 when vtvmm itself fails
(bad image, no usable KVM, ...); 2 for a bad command line.
)";

// kHelp with each @NAME@ replaced by the number it stands for, so that the
// text cannot drift from the layout and the defaults.
std::string HelpText() {
  namespace layout = vtime::vmm::layout;
  const MachineConfig defaults;
  const auto address = [](std::uint64_t a) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%08llX", static_cast<unsigned long long>(a));
    return std::string(buf);
  };
  const struct {
    std::string_view name;
    std::string value;
  } values[] = {
      {"@RAW_LOAD@", address(layout::kRawImageLoad)},
      {"@RAM@", address(layout::kRam)},
      {"@UART@", address(layout::kUart)},
      {"@GICD@", address(layout::kGicDist)},
      {"@GICR@", address(layout::kGicRedist)},
      {"@GICC@", address(layout::kGicCpu)},
      {"@TEST_EXIT@", address(layout::kTestExit)},
      {"@MAX_CPUS@", std::to_string(layout::kMaxVcpus)},
      {"@CPUS@", std::to_string(defaults.cpus)},
      {"@MEMORY_MB@", std::to_string(defaults.ram_size >> 20)},
      {"@PVTIME@", address(defaults.pvtime_base)},
      {"@PVTIME_KIB@", std::to_string(layout::kPvtimeSize >> 10)},
      {"@PVTIME_STRIDE@", std::to_string(vtime::pvtime::kRecordSize)},
      {"@VTIMER@", std::to_string(defaults.vtimer_ppi)},
      {"@PTIMER@", std::to_string(defaults.ptimer_ppi)},
  };
  std::string text = kHelp;
  for (const auto& v : values) {
    for (auto at = text.find(v.name); at != std::string::npos;
         at = text.find(v.name, at + v.value.size())) {
      text.replace(at, v.name.size(), v.value);
    }
  }
  return text;
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "vtvmm: %s\nTry 'vtvmm --help'.\n", message.c_str());
  return kUsageError;
}

bool ParseU64(std::string_view s, std::uint64_t* out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool ReadFile(const std::string& path, std::vector<std::uint8_t>* out, std::string* why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *why = std::strerror(errno);
    return false;
  }
  std::uint8_t buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      *why = std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out->insert(out->end(), buf, buf + n);
    if (out->size() > (1ULL << 31)) {
      *why = "larger than 2 GiB";
      ::close(fd);
      return false;
    }
  }
  ::close(fd);
  return true;
}

// `vtvmm state show FILE`: a snapshot's guest time, or a bare state encoding.
int StateShow(const std::string& path) {
  std::vector<std::uint8_t> bytes;
  std::string why;
  if (!ReadFile(path, &bytes, &why)) {
    std::fprintf(stderr, "vtvmm: cannot read '%s': %s\n", path.c_str(), why.c_str());
    return kVmmError;
  }
  auto snapshot = vtime::vmm::DecodeSnapshot(bytes);
  if (snapshot) {
    std::printf("%s\n", vtime::state::ToJson(snapshot->time).c_str());
    return 0;
  }
  auto state = vtime::state::Decode(bytes);
  if (!state) {
    std::fprintf(stderr, "vtvmm: '%s' is neither a snapshot (%s) nor a saved state (%s)\n",
                 path.c_str(), snapshot.error().context.c_str(), state.error().context.c_str());
    return kVmmError;
  }
  std::printf("%s\n", vtime::state::ToJson(*state).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
#if VTIME_HAVE_KVM
  if (argc >= 2 && std::string_view(argv[1]) == "monitor") {
    if (argc < 4) return Usage("usage: vtvmm monitor SOCKET COMMAND...");
    std::string command = argv[3];
    for (int i = 4; i < argc; ++i) command += std::string(" ") + argv[i];
    auto reply = vtime::vmm::MonitorCommand(argv[2], command);
    if (!reply) {
      std::fprintf(stderr, "vtvmm: %s\n", reply.error().Message().c_str());
      return kVmmError;
    }
    std::fputs(reply->c_str(), stdout);
    return reply->rfind("ok", 0) == 0 ? 0 : 1;
  }
#endif
  if (argc >= 2 && std::string_view(argv[1]) == "state") {
    if (argc != 4 || std::string_view(argv[2]) != "show")
      return Usage("usage: vtvmm state show FILE");
    return StateShow(argv[3]);
  }
  MachineConfig config;
  std::string image_path;
  bool stats = false;
  bool probe = false;
  bool no_reboot = false;
  bool restore_check = false;
  std::string restore_path;
  unsigned incoming_port = 0;
  std::optional<std::uint64_t> guest_counter;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    auto value = [&](std::string_view* v) {
      if (i + 1 >= args.size()) return false;
      *v = args[++i];
      return true;
    };
    auto number = [&](std::uint64_t* n) -> bool {
      std::string_view v;
      if (!value(&v)) return false;
      return ParseU64(v, n);
    };
    std::string_view v;
    std::uint64_t n = 0;
    if (a == "--help" || a == "-h") {
      std::fputs(HelpText().c_str(), stdout);
      return 0;
    } else if (a == "--probe") {
      probe = true;
    } else if (a == "--snapshot") {
      if (!value(&v) || v.empty()) return Usage("--snapshot needs a file name");
      config.snapshot_path = std::string(v);
    } else if (a == "--snapshot-after") {
      if (!number(&n) || n == 0 || n > 86'400'000) return Usage("--snapshot-after needs ms");
      config.snapshot_after_ms = static_cast<unsigned>(n);
    } else if (a == "--restore") {
      if (!value(&v) || v.empty()) return Usage("--restore needs a snapshot file");
      restore_path = std::string(v);
    } else if (a == "--policy") {
      if (!value(&v)) return Usage("--policy needs freeze or wallclock");
      auto policy = vtime::state::ParsePolicy(v);
      if (!policy) return Usage(policy.error().context);
      config.policy = *policy;
    } else if (a == "--migrate-to") {
      if (!value(&v) || v.empty()) return Usage("--migrate-to needs ADDRESS:PORT");
      config.migrate_to = std::string(v);
    } else if (a == "--migrate-after") {
      if (!number(&n) || n == 0 || n > 86'400'000) return Usage("--migrate-after needs ms");
      config.migrate_after_ms = static_cast<unsigned>(n);
    } else if (a == "--migrate-fault") {
      if (!value(&v) || (v != "corrupt" && v != "truncate")) {
        return Usage("--migrate-fault needs corrupt or truncate");
      }
      config.migrate_fault = v == "corrupt" ? 1 : 2;
    } else if (a == "--precopy") {
      if (!value(&v) || (v != "on" && v != "off")) return Usage("--precopy needs on or off");
      config.precopy = v == "on";
    } else if (a == "--incoming") {
      if (!number(&n) || n == 0 || n > 65535) return Usage("--incoming needs a port");
      incoming_port = static_cast<unsigned>(n);
    } else if (a == "--monitor") {
      if (!value(&v) || v.empty()) return Usage("--monitor needs a socket path");
      config.monitor_path = std::string(v);
    } else if (a == "--time-transfer") {
      if (!value(&v) || (v != "offsets" && v != "values")) {
        return Usage("--time-transfer needs offsets or values");
      }
      config.time_transfer = v == "offsets" ? MachineConfig::TimeTransfer::kOffsets
                                            : MachineConfig::TimeTransfer::kValues;
    } else if (a == "--restore-check") {
      restore_check = true;
    } else if (a == "--no-reboot") {
      no_reboot = true;
    } else if (a == "--stats") {
      stats = true;
    } else if (a == "--cpus") {
      if (!number(&n) || n == 0 || n > vtime::vmm::layout::kMaxVcpus) {
        return Usage("--cpus needs a number from 1 to " +
                     std::to_string(vtime::vmm::layout::kMaxVcpus));
      }
      config.cpus = static_cast<unsigned>(n);
    } else if (a == "--memory") {
      if (!number(&n) || n < 16 || n > 65536) {
        return Usage("--memory needs a size in MiB from 16 to 65536");
      }
      config.ram_size = n << 20;
    } else if (a == "--irqchip") {
      if (!value(&v) || (v != "kernel" && v != "user")) {
        return Usage("--irqchip needs 'kernel' or 'user'");
      }
      config.irqchip = v == "kernel" ? IrqChip::kKernel : IrqChip::kUser;
    } else if (a == "--counter-offset") {
      if (!number(&n)) return Usage("--counter-offset needs a number of counter ticks");
      config.counter_offset = n;
    } else if (a == "--guest-counter") {
      if (!number(&n)) return Usage("--guest-counter needs a counter value");
      guest_counter = n;
    } else if (a == "--legacy-counter-writes") {
      config.legacy_counter_writes = true;
    } else if (a == "--pvtime") {
      if (!value(&v) || (v != "on" && v != "off")) return Usage("--pvtime needs 'on' or 'off'");
      config.pvtime = v == "on";
    } else if (a == "--pvtime-base") {
      if (!number(&n)) return Usage("--pvtime-base needs an address");
      config.pvtime_base = n;
    } else if (a == "--vtimer-ppi" || a == "--ptimer-ppi") {
      if (!number(&n) || n < 16 || n > 31) return Usage(std::string(a) + " needs a PPI, 16..31");
      (a == "--vtimer-ppi" ? config.vtimer_ppi : config.ptimer_ppi) = static_cast<int>(n);
    } else if (a == "--timeout") {
      if (!number(&n) || n > 86400) return Usage("--timeout needs seconds (up to 86400)");
      config.timeout_s = static_cast<unsigned>(n);
    } else if (a == "--kvm") {
      if (!value(&v)) return Usage("--kvm needs a path");
      config.kvm_path = std::string(v);
    } else if (!a.empty() && a[0] == '-') {
      return Usage("unknown option '" + std::string(a) + "'");
    } else if (image_path.empty()) {
      image_path = std::string(a);
    } else {
      return Usage("more than one IMAGE given ('" + image_path + "' and '" + std::string(a) + "')");
    }
  }
  if (config.vtimer_ppi == config.ptimer_ppi) {
    return Usage("the virtual and physical timers need different PPIs");
  }
  if (config.counter_offset && guest_counter) {
    return Usage("give --counter-offset or --guest-counter, not both");
  }

#if !VTIME_HAVE_KVM
  std::fprintf(stderr,
               "vtvmm: this build has no KVM backend: it runs guests on arm64 Linux hosts with "
               "KVM. From an x86 host, run it in the arm64 lab: lab/run --add "
               "build/aarch64/tools/vtvmm:/bin/vtvmm -- vtvmm ...\n");
  (void)probe;
  (void)no_reboot;
  (void)restore_check;
  (void)stats;
  (void)guest_counter;
  (void)incoming_port;
  return kVmmError;
#else
  if (probe) {
    auto system = vtime::kvm::System::Open(config.kvm_path);
    if (!system) {
      std::fprintf(stderr, "vtvmm: %s\n", system.error().Message().c_str());
      return kVmmError;
    }
    auto caps = system->Probe();
    if (!caps) {
      std::fprintf(stderr, "vtvmm: %s\n", caps.error().Message().c_str());
      return kVmmError;
    }
    std::printf("%scounter frequency: %llu Hz\n", caps->Describe().c_str(),
                static_cast<unsigned long long>(vtime::kvm::ReadCounterFrequency()));
    return 0;
  }
  if (config.snapshot_after_ms != 0 && config.snapshot_path.empty()) {
    return Usage("--snapshot-after needs --snapshot FILE");
  }
  if (restore_check && restore_path.empty()) return Usage("--restore-check needs --restore FILE");
  std::vector<std::uint8_t> image;
  std::string why;
  std::optional<vtime::vmm::MachineSnapshot> snapshot;
  vtime::kvm::Fd incoming_link;
  if (!restore_path.empty()) {
    if (!image_path.empty()) return Usage("give an IMAGE or --restore, not both");
    std::vector<std::uint8_t> bytes;
    if (!ReadFile(restore_path, &bytes, &why)) {
      std::fprintf(stderr, "vtvmm: cannot read snapshot '%s': %s\n", restore_path.c_str(),
                   why.c_str());
      return kVmmError;
    }
    auto decoded = vtime::vmm::DecodeSnapshot(bytes);
    if (!decoded) {
      std::fprintf(stderr, "vtvmm: refusing to restore '%s': %s\n", restore_path.c_str(),
                   decoded.error().Message().c_str());
      return kVmmError;
    }
    snapshot = std::move(*decoded);
    config.restore = &*snapshot;
    no_reboot = true;  // there is no image to boot afresh
    image_path = restore_path;
  } else if (incoming_port != 0) {
    if (!image_path.empty()) return Usage("give an IMAGE or --incoming, not both");
    std::fprintf(stderr, "vtvmm: waiting for a migration on port %u\n", incoming_port);
    // A source that never comes must not leave a destination waiting for
    // ever: --timeout bounds the wait too (default 10 minutes).
    const unsigned wait_ms = (config.timeout_s != 0 ? config.timeout_s : 600) * 1000;
    auto link = vtime::vmm::AcceptOne(static_cast<std::uint16_t>(incoming_port), wait_ms);
    if (!link) {
      std::fprintf(stderr, "vtvmm: %s\n", link.error().Message().c_str());
      return kVmmError;
    }
    auto in = vtime::vmm::ReceiveMigration(link->get(), (64ULL << 30) + (64ULL << 20), 64ULL << 30,
                                           vtime::vmm::PrintTenths("received"));
    auto refuse = [&link](const std::string& reason) {
      (void)vtime::vmm::SendVerdict(link->get(), false, reason);
      std::fprintf(stderr, "vtvmm: refusing the incoming migration: %s\n", reason.c_str());
      return kVmmError;
    };
    if (!in) return refuse(in.error().Message());
    using vtime::vmm::RamContents;
    auto decoded = vtime::vmm::DecodeSnapshot(
        in->snapshot, in->ram ? RamContents::kSentSeparately : RamContents::kIncluded);
    if (!decoded) return refuse(decoded.error().Message());
    if (in->ram) {
      // Pre-copy: RAM came as pages before the snapshot.
      if (in->ram->size() != decoded->ram_size) {
        return refuse("the stream's RAM (" + std::to_string(in->ram->size()) +
                      " bytes) does not match the snapshot's (" +
                      std::to_string(decoded->ram_size) + ")");
      }
      decoded->ram = std::move(*in->ram);
      std::fprintf(stderr, "vtvmm: migration: pre-copy: %llu pages received for %llu of RAM\n",
                   static_cast<unsigned long long>(in->pages_received),
                   static_cast<unsigned long long>(decoded->ram_size / vtime::vmm::kPageSize));
    }
    snapshot = std::move(*decoded);
    config.restore = &*snapshot;
    no_reboot = true;
    image_path = "incoming migration";
    incoming_link = std::move(*link);
  } else {
    if (image_path.empty()) return Usage("no IMAGE given");
    if (!ReadFile(image_path, &image, &why)) {
      std::fprintf(stderr, "vtvmm: cannot read image '%s': %s\n", image_path.c_str(), why.c_str());
      return kVmmError;
    }
  }
  if (guest_counter) {
    // Chosen at start-up: the guest then counts from about N.
    config.counter_offset = vtime::kvm::ReadHostCounter().value - *guest_counter;
  }
  // A guest reset re-creates the VM from scratch with the same configuration,
  // including the counter offset chosen above: guest time runs on.
  vtime::Result<vtime::vmm::RunResult> result = vtime::vmm::RunResult{};
  vtime::vmm::RunStats s;
  for (unsigned boot = 0;; ++boot) {
    auto machine = vtime::vmm::Machine::Create(config, image);
    if (incoming_link.valid()) {
      // The source keeps its VM until this verdict says the restore worked.
      const bool ok = machine.has_value();
      (void)vtime::vmm::SendVerdict(incoming_link.get(), ok,
                                    ok ? "restored" : machine.error().Message());
      incoming_link = vtime::kvm::Fd();
    }
    if (!machine) {
      std::fprintf(stderr, "vtvmm: %s: %s\n", image_path.c_str(),
                   machine.error().Message().c_str());
      return kVmmError;
    }
    if (config.restore != nullptr) {
      auto report = (*machine)->RestoredTimeReport();
      if (report) std::fputs(report->c_str(), restore_check ? stdout : stderr);
      if (restore_check) return report ? 0 : kVmmError;
    }
    result = (*machine)->Run();
    const auto b = (*machine)->stats();
    s.exits += b.exits;
    s.mmio_exits += b.mmio_exits;
    s.intr_exits += b.intr_exits;
    s.irq_line_raises += b.irq_line_raises;
    s.timer_line_rises += b.timer_line_rises;
    s.counter_offset_ioctls += b.counter_offset_ioctls;
    s.counter_value_writes += b.counter_value_writes;
    s.timer_register_writes += b.timer_register_writes;
    if (!result || result->end != vtime::vmm::GuestEnd::kReset || no_reboot) break;
    std::fprintf(stderr, "vtvmm: %s; rebooting (boot %u)\n", result->detail.c_str(), boot + 2);
  }
  if (stats) {
    std::fprintf(stderr,
                 "vtvmm: stats: exits=%llu mmio=%llu intr=%llu irq_line_raises=%llu "
                 "timer_line_rises=%llu counter_offset_ioctls=%llu counter_value_writes=%llu "
                 "timer_register_writes=%llu\n",
                 static_cast<unsigned long long>(s.exits),
                 static_cast<unsigned long long>(s.mmio_exits),
                 static_cast<unsigned long long>(s.intr_exits),
                 static_cast<unsigned long long>(s.irq_line_raises),
                 static_cast<unsigned long long>(s.timer_line_rises),
                 static_cast<unsigned long long>(s.counter_offset_ioctls),
                 static_cast<unsigned long long>(s.counter_value_writes),
                 static_cast<unsigned long long>(s.timer_register_writes));
  }
  if (!result) {
    std::fprintf(stderr, "vtvmm: %s\n", result.error().Message().c_str());
    return kVmmError;
  }
  if (result->end == vtime::vmm::GuestEnd::kError) {
    std::fprintf(stderr, "vtvmm: %s\n", result->detail.c_str());
    return kVmmError;
  }
  if (result->end == vtime::vmm::GuestEnd::kTimeout ||
      result->end == vtime::vmm::GuestEnd::kSnapshot ||
      result->end == vtime::vmm::GuestEnd::kMigrated) {
    std::fprintf(stderr, "vtvmm: %s\n", result->detail.c_str());
  }
  return result->status;
#endif
}
