// vtvmm: the vtime reference VMM. Runs an arm64 guest program under KVM in
// QEMU virt's layout and exits with the guest's status.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/boot.h"
#include "vmm/incoming.h"
#include "vmm/layout.h"
#include "vmm/machine.h"
#include "vmm/migration.h"
#include "vmm/snapshot.h"
#include "vmm/tls.h"
#include "vtime/hex.h"
#include "vtime/parse.h"
#include "vtime/pvtime/record.h"
#include "vtime/state/codec.h"
#include "vtime/state/json.h"
#if VTIME_HAVE_KVM
#include "vtime/backend/kvm.h"
#include "vtime/backend/kvm_hypervisor.h"
#endif
#if VTIME_HAVE_EMU
#include "vtime/backend/emu.h"
#endif

namespace {

using vtime::vmm::IrqChip;
using vtime::vmm::MachineConfig;

constexpr int kUsageError = 2;
constexpr int kVmmError = 125;

constexpr const char* kHelp = R"(Usage: vtvmm [OPTIONS] IMAGE
       vtvmm [OPTIONS] --kernel Image [--initrd FILE] [--append "ARGS"]
       vtvmm [OPTIONS] --restore SNAPSHOT [--policy freeze|wallclock]
       vtvmm [OPTIONS] --incoming ADDRESS:PORT [--policy freeze|wallclock]
       vtvmm --probe
       vtvmm state show FILE
       vtvmm monitor SOCKET COMMAND...

Runs IMAGE, an arm64 guest program, under KVM and exits with its status.
IMAGE is an ELF executable (loaded at its physical addresses, started at its
entry point) or a raw binary (loaded at @RAW_LOAD@ and started at its first
byte). The machine copies QEMU's virt layout, so programs written for it run
unchanged: RAM at @RAM@, PL011 UART at @UART@ (its output goes to
stdout), a PL031 real-time clock at @RTC@ (the host's wall clock), GICv3
distributor @GICD@ and redistributors @GICR@, PSCI 0.2 over HVC, an
arm,armv8-timer; x0 holds the device tree's address.

Linux: --kernel boots an arm64 Linux Image (Debian's /boot/vmlinuz-* on
arm64 is one), placed by its header at the start of RAM plus its
text_offset; the initrd and then the device tree go below the top of RAM
(at most 512 MiB above the kernel), and /chosen carries bootargs, the
initrd's range and stdout-path (the PL011: console=ttyAMA0).

A guest ends by PSCI SYSTEM_OFF (status 0) or by writing a 32-bit status to
the vtime test finisher at @TEST_EXIT@ (vtvmm exits with status & 0xff). PSCI
SYSTEM_RESET reboots it: a new VM, the image loaded afresh, the same counter
offset (guest time runs on), unless --no-reboot (then status 0). A guest
marks a moment for the host's trace by an 8-byte write of its CNTVCT to the
vtime trace marker at @TRACE_MARKER@: vtvmm only counts these (--stats), the
host's kvm:kvm_mmio trace event carries the value. An 8-byte write of a
CNTVCT (offset 0x10) or CNTPCT (0x18) it has just read is a counter probe:
vtvmm checks it against its model of the VM's offsets (and, under --el2, the
vCPU's CNTVOFF_EL2) at that exit; --stats says how many were ahead of it.

Options:
  --kernel FILE          boot FILE as an arm64 Linux Image (refused without
                         the Image header, big-endian, or too big for
                         --memory); instead of IMAGE
  --initrd FILE          load FILE as the initrd/initramfs (linux,initrd-start
                         and -end in /chosen); with IMAGE too
  --append "ARGS"        the kernel command line (/chosen/bootargs, at most
                         2047 bytes); bare-metal programs see it there too
  --dtb-dump FILE        write the device tree this command line would give
                         the guest to FILE and exit 0, without creating a VM
                         (works on any host; inspect it with dtc -I dtb)
  --cpus N               vCPUs, one thread each (1 to @MAX_CPUS@, default @CPUS@;
                         others start powered off and come up with PSCI
                         CPU_ON)
  --memory MB            guest RAM in MiB (default @MEMORY_MB@)
  --el2                  start the vCPUs at EL2 (KVM_ARM_VCPU_HAS_EL2), for a
                         guest hypervisor: needs a kernel with nested
                         virtualization booted with kvm-arm.mode=nested
                         (KVM_CAP_ARM_EL2) and --irqchip kernel. Its EL2
                         time (CNTVOFF_EL2, CNTHCTL_EL2, the EL2 timers) and
                         GIC virtualization state move with snapshots and
                         migrations; a restore or an incoming VM is at vEL2
                         when its saved state says so. On --backend emu
                         (no KVM needed): vtvmm's own GICv3, with the
                         virtualization interface; no snapshots yet
  --irqchip kernel|user  kernel (the default on KVM): in-kernel vGICv3.
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
                         pages it dirtied and its registers. The hand-over:
                         the destination restores the VM and says so; this
                         side gives the go-ahead; the destination starts the
                         guest and says it runs; only then does this vtvmm
                         exit. A destination that is absent, refuses, fails
                         to start the guest or drops the link before the
                         go-ahead leaves the guest running here. If the link
                         fails after the go-ahead, this side cannot know
                         whether the destination runs the guest: it keeps
                         the guest paused and asks an operator (monitor
                         'resume' or 'quit'; SIGCONT or SIGTERM without one)
  --tls-psk FILE         secure migration links with TLS 1.3 and a
                         pre-shared key: FILE holds IDENTITY:HEXKEY lines
                         (QEMU's keys.psk; make one with scripts/mkcreds psk),
                         mode 0600; the source presents the first line, the
                         destination accepts any
  --tls-x509 DIR         secure them with certificates instead: DIR holds
                         ca-cert.pem, server-cert.pem and server-key.pem
                         (destination), client-cert.pem and client-key.pem
                         (source), as QEMU lays them out (scripts/mkcreds
                         x509); each side must prove a certificate from
                         ca-cert.pem
  --insecure             migrate over plain TCP, unauthenticated and
                         unencrypted. One of --tls-psk, --tls-x509 or
                         --insecure is needed to migrate; a destination
                         refuses a peer that fails the handshake before
                         reading any byte of VM state, and keeps waiting
  --precopy on|off       off: stop-and-copy instead (the guest pauses for the
                         whole transfer)
  --migrate-after MS     migrate after MS ms of running
  --migrate-fault corrupt|truncate
                         (testing) damage the migration stream
  --handover-fault STEP:kill|cut
                         (testing) at STEP of the hand-over (before-verdict,
                         after-restored, after-go, after-running) this vtvmm
                         dies (SIGKILL) or cuts its link
  --incoming ADDR:PORT   listen on ADDRESS (numeric IPv4; 0.0.0.0 for every
                         address) and PORT for one migration (up to
                         --timeout, or 10 minutes), restore it (refusing a
                         damaged, impossible or oversized one with the
                         reason, which the source is told) and run it
  --max-memory MB        (--incoming) the most guest RAM a source may send,
                         refused before anything is allocated (default: the
                         --memory value, @MEMORY_MB@)
  --max-cpus N           (--incoming) the most vCPUs a source may send
                         (default 8)
  --monitor SOCKET       take commands on a Unix socket while the guest runs;
                         send them with `vtvmm monitor SOCKET COMMAND`:
                           snapshot FILE        (as --snapshot; the VM stops)
                           migrate ADDRESS:PORT (as --migrate-to)
                           pause MS             (stop the guest for MS ms,
                                                then resume it in place
                                                under --policy, as a
                                                restore would)
                           stats                (exits, offsets)
                           resume | quit        (only while a migration's
                                                hand-over is in doubt: the
                                                destination does not run the
                                                guest, or it does)
  --timeline FILE        record the guest's offset timeline (every change of
                         its time: start, offsets, pauses, on which host) in
                         FILE, written when the guest runs, after each pause
                         and at the end; snapshots and migrations carry it,
                         so the destination's FILE holds the guest's whole
                         life. vtime-trace maps and merges traces with it.
  --timeline-host NAME   this host's name in the timeline (default: the host
                         name and the start of its boot id)
  --time-transfer offsets|values
                         how a snapshot carries guest time: offsets (default,
                         vtime: the offsets and one capture pair) or values
                         (for comparison: each vCPU's CNTVCT/CNTPCT read at
                         pause and written back per vCPU, as VMMs do today)
  --restore-check        with --restore: set everything up, print the
                         guest-visible timer state read back from KVM, and
                         exit without running the guest
  --console pl011|virtio which device carries the console (default pl011).
                         virtio adds a virtio-mmio console at @VIRTIO@ (SPI
                         16, Linux's hvc0; its driver is virtio_mmio, a
                         module in Debian's kernels), which then takes the
                         console input; with --kernel, console=hvc0 is added
                         to the command line unless it names a console. The
                         PL011 stays for early output. Boot messages cost one
                         exit per batch of up to 16 bytes instead of two per
                         byte. A restored or incoming VM keeps its own
  --console-input on|off stdin to the guest through the console's receive side
                         (default on; the PL011's interrupt is SPI 1). When stdin and
                         stdout are a terminal, every key goes to the guest
                         as typed (Ctrl-C too); Ctrl-A x quits vtvmm, Ctrl-A
                         Ctrl-A sends one Ctrl-A. From a pipe, input is read
                         as the guest takes it, so none is dropped
  --stats                print exit counts on stderr at the end
  --backend kvm|emu      what runs the guest. kvm (the default where vtvmm
                         is built for arm64): Linux KVM. emu (the default
                         elsewhere): an emulated CPU (Unicorn) on any host,
                         with every counter and timer access trapped into
                         vtime's model; --irqchip user only
  --counter-frequency HZ the guest's counter frequency under --backend emu
                         (default 1000000000; a restore or an incoming VM
                         keeps the frequency it was saved at)
  --kvm PATH             the KVM device (default /dev/kvm)
  --probe                print what this host's backend offers and exit
  --help                 this text

`vtvmm state show FILE` prints the guest time saved in FILE (a snapshot or a
bare saved-state encoding) as JSON, with the values derived from it marked;
it works on any host, with or without KVM.

Numbers may be decimal or 0x-prefixed hexadecimal.
Exit status: the guest's; 124 on --timeout; 125 when vtvmm itself fails
(bad image, no usable KVM, ...); 2 for a bad command line.
)";

// --handover-fault: at which step of the hand-over this vtvmm fails, and how.
struct HandoverFault {
  vtime::vmm::HandoverStep step = vtime::vmm::HandoverStep::kBeforeVerdict;
  bool kill = false;  ///< else: cut the link
};

std::optional<HandoverFault> ParseHandoverFault(std::string_view v) {
  using vtime::vmm::HandoverStep;
  const auto colon = v.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string_view step = v.substr(0, colon), action = v.substr(colon + 1);
  HandoverFault f;
  if (step == "before-verdict") {
    f.step = HandoverStep::kBeforeVerdict;
  } else if (step == "after-restored") {
    f.step = HandoverStep::kAfterRestored;
  } else if (step == "after-go") {
    f.step = HandoverStep::kAfterGo;
  } else if (step == "after-running") {
    f.step = HandoverStep::kAfterRunning;
  } else {
    return std::nullopt;
  }
  if (action != "kill" && action != "cut") return std::nullopt;
  f.kill = action == "kill";
  return f;
}

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
      {"@VIRTIO@", address(layout::kVirtioConsole)},
      {"@RTC@", address(layout::kRtc)},
      {"@GICD@", address(layout::kGicDist)},
      {"@GICR@", address(layout::kGicRedist)},
      {"@GICC@", address(layout::kGicCpu)},
      {"@TEST_EXIT@", address(layout::kTestExit)},
      {"@TRACE_MARKER@", address(layout::kTraceMarker)},
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

// A snapshot's guest and a --pvtime this vtvmm was given that disagree: the
// guest found (or did not find) the PV-time service at boot and cannot be
// told otherwise now. Empty when they agree or --pvtime was not given.
std::string PvtimeConflict(const vtime::vmm::MachineSnapshot& snap, bool given, bool pvtime) {
  if (!given || snap.pvtime == pvtime) return {};
  return snap.pvtime
             ? "its guest uses PV stolen time (records at " + vtime::Hex(snap.pvtime_base) +
                   "), and this vtvmm was started with --pvtime off: a guest that found the "
                   "PV-time service at boot would lose its steal accounting"
             : "its guest runs without PV stolen time, and this vtvmm was started with "
               "--pvtime on: the guest would never find the service";
}

// The backend a run uses (--backend): KVM, or the emulated one.
vtime::Result<std::unique_ptr<vtime::backend::Hypervisor>> MakeBackend(
    const std::string& name, const std::string& kvm_path,
    std::optional<std::uint64_t> counter_frequency) {
  if (name == "kvm") {
    if (counter_frequency) {
      return vtime::Fail(vtime::ErrorCode::kInvalidArgument,
                         "--counter-frequency is for --backend emu: under KVM the guest's "
                         "counter runs at the host's frequency");
    }
#if VTIME_HAVE_KVM
    return vtime::kvm::CreateKvmHypervisor(kvm_path);
#else
    (void)kvm_path;
    return vtime::Fail(vtime::ErrorCode::kUnsupported,
                       "this build has no KVM backend: it runs guests under KVM on arm64 Linux "
                       "hosts. Use --backend emu here, or run it in the arm64 lab: lab/run --add "
                       "build/aarch64/tools/vtvmm:/bin/vtvmm -- vtvmm ...");
#endif
  }
#if VTIME_HAVE_EMU
  vtime::emu::EmuOptions options;
  if (counter_frequency) options.counter_frequency_hz = *counter_frequency;
  return vtime::emu::CreateEmuHypervisor(options);
#else
  return vtime::Fail(vtime::ErrorCode::kUnsupported,
                     "this build has no emulated backend (vtvmm built without libunicorn-dev)");
#endif
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "vtvmm: %s\nTry 'vtvmm --help'.\n", message.c_str());
  return kUsageError;
}

using vtime::ParseU64;

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

// --dtb-dump: the device tree the guest would get, without a VM. The image
// and initrd are placed in scratch memory exactly as a boot places them,
// since the tree says where the initrd went.
int DumpDeviceTree(const MachineConfig& config, const std::string& image_path,
                   const std::string& out) {
  std::vector<std::uint8_t> dtb;
  if (image_path.empty()) {
    if (!config.initrd.empty()) return Usage("--dtb-dump with --initrd needs IMAGE or --kernel");
    auto tree = vtime::vmm::BuildDeviceTree(vtime::vmm::DescribeMachine(config));
    if (!tree) {
      std::fprintf(stderr, "vtvmm: %s\n", tree.error().Message().c_str());
      return kVmmError;
    }
    dtb = std::move(*tree);
  } else {
    std::vector<std::uint8_t> image;
    std::string why;
    if (!ReadFile(image_path, &image, &why)) {
      std::fprintf(stderr, "vtvmm: cannot read image '%s': %s\n", image_path.c_str(), why.c_str());
      return kVmmError;
    }
    auto ram = vtime::vmm::GuestMemory::Create(config.ram_size, "scratch RAM for --dtb-dump");
    if (!ram) {
      std::fprintf(stderr, "vtvmm: %s\n", ram.error().Message().c_str());
      return kVmmError;
    }
    auto boot =
        vtime::vmm::LoadBoot(vtime::vmm::BootRequest{image, config.image_format, config.initrd,
                                                     vtime::vmm::DescribeMachine(config)},
                             vtime::vmm::RamView{vtime::vmm::layout::kRam, ram->writable()});
    if (!boot) {
      std::fprintf(stderr, "vtvmm: %s: %s\n", image_path.c_str(), boot.error().Message().c_str());
      return kVmmError;
    }
    dtb = std::move(boot->dtb);
  }
  std::FILE* f = std::fopen(out.c_str(), "wb");
  if (f == nullptr) {
    std::fprintf(stderr, "vtvmm: cannot create '%s': %s\n", out.c_str(), std::strerror(errno));
    return kVmmError;
  }
  const bool written = std::fwrite(dtb.data(), 1, dtb.size(), f) == dtb.size();
  if (std::fclose(f) != 0 || !written) {
    std::fprintf(stderr, "vtvmm: writing '%s' failed\n", out.c_str());
    return kVmmError;
  }
  std::fprintf(stderr, "vtvmm: device tree of %zu bytes written to %s\n", dtb.size(), out.c_str());
  return 0;
}

// The test fault, as a hook the hand-over calls at each step.
vtime::vmm::HandoverHook HookFor(std::optional<HandoverFault> fault) {
  if (!fault) return {};
  return [f = *fault](vtime::vmm::HandoverStep step, vtime::vmm::Link& link) {
    if (step != f.step) return;
    std::fprintf(stderr, "vtvmm: test fault: %s at %s\n", f.kill ? "dying" : "cutting the link",
                 vtime::vmm::NameOf(step).data());
    if (f.kill) ::raise(SIGKILL);
    // A cut: the connection goes (the peer sees it end) and this side's
    // next read or write on it fails, as if the network had broken.
    const int dead = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ::dup2(dead, link.fd());
    ::close(dead);
  };
}

}  // namespace

