// One emulated vCPU: a Unicorn arm64 engine, hooked so that vtime's model
// answers every counter and timer access, the VMM answers every access
// outside RAM, and this file answers HVC/SMC (PSCI, SMCCC, PV time).
//
// Unicorn 2.0.1's rules, measured (see the emu facts in the design notes):
//  - uc_emu_stop is only ever called from the block hook, before a block's
//    first instruction. A stop requested mid-block takes effect after the
//    block's next memory access and restarts the block, running part of it
//    twice. Every other hook and thread only sets flags (attention_).
//  - Unicorn vectors no exception into the guest and has no IRQ input: this
//    file takes exceptions itself, only while the engine is stopped.
//  - The interrupt hook runs between blocks (precise); the system-register
//    and MMIO callbacks run inside a block (their PC is imprecise), so an
//    UNDEF is left to Unicorn's own decode, which reports it precisely.
//
// Known limits: guest EL0 is not supported (taking an exception from EL0
// needs QEMU's cached hflags rebuilt, which Unicorn 2.0.1 cannot do from
// outside); the exclusive monitor is per engine, so LDXR/STXR between vCPUs
// are not atomic with respect to each other; a data abort (guest page-table
// fault) stops the vCPU with kOther, as its syndrome is not available.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <string>
#include <thread>

#include "backend/emu/emu_internal.h"
#include "vtime/backend/registers.h"
#include "vtime/hex.h"
#include "vtime/pvtime/record.h"