int main(int argc, char** argv) {
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
  if (argc >= 2 && std::string_view(argv[1]) == "state") {
    if (argc != 4 || std::string_view(argv[2]) != "show")
      return Usage("usage: vtvmm state show FILE");
    return StateShow(argv[3]);
  }
  MachineConfig config;
  std::string kvm_path = "/dev/kvm";
  // The backend: KVM where this build has it, else the emulated one.
  std::string backend_name = VTIME_HAVE_KVM != 0 ? "kvm" : "emu";
  std::optional<std::uint64_t> counter_frequency;
  std::optional<IrqChip> irqchip_given;
  std::string image_path;
  bool stats = false;
  bool probe = false;
  bool no_reboot = false;
  bool restore_check = false;
  std::string restore_path;
  std::string incoming;
  bool insecure = false;
  bool pvtime_given = false;  // --pvtime on|off said explicitly
  std::optional<vtime::vmm::TlsConfig> tls;
  std::optional<std::uint64_t> max_memory;
  unsigned max_cpus = 8;
  std::optional<HandoverFault> handover_fault;
  std::optional<std::uint64_t> guest_counter;
  std::string kernel_path;
  std::string initrd_path;
  bool console_given = false;
  std::string dtb_dump;
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
    } else if (a == "--kernel") {
      if (!value(&v) || v.empty()) return Usage("--kernel needs an arm64 Linux Image file");
      kernel_path = std::string(v);
    } else if (a == "--initrd") {
      if (!value(&v) || v.empty()) return Usage("--initrd needs a file");
      initrd_path = std::string(v);
    } else if (a == "--append") {
      if (!value(&v)) return Usage("--append needs the kernel command line");
      config.bootargs = std::string(v);
    } else if (a == "--dtb-dump") {
      if (!value(&v) || v.empty()) return Usage("--dtb-dump needs a file name");
      dtb_dump = std::string(v);
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
      if (!value(&v) || v.empty()) return Usage("--incoming needs ADDRESS:PORT");
      if (v.find(':') == std::string_view::npos) {
        return Usage("--incoming needs ADDRESS:PORT, the address to listen on too (0.0.0.0:" +
                     std::string(v) + " for every address)");
      }
      incoming = std::string(v);
    } else if (a == "--insecure") {
      insecure = true;
    } else if (a == "--tls-psk" || a == "--tls-x509") {
      if (!value(&v) || v.empty()) return Usage(std::string(a) + " needs a path");
      if (tls) return Usage("give one of --tls-psk or --tls-x509");
      tls = vtime::vmm::TlsConfig{a == "--tls-psk" ? vtime::vmm::TlsConfig::Kind::kPsk
                                                   : vtime::vmm::TlsConfig::Kind::kX509,
                                  std::string(v)};
    } else if (a == "--max-memory") {
      if (!number(&n) || n < (vtime::vmm::layout::kMinRam >> 20) ||
          n > (vtime::vmm::layout::kMaxRam >> 20)) {
        return Usage("--max-memory needs a size in MiB from " +
                     std::to_string(vtime::vmm::layout::kMinRam >> 20) + " to " +
                     std::to_string(vtime::vmm::layout::kMaxRam >> 20));
      }
      max_memory = n << 20;
    } else if (a == "--max-cpus") {
      if (!number(&n) || n == 0 || n > vtime::vmm::layout::kMaxVcpus) {
        return Usage("--max-cpus needs a number from 1 to " +
                     std::to_string(vtime::vmm::layout::kMaxVcpus));
      }
      max_cpus = static_cast<unsigned>(n);
    } else if (a == "--handover-fault") {
      if (!value(&v)) return Usage("--handover-fault needs STEP:kill or STEP:cut");
      auto fault = ParseHandoverFault(v);
      if (!fault) return Usage("--handover-fault: '" + std::string(v) + "': expected STEP:kill or "
                               "STEP:cut, STEP one of before-verdict, after-restored, after-go, "
                               "after-running");
      handover_fault = *fault;
    } else if (a == "--monitor") {
      if (!value(&v) || v.empty()) return Usage("--monitor needs a socket path");
      config.monitor_path = std::string(v);
    } else if (a == "--timeline") {
      if (!value(&v) || v.empty()) return Usage("--timeline needs a file name");
      config.timeline_path = std::string(v);
    } else if (a == "--timeline-host") {
      if (!value(&v) || v.empty() || v.size() > 256) {
        return Usage("--timeline-host needs a name of 1 to 256 bytes");
      }
      config.timeline_host = std::string(v);
    } else if (a == "--time-transfer") {
      if (!value(&v) || (v != "offsets" && v != "values")) {
        return Usage("--time-transfer needs offsets or values");
      }
      config.time_transfer = v == "offsets" ? MachineConfig::TimeTransfer::kOffsets
                                            : MachineConfig::TimeTransfer::kValues;
    } else if (a == "--restore-check") {
      restore_check = true;
    } else if (a == "--console") {
      if (!value(&v) || (v != "pl011" && v != "virtio")) {
        return Usage("--console needs pl011 or virtio");
      }
      config.console =
          v == "virtio" ? MachineConfig::Console::kVirtio : MachineConfig::Console::kPl011;
      console_given = true;
    } else if (a == "--console-input") {
      if (!value(&v) || (v != "on" && v != "off")) return Usage("--console-input needs on or off");
      config.console_input = v == "on";
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
      if (!number(&n) || n < (vtime::vmm::layout::kMinRam >> 20) ||
          n > (vtime::vmm::layout::kMaxRam >> 20)) {
        return Usage("--memory needs a size in MiB from " +
                     std::to_string(vtime::vmm::layout::kMinRam >> 20) + " to " +
                     std::to_string(vtime::vmm::layout::kMaxRam >> 20));
      }
      config.ram_size = n << 20;
    } else if (a == "--irqchip") {
      if (!value(&v) || (v != "kernel" && v != "user")) {
        return Usage("--irqchip needs 'kernel' or 'user'");
      }
      irqchip_given = v == "kernel" ? IrqChip::kKernel : IrqChip::kUser;
    } else if (a == "--el2") {
      config.el2 = true;
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
      pvtime_given = true;
    } else if (a == "--pvtime-base") {
      if (!number(&n)) return Usage("--pvtime-base needs an address");
      config.pvtime_base = n;
    } else if (a == "--vtimer-ppi" || a == "--ptimer-ppi") {
      if (!number(&n) || n < 16 || n > 31) return Usage(std::string(a) + " needs a PPI, 16..31");
      (a == "--vtimer-ppi" ? config.vtimer_ppi : config.ptimer_ppi) = static_cast<int>(n);
    } else if (a == "--timeout") {
      if (!number(&n) || n > 86400) return Usage("--timeout needs seconds (up to 86400)");
      config.timeout_s = static_cast<unsigned>(n);
    } else if (a == "--backend") {
      if (!value(&v) || (v != "kvm" && v != "emu")) return Usage("--backend needs kvm or emu");
      backend_name = std::string(v);
    } else if (a == "--counter-frequency") {
      if (!number(&n) || n == 0 || n > 16'000'000'000ULL) {
        return Usage("--counter-frequency needs a frequency in Hz, 1 to 16000000000");
      }
      counter_frequency = n;
    } else if (a == "--kvm") {
      if (!value(&v)) return Usage("--kvm needs a path");
      kvm_path = std::string(v);
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
  if (!kernel_path.empty()) {
    if (!image_path.empty()) return Usage("give an IMAGE or --kernel, not both");
    image_path = kernel_path;
    config.image_format = vtime::vmm::ImageFormat::kLinuxImage;
  }
  if (config.console == MachineConfig::Console::kVirtio && !kernel_path.empty() &&
      config.bootargs.find("console=") == std::string::npos) {
    // Linux's hvc driver is not a DT console (stdout-path names the PL011).
    config.bootargs += config.bootargs.empty() ? "console=hvc0" : " console=hvc0";
  }
  // Linux on arm64 keeps at most 2048 bytes of command line, its NUL included.
  if (config.bootargs.size() > 2047) {
    return Usage("--append: " + std::to_string(config.bootargs.size()) +
                 " bytes; the kernel takes at most 2047");
  }
  if ((!initrd_path.empty() || !config.bootargs.empty() || !dtb_dump.empty() ||
       console_given) &&
      (!restore_path.empty() || !incoming.empty())) {
    return Usage(
        "--initrd, --append, --console and --dtb-dump are for booting; a restored or incoming "
        "VM keeps its own");
  }
  std::vector<std::uint8_t> initrd;
  if (!initrd_path.empty()) {
    std::string why;
    if (!ReadFile(initrd_path, &initrd, &why)) {
      std::fprintf(stderr, "vtvmm: cannot read initrd '%s': %s\n", initrd_path.c_str(),
                   why.c_str());
      return kVmmError;
    }
    if (initrd.empty()) {
      std::fprintf(stderr, "vtvmm: initrd '%s' is empty\n", initrd_path.c_str());
      return kVmmError;
    }
    config.initrd = initrd;
  }
  // The emulated backend has only vtvmm's own GIC, which is then the default.
  config.irqchip = irqchip_given           ? *irqchip_given
                   : backend_name == "emu" ? IrqChip::kUser
                                           : IrqChip::kKernel;
  if (!dtb_dump.empty()) return DumpDeviceTree(config, image_path, dtb_dump);

  auto make_backend = [&] {
    // The emulated counter can run at any frequency: a restored guest's
    // runs at its snapshot's unless --counter-frequency says otherwise.
    std::optional<std::uint64_t> hz = counter_frequency;
    if (!hz && backend_name == "emu" && config.restore != nullptr) {
      hz = config.restore->time.counter_frequency_hz;
    }
    return MakeBackend(backend_name, kvm_path, hz);
  };
  if (probe) {
    auto backend = make_backend();
    if (!backend) {
      std::fprintf(stderr, "vtvmm: %s\n", backend.error().Message().c_str());
      return kVmmError;
    }
    std::printf("%scounter frequency: %llu Hz\n", (*backend)->Describe().c_str(),
                static_cast<unsigned long long>((*backend)->Clock().FrequencyHz()));
    return 0;
  }
  if (config.snapshot_after_ms != 0 && config.snapshot_path.empty()) {
    return Usage("--snapshot-after needs --snapshot FILE");
  }
  if (config.monitor_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    std::fprintf(stderr,
                 "vtvmm: --monitor '%s': the path is %zu bytes; a Unix socket's path holds at "
                 "most %zu: choose a shorter one\n",
                 config.monitor_path.c_str(), config.monitor_path.size(),
                 sizeof(sockaddr_un{}.sun_path) - 1);
    return kVmmError;
  }
  if (restore_check && restore_path.empty()) return Usage("--restore-check needs --restore FILE");
  std::vector<std::uint8_t> image;
  std::string why;
  std::optional<vtime::vmm::MachineSnapshot> snapshot;
  // A migration's destination: the VM received, its RAM, and the hand-over.
  std::unique_ptr<vtime::vmm::MigrationDestination> incoming_vm;
  vtime::vmm::DestinationHandover* destination = nullptr;
  std::optional<vtime::vmm::GuestMemory> incoming_ram;
  // How migration links are secured: plain TCP only when asked for.
  vtime::vmm::SecureLink secure_link;
  std::string secure_name;
  if (insecure && tls) return Usage("give --insecure or TLS credentials, not both");
  vtime::vmm::SecureLink client_link;
  if (insecure) {
    secure_link = [](vtime::Fd fd) -> vtime::Result<std::unique_ptr<vtime::vmm::Link>> {
      return vtime::vmm::PlainLink(std::move(fd));
    };
    client_link = secure_link;
    secure_name = "plain TCP: --insecure, anyone who reaches it can send a VM";
  } else if (tls) {
    using vtime::vmm::TlsRole;
    constexpr unsigned kHandshakeMs = 10'000;
    // Each role loads only its own credentials, when this vtvmm needs it.
    auto link_for = [&](TlsRole role) -> vtime::Result<vtime::vmm::SecureLink> {
      auto creds = vtime::vmm::LoadTlsCredentials(*tls, role);
      if (!creds) return tl::unexpected(creds.error());
      if (role == TlsRole::kServer) {
        secure_name = "TLS 1.3, " + vtime::vmm::DescribeTlsCredentials(**creds);
      }
      return vtime::vmm::SecureLink(
          [creds = *creds](vtime::Fd fd) -> vtime::Result<std::unique_ptr<vtime::vmm::Link>> {
            return vtime::vmm::TlsHandshake(std::move(fd), *creds, kHandshakeMs);
          });
    };
    if (!incoming.empty()) {
      auto server = link_for(TlsRole::kServer);
      if (!server) {
        std::fprintf(stderr, "vtvmm: %s\n", server.error().Message().c_str());
        return kVmmError;
      }
      secure_link = *server;
    }
    if (!config.migrate_to.empty() || !config.monitor_path.empty()) {
      auto client = link_for(TlsRole::kClient);
      if (!client && !config.migrate_to.empty()) {
        std::fprintf(stderr, "vtvmm: %s\n", client.error().Message().c_str());
        return kVmmError;
      }
      if (client) {
        client_link = *client;
      } else {
        // Only a monitor's migrate would need them: it gets the reason then.
        client_link =
            [why = client.error()](vtime::Fd) -> vtime::Result<std::unique_ptr<vtime::vmm::Link>> {
          return tl::unexpected(why);
        };
      }
    }
  }
  if (!incoming.empty() && !secure_link) {
    return Usage("--incoming needs credentials: --tls-psk FILE or --tls-x509 DIR (or --insecure "
                 "for plain TCP)");
  }
  if (!config.migrate_to.empty() && !client_link) {
    return Usage("--migrate-to needs credentials: --tls-psk FILE or --tls-x509 DIR (or "
                 "--insecure for plain TCP)");
  }
  config.secure_link = client_link;
  config.handover_hook = HookFor(handover_fault);
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
    if (auto conflict = PvtimeConflict(*decoded, pvtime_given, config.pvtime); !conflict.empty()) {
      std::fprintf(stderr, "vtvmm: refusing to restore '%s': %s\n", restore_path.c_str(),
                   conflict.c_str());
      return kVmmError;
    }
    snapshot = std::move(*decoded);
    config.restore = &*snapshot;
    no_reboot = true;  // there is no image to boot afresh
    image_path = restore_path;
  } else if (!incoming.empty()) {
    if (!image_path.empty()) return Usage("give an IMAGE or --incoming, not both");
    if (auto on = vtime::vmm::ParseEndpoint(incoming); !on) {
      return Usage("--incoming: " + on.error().context);
    }
    const std::uint64_t ram_limit = max_memory ? *max_memory : config.ram_size;
    auto in = vtime::vmm::MigrationDestination::Receive(vtime::vmm::MigrationDestination::Options{
        .endpoint = incoming,
        .secure_link = secure_link,
        .security = secure_name,
        // --timeout bounds the wait too (default 10 minutes).
        .wait_ms = (config.timeout_s != 0 ? config.timeout_s : 600) * 1000,
        .limits = {ram_limit, max_cpus, vtime::vmm::MaxRamlessSnapshotBytes(max_cpus)},
        .hook = HookFor(handover_fault),
        .refuse_if = [&](const vtime::vmm::MachineSnapshot& snap) {
          return PvtimeConflict(snap, pvtime_given, config.pvtime);
        }});
    if (!in) {
      std::fprintf(stderr, "vtvmm: %s\n", in.error().Message().c_str());
      return kVmmError;
    }
    incoming_vm = std::move(*in);
    if (auto ram = incoming_vm->TakeRam()) incoming_ram.emplace(std::move(*ram));
    destination = &incoming_vm->handover();
    config.restore = &incoming_vm->snapshot();
    no_reboot = true;
    image_path = "incoming migration";
    config.on_started = [destination] {
      if (auto r = destination->Running(); !r) {
        std::fprintf(stderr,
                     "vtvmm: the guest runs here, but the source could not be told (%s): it "
                     "stays paused, in doubt, until an operator tells it 'quit'\n",
                     r.error().Message().c_str());
      }
    };
  } else {
    if (image_path.empty()) return Usage("no IMAGE given");
    if (!ReadFile(image_path, &image, &why)) {
      std::fprintf(stderr, "vtvmm: cannot read image '%s': %s\n", image_path.c_str(), why.c_str());
      return kVmmError;
    }
  }
  if (guest_counter) {
    // Chosen at start-up: the guest then counts from about N.
    auto backend = make_backend();
    if (!backend) {
      std::fprintf(stderr, "vtvmm: %s\n", backend.error().Message().c_str());
      return kVmmError;
    }
    config.counter_offset = (*backend)->Clock().Count().value - *guest_counter;
  }
  // A guest reset re-creates the VM from scratch with the same configuration,
  // including the counter offset chosen above: guest time runs on.
  vtime::Result<vtime::vmm::RunResult> result = vtime::vmm::RunResult{};
  vtime::vmm::RunStats s;
  for (unsigned boot = 0;; ++boot) {
    auto backend = make_backend();
    auto machine = backend ? vtime::vmm::Machine::Create(std::move(*backend), config, image,
                                                         std::move(incoming_ram))
                           : tl::unexpected(backend.error());
    incoming_ram.reset();
    if (!machine) {
      if (destination) destination->Refuse(machine.error().Message());
      std::fprintf(stderr, "vtvmm: %s: %s\n", image_path.c_str(),
                   machine.error().Message().c_str());
      return kVmmError;
    }
    if (destination) {
      // The VM is built here; the source keeps its copy, paused, until it
      // gives the go-ahead, and this side runs the guest only after it.
      if (auto go = destination->OfferAndAwaitGo(); !go) {
        std::fprintf(stderr, "vtvmm: not running the incoming guest: %s; it stays with the source\n",
                     go.error().Message().c_str());
        return kVmmError;
      }
    }
    if (config.restore != nullptr) {
      auto report = (*machine)->RestoredTimeReport();
      if (report) std::fputs(report->c_str(), restore_check ? stdout : stderr);
      if (restore_check) return report ? 0 : kVmmError;
    }
    result = (*machine)->Run();
    if (destination) {
      if (!result || !result->started) {
        const std::string failure = !result ? result.error().Message() : result->detail;
        destination->FailedToStart(failure);
        std::fprintf(stderr,
                     "vtvmm: could not start the incoming guest (%s); the source resumes it\n",
                     failure.c_str());
        return kVmmError;
      }
      destination = nullptr;
      incoming_vm.reset();
      config.on_started = nullptr;
    }
    const auto b = (*machine)->stats();
    s.exits += b.exits;
    s.mmio_exits += b.mmio_exits;
    s.intr_exits += b.intr_exits;
    s.irq_line_raises += b.irq_line_raises;
    s.irq_line_kicks += b.irq_line_kicks;
    s.timer_line_rises += b.timer_line_rises;
    s.counter_offset_ioctls += b.counter_offset_ioctls;
    s.counter_value_writes += b.counter_value_writes;
    s.timer_register_writes += b.timer_register_writes;
    s.trace_marks += b.trace_marks;
    s.steal = b.steal;    // the last boot's
    s.probes = b.probes;  // the last boot's
    if (!result || result->end != vtime::vmm::GuestEnd::kReset || no_reboot) break;
    std::fprintf(stderr, "vtvmm: %s; rebooting (boot %u)\n", result->detail.c_str(), boot + 2);
  }
  if (stats) {
    std::fprintf(stderr,
                 "vtvmm: stats: exits=%llu mmio=%llu intr=%llu irq_line_raises=%llu "
                 "irq_line_kicks=%llu timer_line_rises=%llu counter_offset_ioctls=%llu counter_value_writes=%llu "
                 "timer_register_writes=%llu trace_marks=%llu\n",
                 static_cast<unsigned long long>(s.exits),
                 static_cast<unsigned long long>(s.mmio_exits),
                 static_cast<unsigned long long>(s.intr_exits),
                 static_cast<unsigned long long>(s.irq_line_raises),
                 static_cast<unsigned long long>(s.irq_line_kicks),
                 static_cast<unsigned long long>(s.timer_line_rises),
                 static_cast<unsigned long long>(s.counter_offset_ioctls),
                 static_cast<unsigned long long>(s.counter_value_writes),
                 static_cast<unsigned long long>(s.timer_register_writes),
                 static_cast<unsigned long long>(s.trace_marks));
    if (!s.probes.empty()) std::fprintf(stderr, "vtvmm: probes:%s\n", s.probes.c_str());
    std::fprintf(stderr, "vtvmm: steal:%s\n", s.steal.c_str());
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
}