namespace vtime::emu {
namespace {

namespace regs = backend::regs;

static_assert(std::endian::native == std::endian::little,
              "guest memory is little endian and written in place");
// The model's output lines, bit i for TimerId i, are the timer_line bits.
static_assert(backend::timer_line::kHypVirtual ==
              1U << static_cast<unsigned>(arch::TimerId::kEl2Virtual));
static_assert(backend::timer_line::kHypPhysical ==
              1U << static_cast<unsigned>(arch::TimerId::kEl2Physical));

constexpr std::uint64_t kNever = ~std::uint64_t{0};
// How often the block hook reads the host clock (see OnBlock).
constexpr unsigned kBlocksPerClockCheck = 16;
// Where uc_emu_start would stop on its own; no guest runs code at 0.
constexpr std::uint64_t kUntil = 0;
// The MMIO gaps cover the IPA space up to here (40 bits, as KVM's default).
constexpr std::uint64_t kIpaLimit = std::uint64_t{1} << 40;

// PSTATE bits.
constexpr std::uint64_t kPstateSp = 1U << 0;
constexpr std::uint64_t kPstateI = 1U << 7;
constexpr std::uint64_t kPstateEl1h = 0x5;
constexpr std::uint64_t kPstateEl2h = 0x9;
constexpr std::uint64_t kPstateDaif = 0x3c0;
constexpr std::uint64_t kPstateIl = 1ULL << 20;

// HCR_EL2 bits this file acts on.
constexpr std::uint64_t kHcrImo = 1ULL << 4;
constexpr std::uint64_t kHcrRw = 1ULL << 31;
constexpr std::uint64_t kHcrTge = 1ULL << 27;
constexpr std::uint64_t kHcrE2h = 1ULL << 34;
constexpr std::uint64_t kHcrNv = 1ULL << 42;

// The trampoline page (see SwitchEl): just past the IPA space the VMM
// lays out, so that no guest address reaches it. It holds an ERET and the
// NOP the ERET returns to, where uc_emu_start stops.
constexpr std::uint64_t kTrampoline = kIpaLimit;
constexpr std::uint64_t kTrampolineSize = 0x1000;
constexpr std::uint32_t kInsnEret = 0xd69f03e0;
constexpr std::uint32_t kInsnNop = 0xd503201f;

// Unicorn's exception numbers as UC_HOOK_INTR gets them (QEMU's EXCP_*).
constexpr std::uint32_t kExcpUdef = 1;
constexpr std::uint32_t kExcpSwi = 2;
constexpr std::uint32_t kExcpBkpt = 7;
constexpr std::uint32_t kExcpHvc = 11;
constexpr std::uint32_t kExcpSmc = 13;

// ESR_EL1 of the synchronous exceptions taken here: EC in [31:26], IL.
constexpr std::uint64_t kEsrIl = 1U << 25;
constexpr std::uint64_t EsrOf(std::uint64_t ec) { return (ec << 26) | kEsrIl; }
constexpr std::uint64_t kEcUnknown = 0x00;
constexpr std::uint64_t kEcSvc64 = 0x15;
constexpr std::uint64_t kEcBrk64 = 0x3c;
constexpr std::uint64_t kEcHvc64 = 0x16;

// SMCCC and PSCI function ids (SMCCC 1.1, PSCI 1.0, ARM DEN0057A).
constexpr std::uint32_t kSmcccVersion = 0x80000000;
constexpr std::uint32_t kSmcccArchFeatures = 0x80000001;
constexpr std::uint32_t kPsciVersion = 0x84000000;
constexpr std::uint32_t kPsciCpuSuspend = 0x84000001;
constexpr std::uint32_t kPsciCpuOff = 0x84000002;
constexpr std::uint32_t kPsciCpuOn = 0x84000003;
constexpr std::uint32_t kPsciAffinityInfo = 0x84000004;
constexpr std::uint32_t kPsciMigrateInfoType = 0x84000006;
constexpr std::uint32_t kPsciSystemOff = 0x84000008;
constexpr std::uint32_t kPsciSystemReset = 0x84000009;
constexpr std::uint32_t kPsciFeatures = 0x8400000A;
constexpr std::uint32_t kSmc64 = 0x40000000;  // the SMC64 variant of a function id
constexpr std::uint32_t kPvTimeFeatures = 0xC5000020;
constexpr std::uint32_t kPvTimeSt = 0xC5000021;
constexpr std::int64_t kSuccess = 0;
constexpr std::int64_t kNotSupported = -1;
constexpr std::int64_t kInvalidParameters = -2;
constexpr std::int64_t kAlreadyOn = -4;
constexpr std::int64_t kOnPending = -5;

// System registers by encoding.
constexpr arch::SysRegEncoding kMpidrEl1{3, 0, 0, 0, 5};
constexpr arch::SysRegEncoding kIdAa64Pfr0El1{3, 0, 0, 4, 0};
constexpr arch::SysRegEncoding kSctlrEl1{3, 0, 1, 0, 0};
constexpr arch::SysRegEncoding kSpsrEl1{3, 0, 4, 0, 0};
constexpr arch::SysRegEncoding kEsrEl1{3, 0, 5, 2, 0};
constexpr arch::SysRegEncoding kVbarEl1{3, 0, 12, 0, 0};
constexpr arch::SysRegEncoding kScrEl3{3, 6, 1, 1, 0};
constexpr arch::SysRegEncoding kSctlrEl2{3, 4, 1, 0, 0};
constexpr arch::SysRegEncoding kHcrEl2{3, 4, 1, 1, 0};
constexpr arch::SysRegEncoding kSpsrEl2{3, 4, 4, 0, 0};
constexpr arch::SysRegEncoding kEsrEl2{3, 4, 5, 2, 0};
constexpr arch::SysRegEncoding kVbarEl2{3, 4, 12, 0, 0};
// The EL1 state a bare-metal or Linux guest needs to resume, in save order.
constexpr arch::SysRegEncoding kSavedSysRegs[] = {
    kSctlrEl1,
    {3, 0, 1, 0, 2} /* CPACR */,
    {3, 0, 2, 0, 0} /* TTBR0 */,
    {3, 0, 2, 0, 1} /* TTBR1 */,
    {3, 0, 2, 0, 2} /* TCR */,
    kEsrEl1,
    {3, 0, 5, 1, 0} /* AFSR0 */,
    {3, 0, 5, 1, 1} /* AFSR1 */,
    {3, 0, 6, 0, 0} /* FAR */,
    {3, 0, 7, 4, 0} /* PAR */,
    {3, 0, 10, 2, 0} /* MAIR */,
    {3, 0, 10, 3, 0} /* AMAIR */,
    kVbarEl1,
    {3, 0, 13, 0, 1} /* CONTEXTIDR */,
    {3, 0, 13, 0, 4} /* TPIDR_EL1 */,
    {3, 3, 13, 0, 2} /* TPIDR_EL0 */,
    {3, 3, 13, 0, 3} /* TPIDRRO_EL0 */,
    {3, 2, 0, 0, 0} /* CSSELR */,
    {2, 0, 0, 2, 2} /* MDSCR */,
    kMpidrEl1,
};

// SCR_EL3 = RW | HCE | NS: EL1 is AArch64 and non-secure, and HVC is
// enabled, so that it reaches the interrupt hook instead of UNDEFing.
constexpr std::uint64_t kScrRwHceNs = (1U << 10) | (1U << 8) | (1U << 0);

// FEAT_VHE's redirections, which Unicorn 2.0.1 does not make: at EL2 with
// HCR_EL2.E2H = 1, these EL1 encodings (op1 0) reach the EL2 register (op1
// 4, the same CRn, CRm and op2), and their *_EL12 encodings (op1 5) reach
// the EL1 register. Unicorn has no *_EL12 registers: it UNDEFs them even
// after a hook skipped them, so they are emulated at that UNDEF (precise,
// between blocks) instead. (CPACR_EL1, whose EL2 twin has another layout,
// and the timer registers, which vtime's model redirects, are not listed.)
struct VheRedirect {
  std::uint8_t crn, crm, op2;
};
constexpr VheRedirect kVheRedirects[] = {
    {1, 0, 0} /* SCTLR */, {2, 0, 0} /* TTBR0 */,       {2, 0, 1} /* TTBR1 */,
    {2, 0, 2} /* TCR */,   {4, 0, 0} /* SPSR */,        {4, 0, 1} /* ELR */,
    {5, 1, 0} /* AFSR0 */, {5, 1, 1} /* AFSR1 */,       {5, 2, 0} /* ESR */,
    {6, 0, 0} /* FAR */,   {10, 2, 0} /* MAIR */,       {10, 3, 0} /* AMAIR */,
    {12, 0, 0} /* VBAR */, {13, 0, 1} /* CONTEXTIDR */,
};
constexpr std::uint8_t kOp1El1 = 0;
constexpr std::uint8_t kOp1El2 = 4;
constexpr std::uint8_t kOp1El12 = 5;

bool IsVheRedirected(arch::SysRegEncoding e) {
  if (e.op0 != 3 || (e.op1 != kOp1El1 && e.op1 != kOp1El12)) return false;
  return std::any_of(std::begin(kVheRedirects), std::end(kVheRedirects), [&](VheRedirect r) {
    return r.crn == e.crn && r.crm == e.crm && r.op2 == e.op2;
  });
}

std::string EncodingName(arch::SysRegEncoding e) {
  return "S" + std::to_string(e.op0) + "_" + std::to_string(e.op1) + "_C" + std::to_string(e.crn) +
         "_C" + std::to_string(e.crm) + "_" + std::to_string(e.op2);
}

uc_arm64_cp_reg CpReg(arch::SysRegEncoding e, std::uint64_t value = 0) {
  uc_arm64_cp_reg r{};
  r.op0 = e.op0;
  r.op1 = e.op1;
  r.crn = e.crn;
  r.crm = e.crm;
  r.op2 = e.op2;
  r.val = value;
  return r;
}

uc_arm64_reg XReg(unsigned n) {
  if (n <= 28) return static_cast<uc_arm64_reg>(UC_ARM64_REG_X0 + static_cast<int>(n));
  return n == 29 ? UC_ARM64_REG_X29 : UC_ARM64_REG_X30;
}

// The Rt field of a hooked MRS/MSR, from the register Unicorn names.
std::uint8_t RtNumber(uc_arm64_reg reg) {
  if (reg >= UC_ARM64_REG_X0 && reg <= UC_ARM64_REG_X28) {
    return static_cast<std::uint8_t>(reg - UC_ARM64_REG_X0);
  }
  if (reg == UC_ARM64_REG_X29) return 29;
  if (reg == UC_ARM64_REG_X30) return 30;
  return arch::kXzr;
}

// The scheduler's run delay of the calling thread in ns (the second field
// of /proc/self/task/TID/schedstat), or nothing where it cannot be read.
std::optional<std::uint64_t> RunDelayNs() {
  const std::string path = "/proc/self/task/" + std::to_string(gettid()) + "/schedstat";
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[128];
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  const char* p = std::strchr(buf, ' ');
  if (p == nullptr) return std::nullopt;
  std::uint64_t v = 0;
  for (++p; *p >= '0' && *p <= '9'; ++p) v = v * 10 + static_cast<std::uint64_t>(*p - '0');
  return v;
}

// --- Unicorn's C callbacks, forwarding to the vCPU ---
void BlockHook(uc_engine* /*uc*/, std::uint64_t address, std::uint32_t /*size*/, void* user) {
  static_cast<EmuVcpu*>(user)->OnBlock(address);
}
void InterruptHook(uc_engine* /*uc*/, std::uint32_t intno, void* user) {
  static_cast<EmuVcpu*>(user)->OnInterrupt(intno);
}
std::uint32_t MrsHook(uc_engine* /*uc*/, uc_arm64_reg reg, const uc_arm64_cp_reg* cp, void* user) {
  return static_cast<EmuVcpu*>(user)->OnSysReg(reg, *cp, /*is_read=*/true);
}
std::uint32_t MsrHook(uc_engine* /*uc*/, uc_arm64_reg reg, const uc_arm64_cp_reg* cp, void* user) {
  return static_cast<EmuVcpu*>(user)->OnSysReg(reg, *cp, /*is_read=*/false);
}
void WriteHook(uc_engine* /*uc*/, uc_mem_type /*type*/, std::uint64_t address, int size,
               std::int64_t /*value*/, void* user) {
  auto* region = static_cast<MemoryRegion*>(user);
  if (region->logging.load(std::memory_order_relaxed)) {
    region->MarkDirty(address, static_cast<std::uint64_t>(size));
  }
}

}  // namespace

// --- creation ---

EmuVcpu::EmuVcpu(EmuVm& vm, const backend::VcpuConfig& config, uc_engine* uc)
    : vm_(vm),
      index_(config.index),
      uc_(uc),
      // As KVM builds it: RES1 bit 31, Aff0 = index % 16, Aff1 = index / 16.
      mpidr_((std::uint64_t{1} << 31) | (config.index & 0xf) |
             (std::uint64_t{(config.index >> 4) & 0xff} << 8)),
      pvtime_ipa_(config.pvtime_ipa),
      el2_(config.el2),
      clock_(arch::HostTimerFeatures{}) {
  timers_.Reset();
  timers_.features.el2 = el2_;
  powered_on_ = !config.powered_off;
}

Result<std::unique_ptr<EmuVcpu>> EmuVcpu::Create(EmuVm& vm, const backend::VcpuConfig& config) {
  const std::string who = "vCPU " + std::to_string(config.index);
  uc_engine* uc = nullptr;
  if (uc_err err = uc_open(UC_ARCH_ARM64, UC_MODE_ARM, &uc); err != UC_ERR_OK) {
    return Fail(ErrorCode::kSystem, who + ": creating its Unicorn engine: " + UcError(err));
  }
  // A guest hypervisor needs VHE (HCR_EL2.E2H, the *_EL02 and *_EL12
  // encodings): Unicorn's "max" CPU has it, the Cortex-A72 does not.
  if (uc_err err = uc_ctl_set_cpu_model(uc, config.el2 ? UC_CPU_ARM64_MAX : UC_CPU_ARM64_A72);
      err != UC_ERR_OK) {
    uc_close(uc);
    return Fail(ErrorCode::kSystem, who + ": selecting its CPU model: " + UcError(err));
  }
  std::unique_ptr<EmuVcpu> vcpu(new EmuVcpu(vm, config, uc));
  if (auto r = vcpu->InstallHooks(); !r) return tl::unexpected(r.error());
  // Reset state: EL1h, DAIF masked, MMU off, PC 0 until the VMM sets it.
  uc_arm64_cp_reg scr = CpReg(kScrEl3, kScrRwHceNs);
  if (uc_err err = uc_reg_write(uc, UC_ARM64_REG_CP_REG, &scr); err != UC_ERR_OK) {
    return Fail(ErrorCode::kSystem, who + ": writing SCR_EL3: " + UcError(err));
  }
  vcpu->WriteReg(UC_ARM64_REG_PSTATE, kPstateEl1h | kPstateDaif);
  if (config.el2) {
    // A vEL2 vCPU resets at EL2h, as under KVM, with HCR_EL2.E2H set (KVM's
    // guest hypervisors are VHE: E2H reads as one there; here it is only
    // the reset value) and the MMU off.
    if (uc_err err = uc_mem_map(uc, kTrampoline, kTrampolineSize, UC_PROT_READ | UC_PROT_EXEC);
        err != UC_ERR_OK) {
      return Fail(ErrorCode::kSystem, who + ": mapping its trampoline page: " + UcError(err));
    }
    const std::uint32_t code[2] = {kInsnEret, kInsnNop};
    if (uc_err err = uc_mem_write(uc, kTrampoline, code, sizeof(code)); err != UC_ERR_OK) {
      return Fail(ErrorCode::kSystem, who + ": writing its trampoline page: " + UcError(err));
    }
    if (auto r = vcpu->WriteSys(kHcrEl2, kHcrE2h); !r) return tl::unexpected(r.error());
    if (auto r = vcpu->SwitchEl(kPstateEl2h | kPstateDaif, 0); !r) {
      return tl::unexpected(r.error());
    }
  }
  return vcpu;
}

Result<void> EmuVcpu::InstallHooks() {
  const std::string who = "vCPU " + std::to_string(index_);
  auto add = [&](int type, void* cb, std::uint64_t begin, std::uint64_t end,
                 std::optional<int> insn) -> Result<void> {
    uc_hook h{};
    const uc_err err = insn ? uc_hook_add(uc_, &h, type, cb, this, begin, end, *insn)
                            : uc_hook_add(uc_, &h, type, cb, this, begin, end);
    if (err != UC_ERR_OK) {
      return Fail(ErrorCode::kSystem, who + ": adding a Unicorn hook: " + UcError(err));
    }
    hooks_.push_back(h);
    return Ok();
  };
  // begin > end: every address.
  if (auto r = add(UC_HOOK_BLOCK, reinterpret_cast<void*>(&BlockHook), 1, 0, std::nullopt); !r)
    return r;
  if (auto r = add(UC_HOOK_INTR, reinterpret_cast<void*>(&InterruptHook), 1, 0, std::nullopt); !r)
    return r;
  if (auto r = add(UC_HOOK_INSN, reinterpret_cast<void*>(&MrsHook), 1, 0, UC_ARM64_INS_MRS); !r)
    return r;
  return add(UC_HOOK_INSN, reinterpret_cast<void*>(&MsrHook), 1, 0, UC_ARM64_INS_MSR);
}

EmuVcpu::~EmuVcpu() {
  vm_.ForgetVcpu(this);
  uc_close(uc_);
}

// --- memory layout and clock ---

namespace {
std::uint64_t GapRead(uc_engine* /*uc*/, std::uint64_t offset, unsigned size, void* user) {
  auto* g = static_cast<MmioGap*>(user);
  return g->vcpu->OnMmioRead(g->base + offset, size);
}
void GapWrite(uc_engine* /*uc*/, std::uint64_t offset, unsigned size, std::uint64_t value,
              void* user) {
  auto* g = static_cast<MmioGap*>(user);
  g->vcpu->OnMmioWrite(g->base + offset, size, value);
}
}  // namespace

Result<void> EmuVcpu::SyncLayout() {
  std::uint64_t generation = 0;
  const std::vector<MemoryRegion*> regions = vm_.Regions(&generation);
  if (generation == layout_generation_) return Ok();
  const std::string who = "vCPU " + std::to_string(index_);
  bool new_regions = false;
  for (MemoryRegion* r : regions) {
    if (std::find(mapped_.begin(), mapped_.end(), r) != mapped_.end()) continue;
    if (!new_regions) {
      for (const auto& gap : gaps_) uc_mem_unmap(uc_, gap->base, gap->size);
      gaps_.clear();
      new_regions = true;
    }
    if (uc_err err = uc_mem_map_ptr(uc_, r->gpa, r->host.size(), UC_PROT_ALL, r->host.data());
        err != UC_ERR_OK) {
      return Fail(ErrorCode::kSystem, who + ": mapping slot " + std::to_string(r->slot) + " at " +
                                          Hex(r->gpa) + ": " + UcError(err));
    }
    mapped_.push_back(r);
  }
  // The write hooks follow the logging flags. A store hook sends every load
  // and store of the translated code through Unicorn's slow path (a RAM load
  // goes from about 2 to 21 ns; stores cost 120-200 ns in Unicorn 2.0.1
  // either way), so it exists only while a slot logs; and as that choice is
  // made when a block is translated, the translations are dropped whenever
  // a hook comes or goes.
  bool hooks_changed = false;
  for (MemoryRegion* r : mapped_) {
    auto it = std::find_if(write_hooks_.begin(), write_hooks_.end(),
                           [r](const auto& wh) { return wh.first == r; });
    const bool want = r->logging.load();
    if (want && it == write_hooks_.end()) {
      uc_hook h{};
      if (uc_err err = uc_hook_add(uc_, &h, UC_HOOK_MEM_WRITE, reinterpret_cast<void*>(&WriteHook),
                                   r, r->gpa, r->end() - 1);
          err != UC_ERR_OK) {
        return Fail(ErrorCode::kSystem, who + ": hooking writes to slot " +
                                            std::to_string(r->slot) + ": " + UcError(err));
      }
      write_hooks_.emplace_back(r, h);
      hooks_changed = true;
    } else if (!want && it != write_hooks_.end()) {
      uc_hook_del(uc_, it->second);
      write_hooks_.erase(it);
      hooks_changed = true;
    }
  }
  if (hooks_changed) {
    // Code runs only from RAM: dropping the translations of the mapped
    // regions is enough, and costs milliseconds where a full tb_flush
    // (which clears the whole code buffer) costs over a second.
    for (MemoryRegion* r : mapped_) {
      if (uc_err err = uc_ctl_remove_cache(uc_, r->gpa, r->end()); err != UC_ERR_OK) {
        return Fail(ErrorCode::kSystem, who + ": dropping the translations of slot " +
                                            std::to_string(r->slot) + ": " + UcError(err));
      }
    }
  }
  if (new_regions) {
    // Everything else up to the IPA limit is MMIO, answered by the VMM.
    auto map_gap = [&](std::uint64_t base, std::uint64_t end) -> Result<void> {
      if (end <= base) return Ok();
      auto gap = std::make_unique<MmioGap>(MmioGap{this, base, end - base});
      if (uc_err err =
              uc_mmio_map(uc_, base, end - base, &GapRead, gap.get(), &GapWrite, gap.get());
          err != UC_ERR_OK) {
        return Fail(ErrorCode::kSystem,
                    who + ": mapping MMIO at " + Hex(base) + ".." + Hex(end) + ": " + UcError(err));
      }
      gaps_.push_back(std::move(gap));
      return Ok();
    };
    std::uint64_t cursor = 0;
    for (MemoryRegion* r : regions) {
      if (auto res = map_gap(cursor, r->gpa); !res) return res;
      cursor = r->end();
    }
    if (auto res = map_gap(cursor, kIpaLimit); !res) return res;
  }
  layout_generation_ = generation;
  synced_generation_.store(generation);
  return Ok();
}

bool EmuVcpu::AwaitLayout(std::uint64_t generation) {
  // A vCPU's own thread (its MMIO handler) cannot wait for itself.
  if (in_guest_.load() && runner_.load() == std::this_thread::get_id()) return false;
  while (in_guest_.load() && synced_generation_.load() < generation) {
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  return true;
}

void EmuVcpu::SyncClock() {
  if (vm_.clock_generation() == clock_generation_) return;
  clock_ = vm_.ClockCopy(&clock_generation_);
  lines_dirty_ = true;
}

void EmuVcpu::Resync() {
  attention_.fetch_or(kAttnResync);
  { std::lock_guard lock(mu_); }
  wake_.notify_all();
}

// --- registers ---

std::uint64_t EmuVcpu::ReadReg(uc_arm64_reg reg) {
  std::uint64_t v = 0;
  uc_reg_read(uc_, reg, &v);
  return v;
}

void EmuVcpu::WriteReg(uc_arm64_reg reg, std::uint64_t value) { uc_reg_write(uc_, reg, &value); }

Result<std::uint64_t> EmuVcpu::ReadSys(arch::SysRegEncoding e) {
  uc_arm64_cp_reg r = CpReg(e);
  if (uc_err err = uc_reg_read(uc_, UC_ARM64_REG_CP_REG, &r); err != UC_ERR_OK) {
    return Fail(ErrorCode::kInvalidArgument, "vCPU " + std::to_string(index_) + ": reading " +
                                                 EncodingName(e) + ": " + UcError(err));
  }
  return r.val;
}

Result<void> EmuVcpu::WriteSys(arch::SysRegEncoding e, std::uint64_t value) {
  uc_arm64_cp_reg r = CpReg(e, value);
  if (uc_err err = uc_reg_write(uc_, UC_ARM64_REG_CP_REG, &r); err != UC_ERR_OK) {
    return Fail(ErrorCode::kInvalidArgument, "vCPU " + std::to_string(index_) + ": writing " +
                                                 EncodingName(e) + ": " + UcError(err));
  }
  return Ok();
}

// QEMU keeps the SP in use in SP (x31) and the others banked; which one is
// live follows PSTATE.EL and PSTATE.SP.
unsigned EmuVcpu::LiveSpIndex() {
  const std::uint64_t pstate = ReadReg(UC_ARM64_REG_PSTATE);
  const unsigned el = static_cast<unsigned>((pstate >> 2) & 3);
  return (pstate & kPstateSp) != 0 ? el : 0;
}

namespace {
// Unicorn's banked SP_ELn (SP_EL0..SP_EL3 are consecutive).
uc_arm64_reg SpReg(unsigned el) {
  return static_cast<uc_arm64_reg>(UC_ARM64_REG_SP_EL0 + static_cast<int>(el));
}
}  // namespace

std::uint64_t EmuVcpu::ReadSpEl(unsigned el) {
  if (LiveSpIndex() == el) return ReadReg(UC_ARM64_REG_SP);
  return ReadReg(SpReg(el));
}

void EmuVcpu::WriteSpEl(unsigned el, std::uint64_t value) {
  if (LiveSpIndex() == el) {
    WriteReg(UC_ARM64_REG_SP, value);
  } else {
    WriteReg(SpReg(el), value);
  }
}

void EmuVcpu::WritePstate(std::uint64_t value) {
  // Bank the live SP out and the new one in, as an exception entry or
  // return would.
  const unsigned before = LiveSpIndex();
  const unsigned el = static_cast<unsigned>((value >> 2) & 3);
  const unsigned after = (value & kPstateSp) != 0 ? el : 0;
  if (before != after) {
    const std::uint64_t sp_before = ReadReg(UC_ARM64_REG_SP);
    const std::uint64_t sp_after = ReadReg(SpReg(after));
    WriteReg(SpReg(before), sp_before);
    WriteReg(UC_ARM64_REG_SP, sp_after);
  }
  WriteReg(UC_ARM64_REG_PSTATE, value);
}

unsigned EmuVcpu::CurrentEl() {
  return static_cast<unsigned>((ReadReg(UC_ARM64_REG_PSTATE) >> 2) & 3);
}

Result<void> EmuVcpu::SwitchEl(std::uint64_t pstate, std::uint64_t pc) {
  // Unicorn 2.0.1 caches the exception level in its translation flags and
  // rebuilds them only on an exception return it executes itself. So:
  // PSTATE goes to the new level, and an ERET runs on the trampoline page.
  // Its translation still believes the old level, so it returns to
  // ELR_EL<old> (set to the NOP after it); at run time it reads
  // SPSR_EL<new> (set to `pstate`), which is a legal return to the level
  // it is at, and rebuilds the flags. Both registers get their values back.
  const std::string who = "vCPU " + std::to_string(index_);
  const unsigned old_el = CurrentEl();
  const unsigned new_el = static_cast<unsigned>((pstate >> 2) & 3);
  if (old_el == 0 || new_el == 0 || (new_el == 2 && !el2_)) {
    return Fail(ErrorCode::kUnsupported, who + ": cannot move from EL" + std::to_string(old_el) +
                                             " to EL" + std::to_string(new_el) +
                                             " on the emulated backend");
  }
  if (new_el == 1 && el2_ && (ReadSys(kHcrEl2).value_or(0) & kHcrRw) == 0) {
    // The ERET would be an illegal return, which leaves Unicorn's cached
    // level behind: refuse before touching anything.
    return Fail(ErrorCode::kInvalidArgument,
                who + ": PSTATE " + Hex(pstate) +
                    ": EL1 is AArch32 here until HCR_EL2.RW is set, and AArch32 is not run");
  }
  const auto elr_reg = static_cast<uc_arm64_reg>(UC_ARM64_REG_ELR_EL0 + static_cast<int>(old_el));
  const arch::SysRegEncoding spsr_enc = new_el == 2 ? kSpsrEl2 : kSpsrEl1;
  const std::uint64_t saved_elr = ReadReg(elr_reg);
  auto saved_spsr = ReadSys(spsr_enc);
  if (!saved_spsr) return tl::unexpected(saved_spsr.error());
  // The ERET banks the live SP into the new level's (by PSTATE.SP) and
  // loads it back: make the live SP the new level's own first.
  WritePstate(pstate);
  WriteReg(elr_reg, kTrampoline + 4);
  if (auto r = WriteSys(spsr_enc, pstate); !r) return r;
  // The ERET's translation depends on the level Unicorn believes, and a
  // translation made at another level has been seen to be reused here
  // (its ELR read from the wrong level): translate it afresh each time.
  if (uc_err err = uc_ctl_remove_cache(uc_, kTrampoline, kTrampoline + kTrampolineSize);
      err != UC_ERR_OK) {
    return Fail(ErrorCode::kSystem,
                who + ": dropping the trampoline's translation: " + UcError(err));
  }
  in_trampoline_ = true;
  const uc_err err = uc_emu_start(uc_, kTrampoline, kTrampoline + 4, 0, 0);
  in_trampoline_ = false;
  const std::uint64_t landed = ReadReg(UC_ARM64_REG_PC);
  WriteReg(elr_reg, saved_elr);
  if (auto r = WriteSys(spsr_enc, *saved_spsr); !r) return r;
  // (PSTATE.IL set means the return was illegal, which the check above
  // exists to prevent.)
  if (err != UC_ERR_OK || landed != kTrampoline + 4 || CurrentEl() != new_el ||
      (ReadReg(UC_ARM64_REG_PSTATE) & kPstateIl) != 0) {
    return Fail(ErrorCode::kSystem, who + ": the move from EL" + std::to_string(old_el) + " to EL" +
                                        std::to_string(new_el) + " failed (" + UcError(err) +
                                        ", pc " + Hex(landed) + ")");
  }
  WriteReg(UC_ARM64_REG_PC, pc);
  return Ok();
}

Result<void> EmuVcpu::TakeException(unsigned target_el, std::uint64_t offset,
                                    std::optional<std::uint64_t> esr) {
  const std::uint64_t pstate = ReadReg(UC_ARM64_REG_PSTATE);
  const std::uint64_t pc = ReadReg(UC_ARM64_REG_PC);
  const unsigned el = static_cast<unsigned>((pstate >> 2) & 3);
  const bool to_el2 = target_el == 2;
  // The vector group: current EL with SP_EL0, current EL with SP_ELx, or
  // lower EL (AArch64).
  const std::uint64_t group = el < target_el ? 0x400 : ((pstate & kPstateSp) != 0 ? 0x200 : 0x000);
  const std::uint64_t vbar = ReadSys(to_el2 ? kVbarEl2 : kVbarEl1).value_or(0);
  const std::uint64_t entry = (to_el2 ? kPstateEl2h : kPstateEl1h) | kPstateDaif;
  if (el != target_el) {
    if (auto r = SwitchEl(entry, vbar + group + offset); !r) return r;
  } else {
    WritePstate(entry);
    WriteReg(UC_ARM64_REG_PC, vbar + group + offset);
  }
  (void)WriteSys(to_el2 ? kSpsrEl2 : kSpsrEl1, pstate);
  WriteReg(to_el2 ? UC_ARM64_REG_ELR_EL2 : UC_ARM64_REG_ELR_EL1, pc);
  if (esr) (void)WriteSys(to_el2 ? kEsrEl2 : kEsrEl1, *esr);
  return Ok();
}

std::optional<unsigned> EmuVcpu::IrqTarget() {
  const bool physical = irq_line_.load();
  const bool virt = virq_line_.load();
  if (!physical && !virt) return std::nullopt;
  const std::uint64_t pstate = ReadReg(UC_ARM64_REG_PSTATE);
  const bool masked = (pstate & kPstateI) != 0;
  const unsigned el = static_cast<unsigned>((pstate >> 2) & 3);
  const std::uint64_t hcr = el2_ ? ReadSys(kHcrEl2).value_or(0) : 0;
  const bool routed = (hcr & (kHcrImo | kHcrTge)) != 0;
  if (physical) {
    // Routed to EL2, where a lower level's PSTATE.I does not mask it.
    if (el < 2 && routed) return 2;
    if (!masked) return el == 2 ? 2U : 1U;
  }
  // The virtual IRQ reaches EL1 only, under IMO without TGE.
  if (virt && el == 1 && (hcr & kHcrImo) != 0 && (hcr & kHcrTge) == 0 && !masked) return 1;
  return std::nullopt;
}

arch::GuestContext EmuVcpu::Context() {
  arch::GuestContext context;
  const unsigned el = CurrentEl();
  context.el = el == 0   ? arch::ExceptionLevel::kEl0
               : el == 1 ? arch::ExceptionLevel::kEl1
                         : arch::ExceptionLevel::kEl2;
  if (el2_) {
    const std::uint64_t hcr = ReadSys(kHcrEl2).value_or(0);
    context.e2h = (hcr & kHcrE2h) != 0;
    context.tge = (hcr & kHcrTge) != 0;
    context.nv = (hcr & kHcrNv) != 0;
  }
  return context;
}

Result<std::uint64_t> EmuVcpu::GetRegister(std::uint64_t id) {
  SyncClock();
  const HostCount now = Now();
  const arch::TimerCounts counts = clock_.CountsFor(now, timers_.nested());
  using arch::TimerId;
  switch (id) {
    case regs::kCntvCtl:
      return timers_.timers[TimerId::kEl1Virtual].ReadCtl(counts[TimerId::kEl1Virtual]);
    case regs::kCntvCval:
      return timers_.timers[TimerId::kEl1Virtual].cval().value;
    case regs::kCntpCtl:
      return timers_.timers[TimerId::kEl1Physical].ReadCtl(counts[TimerId::kEl1Physical]);
    case regs::kCntpCval:
      return timers_.timers[TimerId::kEl1Physical].cval().value;
    case regs::kCntvct:
      return clock_.VirtualCount(now, timers_.nested()).value;
    case regs::kCntpct:
      return clock_.PhysicalCount(now).value;
    case regs::kCntkctlEl1:
      return timers_.cntkctl_el1;
    case regs::kMpidrEl1:
      return mpidr_;
    default:
      break;
  }
  if (el2_) {
    switch (id) {
      case regs::kCntvoffEl2:
        return timers_.cntvoff_el2.value;
      case regs::kCnthctlEl2:
        return timers_.cnthctl_el2;
      case regs::kCnthvCtl:
        return timers_.timers[TimerId::kEl2Virtual].ReadCtl(counts[TimerId::kEl2Virtual]);
      case regs::kCnthvCval:
        return timers_.timers[TimerId::kEl2Virtual].cval().value;
      case regs::kCnthpCtl:
        return timers_.timers[TimerId::kEl2Physical].ReadCtl(counts[TimerId::kEl2Physical]);
      case regs::kCnthpCval:
        return timers_.timers[TimerId::kEl2Physical].cval().value;
      default:
        break;
    }
  }
  if (id == regs::Core(regs::kSp)) return ReadSpEl(0);
  if (id == regs::Core(regs::kPc)) return ReadReg(UC_ARM64_REG_PC);
  for (unsigned n = 0; n < 31; ++n) {
    if (id == regs::Core(n)) return ReadReg(XReg(n));
  }
  if (id == regs::Pstate()) return ReadReg(UC_ARM64_REG_PSTATE);
  if (id == regs::SpEl1()) return ReadSpEl(1);
  if (id == regs::ElrEl1()) return ReadReg(UC_ARM64_REG_ELR_EL1);
  if (id == regs::SpsrEl1()) return ReadSys(kSpsrEl1);
  if (id == regs::Fpsr()) return ReadReg(UC_ARM64_REG_FPSR) & 0xffffffffU;
  if (id == regs::Fpcr()) return ReadReg(UC_ARM64_REG_FPCR) & 0xffffffffU;
  if (regs::IsSys(id) && (id & regs::kSizeMask) == regs::kSizeU64) {
    return ReadSys(regs::EncodingOf(id));
  }
  return Fail(ErrorCode::kInvalidArgument,
              "vCPU " + std::to_string(index_) + ": no register with id " + Hex(id));
}

Result<void> EmuVcpu::SetRegister(std::uint64_t id, std::uint64_t value) {
  using arch::TimerId;
  auto timer_changed = [this] {
    lines_dirty_ = true;
    attention_.fetch_or(kAttnResync);
  };
  switch (id) {
    case regs::kCntvCtl:
      timers_.timers[TimerId::kEl1Virtual].WriteCtl(value);
      timer_changed();
      return Ok();
    case regs::kCntvCval:
      timers_.timers[TimerId::kEl1Virtual].WriteCval(Ticks{value});
      timer_changed();
      return Ok();
    case regs::kCntpCtl:
      timers_.timers[TimerId::kEl1Physical].WriteCtl(value);
      timer_changed();
      return Ok();
    case regs::kCntpCval:
      timers_.timers[TimerId::kEl1Physical].WriteCval(Ticks{value});
      timer_changed();
      return Ok();
    case regs::kCntkctlEl1:
      timers_.cntkctl_el1 = value;
      return WriteSys(regs::EncodingOf(id), value);
    case regs::kCntvct:
      return vm_.WriteCounterValue(arch::CounterKind::kVirtual, value);
    case regs::kCntpct:
      return vm_.WriteCounterValue(arch::CounterKind::kPhysical, value);
    case regs::kMpidrEl1:
      if (value == mpidr_) return Ok();
      return Fail(ErrorCode::kUnsupported, "vCPU " + std::to_string(index_) + ": MPIDR_EL1 is " +
                                               Hex(mpidr_) + " here and cannot become " +
                                               Hex(value));
    default:
      break;
  }
  if (el2_) {
    switch (id) {
      case regs::kCntvoffEl2:
        timers_.cntvoff_el2 = Ticks{value};
        timer_changed();
        return Ok();
      case regs::kCnthctlEl2:
        timers_.cnthctl_el2 = value;
        timer_changed();
        return WriteSys(regs::EncodingOf(id), value);
      case regs::kCnthvCtl:
        timers_.timers[TimerId::kEl2Virtual].WriteCtl(value);
        timer_changed();
        return Ok();
      case regs::kCnthvCval:
        timers_.timers[TimerId::kEl2Virtual].WriteCval(Ticks{value});
        timer_changed();
        return Ok();
      case regs::kCnthpCtl:
        timers_.timers[TimerId::kEl2Physical].WriteCtl(value);
        timer_changed();
        return Ok();
      case regs::kCnthpCval:
        timers_.timers[TimerId::kEl2Physical].WriteCval(Ticks{value});
        timer_changed();
        return Ok();
      default:
        break;
    }
  }
  if (regs::IsTimeRegister(id)) {
    return Fail(ErrorCode::kUnsupported,
                "vCPU " + std::to_string(index_) + ": no EL2 time register " + Hex(id) + " here");
  }
  if (id == regs::Core(regs::kSp)) {
    WriteSpEl(0, value);
    return Ok();
  }
  if (id == regs::Core(regs::kPc)) {
    WriteReg(UC_ARM64_REG_PC, value);
    return Ok();
  }
  for (unsigned n = 0; n < 31; ++n) {
    if (id == regs::Core(n)) {
      WriteReg(XReg(n), value);
      return Ok();
    }
  }
  if (id == regs::Pstate()) {
    const std::uint64_t el = (value >> 2) & 3;
    if (el > (el2_ ? 2U : 1U) || (value & 0x10) != 0) {
      return Fail(ErrorCode::kUnsupported, "vCPU " + std::to_string(index_) + ": PSTATE " +
                                               Hex(value) + " is not AArch64 EL0/EL1" +
                                               (el2_ ? "/EL2" : ""));
    }
    if (el != CurrentEl()) {
      if (el == 0) {
        return Fail(ErrorCode::kUnsupported,
                    "vCPU " + std::to_string(index_) + ": no guest EL0 on the emulated backend");
      }
      return SwitchEl(value, ReadReg(UC_ARM64_REG_PC));
    }
    WritePstate(value);
    return Ok();
  }
  if (id == regs::SpEl1()) {
    WriteSpEl(1, value);
    return Ok();
  }
  if (id == regs::ElrEl1()) {
    WriteReg(UC_ARM64_REG_ELR_EL1, value);
    return Ok();
  }
  if (id == regs::SpsrEl1()) return WriteSys(kSpsrEl1, value);
  if (id == regs::Fpsr()) {
    WriteReg(UC_ARM64_REG_FPSR, value & 0xffffffffU);
    return Ok();
  }
  if (id == regs::Fpcr()) {
    WriteReg(UC_ARM64_REG_FPCR, value & 0xffffffffU);
    return Ok();
  }
  if (regs::IsSys(id) && (id & regs::kSizeMask) == regs::kSizeU64) {
    return WriteSys(regs::EncodingOf(id), value);
  }
  return Fail(ErrorCode::kInvalidArgument,
              "vCPU " + std::to_string(index_) + ": no register with id " + Hex(id));
}

Result<std::vector<backend::RegisterBytes>> EmuVcpu::SaveRegisters(bool counter_values) {
  if (el2_) {
    // Its EL2 registers (HCR_EL2, VBAR_EL2, SP_EL2, ...) are not in the
    // neutral register set yet: refuse rather than save a VM that cannot
    // come back.
    return Fail(ErrorCode::kUnsupported,
                "vCPU " + std::to_string(index_) +
                    " is at vEL2: the emulated backend cannot save a guest hypervisor's "
                    "registers yet (no snapshot or migration of --el2 on emu)");
  }
  std::vector<std::uint64_t> ids;
  for (unsigned n = 0; n <= regs::kPc; ++n) ids.push_back(regs::Core(n));
  ids.insert(ids.end(), {regs::Pstate(), regs::SpEl1(), regs::ElrEl1(), regs::SpsrEl1()});
  for (unsigned n = 0; n < 32; ++n) ids.push_back(regs::Vreg(n));
  ids.insert(ids.end(), {regs::Fpsr(), regs::Fpcr()});
  for (const arch::SysRegEncoding& e : kSavedSysRegs) ids.push_back(regs::Sys(e));
  if (counter_values) ids.insert(ids.end(), {regs::kCntvct, regs::kCntpct});
  std::vector<backend::RegisterBytes> out;
  out.reserve(ids.size());
  for (std::uint64_t id : ids) {
    backend::RegisterBytes r{id, std::vector<std::uint8_t>(regs::Size(id))};
    if (regs::Size(id) == 16) {
      std::uint64_t q[2] = {0, 0};
      const unsigned n = static_cast<unsigned>(((id & 0xffff) - 84) / 4);
      uc_reg_read(uc_, static_cast<uc_arm64_reg>(UC_ARM64_REG_V0 + static_cast<int>(n)), q);
      std::memcpy(r.bytes.data(), q, 16);
    } else {
      auto v = GetRegister(id);
      if (!v) return tl::unexpected(v.error());
      std::memcpy(r.bytes.data(), &*v, r.bytes.size());
    }
    out.push_back(std::move(r));
  }
  return out;
}

Result<void> EmuVcpu::RestoreRegister(const backend::RegisterBytes& reg) {
  if (reg.bytes.size() != regs::Size(reg.id)) {
    return Fail(ErrorCode::kMalformed, "vCPU " + std::to_string(index_) + ": register " +
                                           Hex(reg.id) + " has " +
                                           std::to_string(reg.bytes.size()) + " bytes, needs " +
                                           std::to_string(regs::Size(reg.id)));
  }
  if (reg.bytes.size() == 16) {
    const std::uint64_t low = reg.id & 0xffff;
    if ((reg.id & regs::kGroupMask) != regs::kGroupCore || low < 84 || low > 84 + 4 * 31 ||
        (low - 84) % 4 != 0) {
      return Fail(ErrorCode::kInvalidArgument,
                  "vCPU " + std::to_string(index_) + ": no 128-bit register " + Hex(reg.id));
    }
    std::uint64_t q[2];
    std::memcpy(q, reg.bytes.data(), 16);
    const int n = static_cast<int>((low - 84) / 4);
    uc_reg_write(uc_, static_cast<uc_arm64_reg>(UC_ARM64_REG_V0 + n), q);
    return Ok();
  }
  if (reg.bytes.size() > 8) {
    return Fail(ErrorCode::kInvalidArgument,
                "vCPU " + std::to_string(index_) + ": no register " + Hex(reg.id));
  }
  std::uint64_t v = 0;
  std::memcpy(&v, reg.bytes.data(), reg.bytes.size());
  // A snapshot from KVM carries registers this CPU has no place for: the
  // AArch32 banked SPSRs, KVM's firmware pseudo-registers (PSCI version,
  // SMCCC bitmaps), the cache-geometry selectors, and system registers Unicorn does not implement
  // (ID registers, which this backend presents itself; debug and PMU ones). They are left out,
  // counted, and said once when the vCPU first runs.
  const std::uint64_t group = reg.id & regs::kGroupMask;
  const std::uint64_t low = reg.id & 0xffff;
  const bool aarch32_spsr = group == regs::kGroupCore && low >= 74 && low <= 80;
  // (Groups: 0x11 the cache-geometry selectors, 0x14 and 0x16 firmware.)
  const bool firmware = group == 0x110000 || group == 0x140000 || group == 0x160000;
  if (aarch32_spsr || firmware) {
    ++skipped_registers_;
    return Ok();
  }
  auto set = SetRegister(reg.id, v);
  if (!set && regs::IsSys(reg.id)) {
    ++skipped_registers_;
    return Ok();
  }
  return set;
}

Result<std::uint32_t> EmuVcpu::GetPowerState() {
  std::lock_guard lock(mu_);
  return powered_on_ ? backend::power::kRunnable : backend::power::kStopped;
}

Result<void> EmuVcpu::SetPowerState(std::uint32_t state) {
  if (state != backend::power::kRunnable && state != backend::power::kStopped) {
    return Fail(ErrorCode::kUnsupported, "vCPU " + std::to_string(index_) + ": power state " +
                                             std::to_string(state) +
                                             " (the emulated backend has runnable and stopped)");
  }
  {
    std::lock_guard lock(mu_);
    powered_on_ = state == backend::power::kRunnable;
    on_pending_ = false;
  }
  wake_.notify_all();
  return Ok();
}

Result<state::VcpuTime> EmuVcpu::CaptureTimers() {
  using arch::TimerId;
  state::VcpuTime t;
  // CTL without ISTATUS: it is derived, never state.
  t.el1_virtual = state::TimerState{timers_.timers[TimerId::kEl1Virtual].ctl(),
                                    timers_.timers[TimerId::kEl1Virtual].cval().value};
  t.el1_physical = state::TimerState{timers_.timers[TimerId::kEl1Physical].ctl(),
                                     timers_.timers[TimerId::kEl1Physical].cval().value};
  t.cntkctl_el1 = timers_.cntkctl_el1;
  if (el2_) {
    t.nested = true;
    t.el2_virtual = state::TimerState{timers_.timers[TimerId::kEl2Virtual].ctl(),
                                      timers_.timers[TimerId::kEl2Virtual].cval().value};
    t.el2_physical = state::TimerState{timers_.timers[TimerId::kEl2Physical].ctl(),
                                       timers_.timers[TimerId::kEl2Physical].cval().value};
    t.cnthctl_el2 = timers_.cnthctl_el2;
    t.cntvoff_el2 = timers_.cntvoff_el2.value;
  }
  return t;
}

Result<unsigned> EmuVcpu::RestoreTimers(const state::VcpuTime& time) {
  if (time.nested) {
    return Fail(ErrorCode::kUnsupported,
                "vCPU " + std::to_string(index_) +
                    " was at vEL2 (nested); the emulated backend cannot restore a guest "
                    "hypervisor yet");
  }
  unsigned written = 0;
  for (const auto& [id, value] : {std::pair{regs::kCntkctlEl1, time.cntkctl_el1},
                                  {regs::kCntvCtl, time.el1_virtual.ctl},
                                  {regs::kCntvCval, time.el1_virtual.cval},
                                  {regs::kCntpCtl, time.el1_physical.ctl},
                                  {regs::kCntpCval, time.el1_physical.cval}}) {
    if (auto r = SetRegister(id, value); !r) return tl::unexpected(r.error());
    ++written;
  }
  return written;
}

// --- time ---

HostCount EmuVcpu::Now() const { return vm_.host_clock().Count(); }

arch::EmulationEnv EmuVcpu::Env(HostCount now) const {
  return arch::EmulationEnv{&clock_, now, vm_.host_clock().frequency()};
}

void EmuVcpu::UpdateTimerLines(HostCount now, bool force) {
  const arch::TimerCounts counts = clock_.CountsFor(now, timers_.nested());
  // OutputLines' bit i is TimerId i: EL1 virtual and physical come first,
  // as timer_line::kVirtual and kPhysical.
  // and the EL2 ones follow as kHypVirtual and kHypPhysical.
  const std::uint64_t mask =
      backend::timer_line::kVirtual | backend::timer_line::kPhysical |
      (el2_ ? backend::timer_line::kHypVirtual | backend::timer_line::kHypPhysical : 0);
  const std::uint64_t lines = timers_.timers.OutputLines(counts) & mask;
  if (lines != reported_lines_ || force || lines_dirty_) {
    reported_lines_ = lines;
    lines_dirty_ = false;
    if (vm_.lines()) vm_.lines()(index_, lines);
  }
  next_deadline_ = NextDeadline(now);
}

std::uint64_t EmuVcpu::NextDeadline(HostCount now) const {
  const arch::TimerCounts counts = clock_.CountsFor(now, timers_.nested());
  std::uint64_t best = kNever;
  for (const arch::TimerId id : arch::kAllTimers) {
    if (!el2_ && (id == arch::TimerId::kEl2Virtual || id == arch::TimerId::kEl2Physical)) continue;
    const std::uint64_t bit = std::uint64_t{1} << static_cast<unsigned>(id);
    // A line already reported high can only fall through a register write.
    if ((reported_lines_ & bit) != 0) continue;
    const std::optional<Ticks> delta = timers_.timers[id].TicksUntilFire(counts[id]);
    if (!delta) continue;
    const std::uint64_t at = now.value + delta->value;
    best = std::min(best, at < now.value ? kNever - 1 : at);
  }
  return best;
}

void EmuVcpu::UpdateStolenTime() {
  if (!pvtime_started_ || !pvtime_ipa_) return;
  const std::optional<std::uint64_t> delay = RunDelayNs();
  if (!delay || *delay <= last_run_delay_ns_) return;
  const std::uint64_t delta = *delay - last_run_delay_ns_;
  last_run_delay_ns_ = *delay;
  MemoryRegion* region = nullptr;
  std::uint8_t* p = vm_.HostPointer(*pvtime_ipa_ + pvtime::kStolenTimeOffset, 8, &region);
  if (p == nullptr) return;
  // KVM's accumulator: the count in guest memory plus the new delay, one
  // 64-bit single-copy-atomic store (the guest may have written anything).
  std::atomic_ref<std::uint64_t> stolen(*reinterpret_cast<std::uint64_t*>(p));
  stolen.store(stolen.load(std::memory_order_relaxed) + delta, std::memory_order_release);
  if (region->logging.load()) region->MarkDirty(*pvtime_ipa_, pvtime::kRecordSize);
}

std::int64_t EmuVcpu::PvTimeSt() {
  if (!pvtime_ipa_) return kNotSupported;
  MemoryRegion* region = nullptr;
  std::uint8_t* p = vm_.HostPointer(*pvtime_ipa_, pvtime::kRecordSize, &region);
  if (p == nullptr) return kNotSupported;
  // The call zeroes the record and restarts the count, as KVM's does.
  if (!pvtime::WriteRecord(std::span<std::uint8_t>(p, pvtime::kRecordSize), pvtime::Record{})) {
    return kNotSupported;
  }
  if (region->logging.load()) region->MarkDirty(*pvtime_ipa_, pvtime::kRecordSize);
  pvtime_started_ = true;
  last_run_delay_ns_ = RunDelayNs().value_or(0);
  return static_cast<std::int64_t>(*pvtime_ipa_);
}

// --- the hooks ---

void EmuVcpu::StopHere() {
  if (stop_requested_) return;
  stop_requested_ = true;
  uc_emu_stop(uc_);
}

void EmuVcpu::OnBlock(std::uint64_t /*address*/) {
  if (in_trampoline_) return;
  FlushMmioWrite();
  if (stop_requested_) return;
  const std::uint32_t attention = attention_.load(std::memory_order_relaxed);
  if (attention != 0) {
    if ((attention & ~static_cast<std::uint32_t>(kAttnIrq | kAttnVirq)) != 0) {
      StopHere();
      return;
    }
    if (IrqTarget()) {
      StopHere();
      return;
    }
  }
  // The host clock costs about five times a short block, so it is read
  // every kBlocksPerClockCheck blocks only: a deadline is seen at most that
  // many blocks late (microseconds), and earlier by a counter read or MMIO.
  if ((next_deadline_ != kNever || pvtime_started_) && --blocks_until_clock_check_ == 0) {
    blocks_until_clock_check_ = kBlocksPerClockCheck;
    const HostCount now = Now();
    if (now.value >= next_deadline_) UpdateTimerLines(now);
    // The stolen time of a guest that computes without exits: as KVM
    // updates it at each entry, here about once a millisecond.
    if (pvtime_started_ && now.value >= next_steal_update_) {
      UpdateStolenTime();
      next_steal_update_ = now.value + vm_.host_clock().FrequencyHz() / 1000;
    }
  }
}

void EmuVcpu::OnInterrupt(std::uint32_t intno) {
  if (in_trampoline_) {
    // SwitchEl's ERET was refused: it says so when the run ends here.
    uc_emu_stop(uc_);
    return;
  }
  FlushMmioWrite();
  // Between blocks: the PC is precise here. Synchronous exceptions are
  // taken where they happened, except an HVC from EL1 on a vCPU with EL2,
  // which goes to the guest hypervisor (an HVC at EL2 reaches this VMM).
  const unsigned el = CurrentEl();
  pending_el_ = el == 2 ? 2 : 1;
  switch (intno) {
    case kExcpHvc:
      if (el2_ && el == 1) {
        // ESR_EL2.ISS is the HVC's immediate; the PC is already past it.
        std::uint32_t insn = 0;
        uc_mem_read(uc_, ReadReg(UC_ARM64_REG_PC) - 4, &insn, sizeof(insn));
        pending_ = Pending::kException;
        pending_el_ = 2;
        pending_esr_ = EsrOf(kEcHvc64) | ((insn >> 5) & 0xffff);
        break;
      }
      HandleHypercall();
      return;
    case kExcpSmc:
      HandleHypercall();
      return;
    case kExcpUdef:
      if (EmulateUndefinedSysReg()) return;
      pending_ = Pending::kException;
      pending_esr_ = EsrOf(kEcUnknown);
      break;
    case kExcpSwi:
      pending_ = Pending::kException;
      pending_esr_ = EsrOf(kEcSvc64);
      break;
    case kExcpBkpt:
      pending_ = Pending::kException;
      pending_esr_ = EsrOf(kEcBrk64);
      break;
    default:
      pending_ = Pending::kFatal;
      pending_detail_ = "vCPU " + std::to_string(index_) + ": exception " + std::to_string(intno) +
                        " (Unicorn's number) at pc " + Hex(ReadReg(UC_ARM64_REG_PC)) +
                        ", which the emulated backend cannot deliver";
      break;
  }
  attention_.fetch_or(kAttnPending);
}

bool EmuVcpu::EmulateUndefinedSysReg() {
  if (!el2_ && !vm_.gic_sysregs()) return false;
  const std::uint64_t pc = ReadReg(UC_ARM64_REG_PC);
  std::uint32_t insn = 0;
  if (uc_mem_read(uc_, pc, &insn, sizeof(insn)) != UC_ERR_OK) return false;
  // MRS/MSR (register): 1101 0101 00 L 1 o0 op1 CRn CRm op2 Rt.
  if ((insn & 0xffd00000U) != 0xd5100000U) return false;
  const bool is_read = (insn & (1U << 21)) != 0;
  const arch::SysRegEncoding enc{
      static_cast<std::uint8_t>(2 + ((insn >> 19) & 1)),
      static_cast<std::uint8_t>((insn >> 16) & 7), static_cast<std::uint8_t>((insn >> 12) & 0xf),
      static_cast<std::uint8_t>((insn >> 8) & 0xf), static_cast<std::uint8_t>((insn >> 5) & 7)};
  const unsigned rt = insn & 0x1f;
  const unsigned el = CurrentEl();
  if (vm_.gic_sysregs() && vm_.sysregs() && !(enc.op1 == kOp1El12 && IsVheRedirected(enc))) {
    // Not a register of this CPU's: the VMM's GICv3 may have it.
    if (el == 0) return false;
    const std::uint64_t hcr = el2_ ? ReadSys(kHcrEl2).value_or(0) : 0;
    backend::SysRegAccess access;
    access.encoding = enc;
    access.write = !is_read;
    access.value = is_read || rt == arch::kXzr ? 0 : ReadReg(XReg(rt));
    access.el = el;
    access.imo = el2_ && el == 1 && (hcr & kHcrImo) != 0;
    access.fmo = el2_ && el == 1 && (hcr & (1ULL << 3)) != 0;
    const std::optional<std::uint64_t> v = vm_.sysregs()(index_, access);
    if (!v) return false;
    if (is_read && rt != arch::kXzr) WriteReg(XReg(rt), *v);
    WriteReg(UC_ARM64_REG_PC, pc + 4);
    return true;
  }
  if (!el2_ || enc.op1 != kOp1El12 || !IsVheRedirected(enc)) return false;
  if (el != 2 || (ReadSys(kHcrEl2).value_or(0) & kHcrE2h) == 0) return false;
  arch::SysRegEncoding target = enc;
  target.op1 = kOp1El1;
  if (is_read) {
    auto v = ReadSys(target);
    if (!v) return false;
    if (rt != arch::kXzr) WriteReg(XReg(rt), *v);
  } else {
    const std::uint64_t value = rt == arch::kXzr ? 0 : ReadReg(XReg(rt));
    if (!WriteSys(target, value)) return false;
  }
  WriteReg(UC_ARM64_REG_PC, pc + 4);
  return true;
}

std::uint32_t EmuVcpu::OnSysReg(uc_arm64_reg rt, const uc_arm64_cp_reg& cp, bool is_read) {
  FlushMmioWrite();
  const arch::SysRegEncoding enc{
      static_cast<std::uint8_t>(cp.op0), static_cast<std::uint8_t>(cp.op1),
      static_cast<std::uint8_t>(cp.crn), static_cast<std::uint8_t>(cp.crm),
      static_cast<std::uint8_t>(cp.op2)};
  const std::uint8_t rt_number = RtNumber(rt);
  auto answer = [&](std::uint64_t value) -> std::uint32_t {
    if (rt_number != arch::kXzr) WriteReg(rt, value);
    return 1;
  };
  if (el2_ && enc.op1 == kOp1El1 && IsVheRedirected(enc)) {
    // At EL2 with E2H the EL1 name means the EL2 register.
    if (CurrentEl() != 2 || (ReadSys(kHcrEl2).value_or(0) & kHcrE2h) == 0) return 0;
    arch::SysRegEncoding target = enc;
    target.op1 = kOp1El2;
    if (is_read) {
      auto v = ReadSys(target);
      return v ? answer(*v) : 0;
    }
    return WriteSys(target, cp.val) ? 1 : 0;
  }
  if (enc.crn == 0 && enc.op0 == 3 && is_read) {
    if (enc == kMpidrEl1) return answer(mpidr_);
    if (enc == kIdAa64Pfr0El1) {
      // What a KVM guest sees: no EL3 ([15:12]), EL2 (AArch64 only, [11:8])
      // only on a vCPU that has it, no GICv3 system registers ([27:24]),
      // no SVE, RAS, AMU or MPAM.
      std::uint64_t v = ReadSys(enc).value_or(0x11);
      v &= ~((0xfULL << 8) | (0xfULL << 12) | (0xfULL << 24) | (0xfULL << 28) | (0xfULL << 32) |
             (0xfULL << 40) | (0xfULL << 44));
      if (el2_) v |= 0x1ULL << 8;
      // GIC [27:24] = 1: the VMM's GICv3 answers the system registers.
      if (vm_.gic_sysregs()) v |= 0x1ULL << 24;
      return answer(v);
    }
    return 0;
  }
  if (enc.op0 != 3 || enc.crn != 14) return 0;
  arch::SysRegAccess access;
  access.encoding = enc;
  access.reg = arch::SysRegFromEncoding(enc);
  access.is_read = is_read;
  access.rt = rt_number;
  if (!access.reg) return 0;  // not a timer register: Unicorn UNDEFs it
  const arch::GuestContext context = Context();
  const HostCount now = Now();
  // A guest polling the counter sees its own timer fire without delay.
  if (now.value >= next_deadline_) UpdateTimerLines(now);
  const arch::Emulation e =
      arch::EmulateSysRegAccess(access, is_read ? 0 : cp.val, timers_, context, Env(now));
  switch (e.outcome) {
    case arch::AccessOutcome::kRead:
      return answer(e.value);
    case arch::AccessOutcome::kWritten:
      if (*access.reg == arch::SysReg::CNTKCTL_EL1 || *access.reg == arch::SysReg::CNTHCTL_EL2) {
        // Unicorn's copy too: its own EL0 and EL1 access checks read it.
        return 0;
      }
      UpdateTimerLines(now);
      return 1;
    case arch::AccessOutcome::kWriteIgnored:
      return 1;
    case arch::AccessOutcome::kUndefined:
    case arch::AccessOutcome::kTrapToEl1:
    case arch::AccessOutcome::kTrapToEl2:
      // Unicorn's own decode takes the UNDEF precisely (an EL2 register
      // at EL1, an encoding it does not know, EL0 denied by CNTKCTL_EL1).
      return 0;
  }
  return 0;
}

std::uint64_t EmuVcpu::OnMmioRead(std::uint64_t address, unsigned size) {
  FlushMmioWrite();
  // The VMM sees the timer lines as they are now before it answers.
  UpdateTimerLines(Now());
  if (!vm_.mmio()) return 0;
  return vm_.mmio()(index_, backend::MmioAccess{address, size, false, 0});
}

void EmuVcpu::OnMmioWrite(std::uint64_t address, unsigned size, std::uint64_t value) {
  // Unicorn 2.0.1 gives its MMIO regions no access size, so QEMU's memory
  // core splits an 8-byte store into two 4-byte calls, low half first,
  // back to back. A 4-byte store at an 8-byte aligned address is held: if
  // the next callback is the upper half, the two go to the VMM as the one
  // 8-byte store they were (the trace marker, the counter probes and the
  // bulk print need it); anything else (another access, the next block, an
  // exception, a system register, the end of the run) lets it go alone.
  // Two 4-byte stores the guest made back to back to A and A+4 reach the
  // VMM as one 8-byte store, which its bus gives to a 32-bit device as the
  // same two stores.
  if (held_write_ && size == 4 && address == held_write_->address + 4) {
    const HeldWrite low = *held_write_;
    held_write_.reset();
    UpdateTimerLines(Now());
    if (!vm_.mmio()) return;
    (void)vm_.mmio()(index_, backend::MmioAccess{low.address, 8, true,
                                                 (low.value & 0xffffffffULL) | (value << 32)});
    return;
  }
  FlushMmioWrite();
  if (size == 4 && address % 8 == 0) {
    held_write_ = HeldWrite{address, value};
    return;
  }
  UpdateTimerLines(Now());
  if (!vm_.mmio()) return;
  (void)vm_.mmio()(index_, backend::MmioAccess{address, size, true, value});
}

void EmuVcpu::FlushMmioWrite() {
  if (!held_write_) return;
  const HeldWrite w = *held_write_;
  held_write_.reset();
  UpdateTimerLines(Now());
  if (!vm_.mmio()) return;
  (void)vm_.mmio()(index_, backend::MmioAccess{w.address, 4, true, w.value});
}

void EmuVcpu::HandleHypercall() {
  const std::uint64_t x0 = ReadReg(UC_ARM64_REG_X0);
  const std::uint64_t x1 = ReadReg(UC_ARM64_REG_X1);
  const std::uint64_t x2 = ReadReg(UC_ARM64_REG_X2);
  const std::uint64_t x3 = ReadReg(UC_ARM64_REG_X3);
  const auto fid = static_cast<std::uint32_t>(x0);
  // Calls that take no SMC64 form are matched as SMC32; the rest either way.
  const std::uint32_t base = fid & ~kSmc64;
  std::int64_t ret = kNotSupported;
  auto supported = [](std::uint32_t f) {
    const std::uint32_t b = f & ~kSmc64;
    return f == kSmcccVersion || f == kSmcccArchFeatures || f == kPsciVersion ||
           b == kPsciCpuSuspend || f == kPsciCpuOff || b == kPsciCpuOn || b == kPsciAffinityInfo ||
           f == kPsciMigrateInfoType || f == kPsciSystemOff || f == kPsciSystemReset ||
           f == kPsciFeatures;
  };
  if (fid == kSmcccVersion) {
    ret = 0x10001;  // SMCCC 1.1
  } else if (fid == kSmcccArchFeatures) {
    ret = static_cast<std::uint32_t>(x1) == kPvTimeFeatures ? kSuccess : kNotSupported;
  } else if (fid == kPsciVersion) {
    ret = 0x10000;  // PSCI 1.0: 0.2 plus PSCI_FEATURES, which SMCCC 1.1 discovery needs
  } else if (base == kPsciCpuSuspend) {
    ret = kSuccess;  // a standby that returns at once (PSCI allows it)
  } else if (fid == kPsciCpuOff) {
    pending_ = Pending::kCpuOff;
    attention_.fetch_or(kAttnPending);
    return;
  } else if (base == kPsciCpuOn) {
    EmuVcpu* target = vm_.VcpuByMpidr(x1);
    if (target == nullptr) {
      ret = kInvalidParameters;
    } else if (target == this) {
      ret = kAlreadyOn;
    } else {
      ret = target->PowerOn(x2, x3);
    }
  } else if (base == kPsciAffinityInfo) {
    EmuVcpu* target = x2 == 0 ? vm_.VcpuByMpidr(x1) : nullptr;
    ret = target == nullptr ? kInvalidParameters : target->AffinityInfo();
  } else if (fid == kPsciMigrateInfoType) {
    ret = 2;  // no Trusted OS to migrate
  } else if (fid == kPsciSystemOff || fid == kPsciSystemReset) {
    pending_ = fid == kPsciSystemOff ? Pending::kShutdown : Pending::kReset;
    attention_.fetch_or(kAttnPending);
    return;
  } else if (fid == kPsciFeatures) {
    ret = supported(static_cast<std::uint32_t>(x1)) ? kSuccess : kNotSupported;
  } else if (fid == kPvTimeFeatures) {
    const auto f = static_cast<std::uint32_t>(x1);
    ret = f == kPvTimeFeatures || f == kPvTimeSt ? kSuccess : kNotSupported;
  } else if (fid == kPvTimeSt) {
    ret = PvTimeSt();
  }
  WriteReg(UC_ARM64_REG_X0, static_cast<std::uint64_t>(ret));
}

std::int64_t EmuVcpu::PowerOn(std::uint64_t entry, std::uint64_t context_id) {
  {
    std::lock_guard lock(mu_);
    if (powered_on_) return on_pending_ ? kOnPending : kAlreadyOn;
    powered_on_ = true;
    on_pending_ = true;
    on_entry_ = entry;
    on_context_ = context_id;
  }
  wake_.notify_all();
  return kSuccess;
}

std::int64_t EmuVcpu::AffinityInfo() {
  std::lock_guard lock(mu_);
  if (!powered_on_) return 1;
  return on_pending_ ? 2 : 0;
}

// --- cross-thread controls ---

void EmuVcpu::SetIrqLine(bool level) {
  irq_line_.store(level);
  if (level) {
    attention_.fetch_or(kAttnIrq);
  } else {
    attention_.fetch_and(~static_cast<std::uint32_t>(kAttnIrq));
  }
  if (level) {
    { std::lock_guard lock(mu_); }
    wake_.notify_all();
  }
}

void EmuVcpu::SetVirtualIrqLine(bool level) {
  virq_line_.store(level);
  if (level) {
    attention_.fetch_or(kAttnVirq);
    { std::lock_guard lock(mu_); }
    wake_.notify_all();
  } else {
    attention_.fetch_and(~static_cast<std::uint32_t>(kAttnVirq));
  }
}

void EmuVcpu::RequestExit(bool on) {
  // The request is its attention bit alone (one atomic state, as for Kick).
  if (on) {
    attention_.fetch_or(kAttnExitRequest);
    { std::lock_guard lock(mu_); }
    wake_.notify_all();
  } else {
    attention_.fetch_and(~static_cast<std::uint32_t>(kAttnExitRequest));
  }
}

void EmuVcpu::Kick() {
  // One bit is the whole kick: set here, taken by Interrupted in one atomic
  // step (a separate flag beside it could be left set without the bit, or
  // the bit without the flag, which stopped every block without ending the
  // Run: a vCPU stuck at its IRQ vector).
  attention_.fetch_or(kAttnKick);
  { std::lock_guard lock(mu_); }
  wake_.notify_all();
}

bool EmuVcpu::Interrupted() {
  if (ExitRequested()) return true;
  if ((attention_.fetch_and(~static_cast<std::uint32_t>(kAttnKick)) & kAttnKick) != 0) return true;
  return false;
}

// --- sleeping ---

EmuVcpu::Wake EmuVcpu::WaitForInterrupt() {
  for (;;) {
    if (Interrupted()) return Wake::kInterrupted;
    // A WFI ends on any interrupt, masked or not.
    if (irq_line_.load() || virq_line_.load()) return Wake::kRun;
    if ((attention_.load() & (kAttnResync | kAttnPending)) != 0) return Wake::kRun;
    const HostCount now = Now();
    if (next_deadline_ != kNever && now.value >= next_deadline_) {
      UpdateTimerLines(now);
      continue;
    }
    std::unique_lock lock(mu_);
    auto woken = [this] {
      return irq_line_.load() || virq_line_.load() || (attention_.load() & kAttnKick) != 0 ||
             ExitRequested() || (attention_.load() & (kAttnResync | kAttnPending)) != 0;
    };
    if (next_deadline_ == kNever) {
      wake_.wait(lock, woken);
    } else {
      wake_.wait_until(lock, vm_.host_clock().TimeOf(HostCount{next_deadline_}), woken);
    }
  }
}

EmuVcpu::Wake EmuVcpu::WaitForPowerOn() {
  std::unique_lock lock(mu_);
  wake_.wait(lock, [this] {
    return powered_on_ || (attention_.load() & kAttnKick) != 0 || ExitRequested();
  });
  if (powered_on_) return Wake::kRun;
  lock.unlock();
  Interrupted();  // consume the kick
  return Wake::kInterrupted;
}

// --- the run loop ---

Result<backend::Exit> EmuVcpu::Run() {
  const backend::Exit interrupted{backend::ExitKind::kInterrupted, {}};
  if (skipped_registers_ != 0) {
    std::fprintf(
        stderr,
        "vtvmm: vCPU %u: %u restored registers have no place on the emulated CPU (AArch32, "
        "firmware, ID, debug or PMU registers it does not hold) and were left out\n",
        index_, skipped_registers_);
    skipped_registers_ = 0;
  }
  if (ExitRequested()) return interrupted;
  if (Interrupted()) return interrupted;
  const std::string who = "vCPU " + std::to_string(index_);
  runner_.store(std::this_thread::get_id());
  attention_.fetch_and(~static_cast<std::uint32_t>(kAttnResync));
  if (auto r = SyncLayout(); !r) return tl::unexpected(r.error());
  SyncClock();
  UpdateStolenTime();
  UpdateTimerLines(Now());
  for (;;) {
    bool powered_on = false;
    {
      std::lock_guard lock(mu_);
      powered_on = powered_on_;
    }
    if (!powered_on) {
      if (WaitForPowerOn() == Wake::kInterrupted) return interrupted;
    }
    {
      std::unique_lock lock(mu_);
      if (on_pending_) {
        // PSCI CPU_ON: the entry point at the vCPU's highest EL (EL1h, or
        // EL2h for a guest hypervisor), MMU and caches off, x0 the context id.
        const std::uint64_t entry = on_entry_;
        const std::uint64_t context = on_context_;
        on_pending_ = false;
        lock.unlock();
        const std::uint64_t start = (el2_ ? kPstateEl2h : kPstateEl1h) | kPstateDaif;
        if (CurrentEl() != ((start >> 2) & 3)) {
          if (auto r = SwitchEl(start, entry); !r) return tl::unexpected(r.error());
        } else {
          WritePstate(start);
        }
        const arch::SysRegEncoding sctlr_enc = el2_ ? kSctlrEl2 : kSctlrEl1;
        const std::uint64_t sctlr = ReadSys(sctlr_enc).value_or(0);
        (void)WriteSys(sctlr_enc, sctlr & ~std::uint64_t{(1U << 0) | (1U << 2) | (1U << 12)});
        WriteReg(UC_ARM64_REG_X0, context);
        WriteReg(UC_ARM64_REG_PC, entry);
      }
    }
    if (Interrupted()) return interrupted;
    if ((attention_.load() & kAttnResync) != 0) {
      attention_.fetch_and(~static_cast<std::uint32_t>(kAttnResync));
      if (auto r = SyncLayout(); !r) return tl::unexpected(r.error());
      SyncClock();
      UpdateTimerLines(Now());
    }
    attention_.fetch_and(~static_cast<std::uint32_t>(kAttnPending));
    const Pending pending = pending_;
    pending_ = Pending::kNone;
    switch (pending) {
      case Pending::kNone:
        break;
      case Pending::kShutdown:
        return backend::Exit{backend::ExitKind::kShutdown, {}};
      case Pending::kReset:
        return backend::Exit{backend::ExitKind::kReset, {}};
      case Pending::kCpuOff: {
        std::lock_guard lock(mu_);
        powered_on_ = false;
        continue;
      }
      case Pending::kException:
        if (auto r = TakeException(pending_el_, 0x000, pending_esr_); !r) {
          return tl::unexpected(r.error());
        }
        break;
      case Pending::kFatal:
        return backend::Exit{backend::ExitKind::kOther, pending_detail_};
    }
    if (const std::optional<unsigned> target = IrqTarget()) {
      if (auto r = TakeException(*target, 0x080, std::nullopt); !r) {
        return tl::unexpected(r.error());
      }
    }
    stop_requested_ = false;
    const std::uint64_t pc = ReadReg(UC_ARM64_REG_PC);
    // In the guest from here: a layout change now waits for this vCPU to
    // take it (AwaitLayout), or was seen just below.
    in_guest_.store(true);
    if ((attention_.load() & kAttnResync) != 0) {
      in_guest_.store(false);
      continue;
    }
    const uc_err err = uc_emu_start(uc_, pc, kUntil, 0, 0);
    FlushMmioWrite();
    in_guest_.store(false);
    if (err != UC_ERR_OK) {
      return backend::Exit{backend::ExitKind::kOther, who + ": " + UcError(err) + " at pc " +
                                                          Hex(ReadReg(UC_ARM64_REG_PC)) +
                                                          " (started at " + Hex(pc) + ")"};
    }
    // A kick or an exit request ends the Run here (the VMM may have a line
    // to set before the guest goes on); what else stopped it is taken at
    // the top of the loop, in this Run or the next.
    if (Interrupted()) return interrupted;
    if (stop_requested_ || pending_ != Pending::kNone) continue;
    if (ReadReg(UC_ARM64_REG_PC) == kUntil) {
      return backend::Exit{backend::ExitKind::kOther,
                           who + ": the guest jumped to address 0 (from " + Hex(pc) + ")"};
    }
    // Unicorn stopped on its own: a WFI, with the PC after it.
    if (WaitForInterrupt() == Wake::kInterrupted) return interrupted;
    UpdateStolenTime();
  }
}

}  // namespace vtime::emu
