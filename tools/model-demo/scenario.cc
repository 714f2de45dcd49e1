#include "scenario.h"

#include <array>
#include <charconv>
#include <limits>
#include <map>
#include <ostream>
#include <set>
#include <span>
#include <utility>

#include "vtime/arch/emulate.h"
#include "vtime/arch/esr.h"
#include "vtime/hex.h"

namespace vtime::model_demo {
namespace {

// 128-bit intermediates keep unit conversions exact.
__extension__ using U128 = unsigned __int128;

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t kNsPerSecond = 1'000'000'000;
constexpr std::string_view kNumberHint =
    "expected ticks (12345, 1_000, 0x3039) or a duration (10ms, 1.5s, 250us, 40ns)";

using arch::SysReg;
using arch::TimerId;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

std::string Quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

tl::unexpected<Error> LineError(int line, ErrorCode code, std::string_view message) {
  return Fail(code, "line " + std::to_string(line) + ": " + std::string(message));
}

// ---------------------------------------------------------------------------
// Numbers.

// Digits with `_` separators removed; false if a character is not a digit of
// the base (or `_`).
bool CollectDigits(std::string_view s, bool hex, std::string& digits) {
  for (char c : s) {
    if (c == '_') continue;
    const char l = Lower(c);
    if (!IsDigit(c) && !(hex && l >= 'a' && l <= 'f')) return false;
    digits.push_back(c);
  }
  return true;
}

// Nanoseconds per unit, 0 for plain ticks, nothing for an unknown unit.
std::optional<std::uint64_t> NanosecondsPerUnit(std::string_view unit) {
  if (unit.empty()) return 0;
  if (unit == "ns") return 1;
  if (unit == "us") return 1'000;
  if (unit == "ms") return 1'000'000;
  if (unit == "s") return kNsPerSecond;
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Registers and timers.

std::optional<SysReg> RegisterByName(std::string_view name) {
  for (SysReg r : arch::AllSysRegs()) {
    if (IEquals(arch::NameOf(r), name)) return r;
  }
  return std::nullopt;
}

bool NameHas(SysReg reg, std::string_view part) {
  return arch::NameOf(reg).find(part) != std::string_view::npos;
}
bool IsTimerCtl(SysReg reg) { return NameHas(reg, "_CTL_"); }
bool IsTimerTval(SysReg reg) { return NameHas(reg, "_TVAL_"); }

// The timer a register of a timer names, as seen from EL1 of a guest
// without EL2 (the only guest the demonstration runs).
std::optional<TimerId> TimerOf(SysReg reg) {
  const std::string_view n = arch::NameOf(reg);
  if (n.starts_with("CNTV_")) return TimerId::kEl1Virtual;
  if (n.starts_with("CNTP_")) return TimerId::kEl1Physical;
  if (n.starts_with("CNTHV_")) return TimerId::kEl2Virtual;
  if (n.starts_with("CNTHP_")) return TimerId::kEl2Physical;
  return std::nullopt;
}

// The counter a timer compares against, by its register name.
std::string_view CounterName(TimerId id) {
  return id == TimerId::kEl1Virtual ? "CNTVCT" : "CNTPCT";
}

std::string CtlText(std::uint64_t ctl) {
  std::string s;
  auto add = [&s](std::string_view flag) {
    if (!s.empty()) s += '|';
    s += flag;
  };
  if ((ctl & arch::ctl::kEnable) != 0) add("ENABLE");
  if ((ctl & arch::ctl::kImask) != 0) add("IMASK");
  if ((ctl & arch::ctl::kIstatus) != 0) add("ISTATUS");
  const std::uint64_t rest = ctl & ~(arch::ctl::kEnable | arch::ctl::kImask | arch::ctl::kIstatus);
  if (rest != 0) add(Hex(rest));
  return s.empty() ? "0" : s;
}

// A CTL value: `ENABLE`, `IMASK`, `ENABLE|IMASK`, or numbers, joined by `|`.
Result<std::uint64_t> ParseCtlValue(std::string_view token, FrequencyHz freq) {
  std::uint64_t value = 0;
  while (true) {
    const std::size_t bar = token.find('|');
    const std::string_view part = token.substr(0, bar);
    if (IEquals(part, "ENABLE")) {
      value |= arch::ctl::kEnable;
    } else if (IEquals(part, "IMASK")) {
      value |= arch::ctl::kImask;
    } else if (IEquals(part, "ISTATUS")) {
      value |= arch::ctl::kIstatus;
    } else {
      const Result<std::uint64_t> n = ParseCount(part, freq);
      if (!n) {
        return Fail(ErrorCode::kInvalidArgument, "bad CTL value " + Quoted(part) +
                                                     ": expected ENABLE, IMASK, " +
                                                     "ENABLE|IMASK or a number");
      }
      value |= *n;
    }
    if (bar == std::string_view::npos) break;
    token.remove_prefix(bar + 1);
  }
  return value;
}

// ---------------------------------------------------------------------------
// The parser.

struct Verb {
  std::string_view name;
  std::string_view usage;  // after "at TIME "
};
constexpr std::array<Verb, 9> kVerbs = {{
    {"create-vcpu", "create-vcpu"},
    {"write-counter", "write-counter vcpu N virtual|physical VALUE"},
    {"set-vm-offset", "set-vm-offset VALUE"},
    {"guest", "guest vcpu N read REG  |  guest vcpu N write REG VALUE"},
    {"show", "show"},
    {"save", "save NAME"},
    {"restore", "restore NAME [host-counter H] [policy freeze]"},
    {"note", "note TEXT"},
    {"run-until", "run-until TIME"},
}};

const Verb* FindVerb(std::string_view name) {
  for (const Verb& v : kVerbs) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

std::vector<std::string_view> Tokenize(std::string_view line) {
  std::vector<std::string_view> tokens;
  std::size_t i = 0;
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
  while (i < line.size()) {
    while (i < line.size() && space(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !space(line[i])) ++i;
    if (i > start) tokens.push_back(line.substr(start, i - start));
  }
  return tokens;
}

class LineParser {
 public:
  LineParser(int line, std::string_view text, std::span<const std::string_view> tokens,
             FrequencyHz freq)
      : line_(line), text_(text), tok_(tokens), freq_(freq) {}

  Result<Command> Parse() {
    Command c;
    c.line = line_;
    if (tok_[0] == "run-until") {
      verb_ = FindVerb("run-until");
      auto time = Time(1);
      if (!time) return tl::unexpected(time.error());
      c.time = *time;
      c.kind = CommandKind::kRunUntil;
      if (auto r = Arity(2, 2); !r) return tl::unexpected(r.error());
      return c;
    }
    if (tok_[0] != "at") {
      if (const Verb* v = FindVerb(tok_[0])) {
        return Bad("'" + std::string(v->name) + "' needs a time: write 'at TIME " +
                   std::string(v->usage) + "'");
      }
      return Bad("unknown command " + Quoted(tok_[0]) +
                 " (a line is 'at TIME COMMAND ...' or 'run-until TIME'; see --list-commands)");
    }
    if (tok_.size() < 2) return Bad("missing argument: 'at' needs a TIME and a command");
    auto time = Time(1);
    if (!time) return tl::unexpected(time.error());
    c.time = *time;
    if (tok_.size() < 3) return Bad("missing command after 'at " + std::string(tok_[1]) + "'");
    verb_ = FindVerb(tok_[2]);
    if (verb_ == nullptr || verb_->name == "run-until") {
      return Bad("unknown command " + Quoted(tok_[2]) + " (see --list-commands)");
    }
    Result<void> r = Ok();
    const std::string_view v = verb_->name;
    if (v == "create-vcpu") {
      c.kind = CommandKind::kCreateVcpu;
      r = Arity(3, 3);
    } else if (v == "write-counter") {
      c.kind = CommandKind::kWriteCounter;
      r = WriteCounter(c);
    } else if (v == "set-vm-offset") {
      c.kind = CommandKind::kSetVmOffset;
      r = Arity(4, 4);
      if (r) r = Value(3, c.value, /*allow_negative=*/true);
    } else if (v == "guest") {
      r = Guest(c);
    } else if (v == "show") {
      c.kind = CommandKind::kShow;
      r = Arity(3, 3);
    } else if (v == "save") {
      c.kind = CommandKind::kSave;
      r = Arity(4, 4);
      if (r) c.text = std::string(tok_[3]);
    } else if (v == "restore") {
      c.kind = CommandKind::kRestore;
      r = Restore(c);
    } else if (v == "note") {
      c.kind = CommandKind::kNote;
      r = Arity(4, kMax);
      // The text as written, spacing included.
      if (r) {
        const auto start = static_cast<std::size_t>(tok_[3].data() - text_.data());
        c.text = std::string(text_.substr(start));
      }
      while (!c.text.empty() &&
             (c.text.back() == ' ' || c.text.back() == '\t' || c.text.back() == '\r')) {
        c.text.pop_back();
      }
    }
    if (!r) return tl::unexpected(r.error());
    return c;
  }

 private:
  tl::unexpected<Error> Bad(std::string_view message) const {
    return LineError(line_, ErrorCode::kInvalidArgument, message);
  }

  std::string Usage() const {
    return "usage: " + std::string(verb_->name == "run-until" ? "" : "at TIME ") +
           std::string(verb_->usage);
  }

  // Between min and max tokens in all.
  Result<void> Arity(std::size_t min, std::uint64_t max) const {
    if (tok_.size() < min) {
      return Bad("missing argument for '" + std::string(verb_->name) + "' (" + Usage() + ")");
    }
    if (tok_.size() > max) {
      return Bad("unexpected " + Quoted(tok_[static_cast<std::size_t>(max)]) + " after '" +
                 std::string(verb_->name) + "' (" + Usage() + ")");
    }
    return Ok();
  }

  Result<HostCount> Time(std::size_t i) const {
    auto n = ParseCount(tok_[i], freq_);
    if (!n) return Bad("bad time: " + n.error().context);
    return HostCount{*n};
  }

  Result<void> Value(std::size_t i, std::uint64_t& out, bool allow_negative) const {
    auto n = ParseCount(tok_[i], freq_, allow_negative);
    if (!n) return Bad(n.error().context);
    out = *n;
    return Ok();
  }

  // "vcpu N" at tok_[i], tok_[i + 1].
  Result<void> Vcpu(std::size_t i, std::uint32_t& out) const {
    if (tok_[i] != "vcpu") {
      return Bad("expected 'vcpu N', found " + Quoted(tok_[i]) + " (" + Usage() + ")");
    }
    const std::string_view n = tok_[i + 1];
    const auto res = std::from_chars(n.data(), n.data() + n.size(), out);
    if (res.ec != std::errc() || res.ptr != n.data() + n.size()) {
      return Bad("bad vCPU number " + Quoted(n) + " (vCPUs are numbered 0, 1, ...)");
    }
    return Ok();
  }

  Result<void> WriteCounter(Command& c) const {
    if (auto r = Arity(7, 7); !r) return r;
    if (auto r = Vcpu(3, c.vcpu); !r) return r;
    if (tok_[5] == "virtual") {
      c.counter = arch::CounterKind::kVirtual;
    } else if (tok_[5] == "physical") {
      c.counter = arch::CounterKind::kPhysical;
    } else {
      return Bad("expected 'virtual' or 'physical', found " + Quoted(tok_[5]));
    }
    return Value(6, c.value, /*allow_negative=*/true);
  }

  Result<void> Guest(Command& c) const {
    if (auto r = Arity(7, 8); !r) return r;
    if (auto r = Vcpu(3, c.vcpu); !r) return r;
    const std::optional<SysReg> reg = RegisterByName(tok_[6]);
    if (!reg) {
      return Bad("unknown register " + Quoted(tok_[6]) +
                 " (a counter or timer register by its Arm name, e.g. CNTV_TVAL_EL0)");
    }
    c.reg = *reg;
    if (tok_[5] == "read") {
      c.kind = CommandKind::kGuestRead;
      return Arity(7, 7);
    }
    if (tok_[5] != "write") return Bad("expected 'read' or 'write', found " + Quoted(tok_[5]));
    c.kind = CommandKind::kGuestWrite;
    if (tok_.size() < 8) return Arity(8, 8);
    if (IsTimerCtl(c.reg)) {
      auto v = ParseCtlValue(tok_[7], freq_);
      if (!v) return Bad(v.error().context);
      c.value = *v;
      return Ok();
    }
    return Value(7, c.value, /*allow_negative=*/true);
  }

  Result<void> Restore(Command& c) const {
    if (auto r = Arity(4, 8); !r) return r;
    c.text = std::string(tok_[3]);
    for (std::size_t i = 4; i < tok_.size(); i += 2) {
      if (i + 1 >= tok_.size()) {
        return Bad("missing argument after " + Quoted(tok_[i]) + " (" + Usage() + ")");
      }
      if (tok_[i] == "host-counter") {
        auto h = ParseCount(tok_[i + 1], freq_);
        if (!h) return Bad("bad host-counter: " + h.error().context);
        c.host_counter = HostCount{*h};
      } else if (tok_[i] == "policy") {
        if (tok_[i + 1] != "freeze") {
          return Bad("unsupported policy " + Quoted(tok_[i + 1]) +
                     " (only 'freeze' is modelled: the guest resumes at the count it "
                     "paused at)");
        }
      } else {
        return Bad("unexpected " + Quoted(tok_[i]) + " (" + Usage() + ")");
      }
    }
    return Ok();
  }

  int line_;
  std::string_view text_;
  std::span<const std::string_view> tok_;
  FrequencyHz freq_;
  const Verb* verb_ = nullptr;
};

// ---------------------------------------------------------------------------
// The player.

std::string Signed(Ticks t) {
  if (t.value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return "-" + std::to_string(0 - t.value);
  }
  return std::to_string(t.value);
}

// "+5" / "-150000000": how far a count moved.
std::string Delta(Ticks from, Ticks to) {
  const std::string s = Signed(to - from);
  return s.front() == '-' ? s : "+" + s;
}

struct SavedVcpu {
  std::uint64_t cntkctl_el1 = 0;
  std::array<std::uint64_t, arch::kTimerCount> ctl{};
  std::array<Ticks, arch::kTimerCount> cval{};
};

struct Snapshot {
  int line = 0;
  HostCount host_at_save;
  Ticks virtual_count;
  Ticks physical_count;
  std::vector<SavedVcpu> vcpus;
};

constexpr std::size_t kColumn = 20;  // where the event text starts

class Player {
 public:
  Player(FrequencyHz freq, std::ostream& out) : freq_(freq), out_(out) {}

  Result<void> Play(const Command& c) {
    line_ = c.line;
    if (c.time < now_) {
      return LineError(c.line, ErrorCode::kInvalidArgument,
                       "time " + FormatHostTime(c.time, freq_) + " is before the current time " +
                           FormatHostTime(now_, freq_));
    }
    AdvanceTo(c.time);
    switch (c.kind) {
      case CommandKind::kCreateVcpu:
        return CreateVcpu();
      case CommandKind::kWriteCounter:
        return WriteCounter(c);
      case CommandKind::kSetVmOffset:
        return SetVmOffset(c);
      case CommandKind::kGuestRead:
      case CommandKind::kGuestWrite:
        return GuestAccess(c);
      case CommandKind::kShow:
        Show();
        return Ok();
      case CommandKind::kSave:
        return Save(c);
      case CommandKind::kRestore:
        return Restore(c);
      case CommandKind::kNote:
        Event() << "-- " << c.text << '\n';
        return Ok();
      case CommandKind::kRunUntil:
        Event() << "run-until: the timeline ends here\n";
        return Ok();
    }
    return Ok();
  }

  PlayLog TakeLog() { return std::move(log_); }

 private:
  // -- Output --------------------------------------------------------------

  std::ostream& Event() {
    std::string prefix = "t=" + FormatHostTime(now_, freq_);
    prefix.resize(std::max(prefix.size() + 2, kColumn), ' ');
    return out_ << prefix;
  }
  std::ostream& More(std::size_t indent = 2) { return out_ << std::string(kColumn + indent, ' '); }

  tl::unexpected<Error> Refuse(ErrorCode code, std::string_view message) const {
    return LineError(line_, code, message);
  }

  Result<void> CheckVcpu(std::uint32_t vcpu) const {
    if (vcpu >= vcpus_.size()) {
      return Refuse(ErrorCode::kOutOfRange, "vcpu " + std::to_string(vcpu) + " does not exist (" +
                                                std::to_string(vcpus_.size()) + " created so far)");
    }
    return Ok();
  }

  Result<void> CheckRunning(std::string_view what) const {
    if (paused_) {
      return Refuse(ErrorCode::kBadState,
                    std::string(what) + ": the VM is paused since 'save " + paused_name_ +
                        "' at line " + std::to_string(paused_line_) + "; restore a snapshot first");
    }
    return Ok();
  }

  arch::TimerCounts CountsOf(std::size_t vcpu) const {
    return clock_.CountsFor(now_, vcpus_[vcpu].nested());
  }

  std::uint32_t ActiveMask(std::size_t vcpu) const {
    return (1U << vcpus_[vcpu].active_timers()) - 1;
  }

  std::string TimerState(std::size_t vcpu, TimerId id) const {
    const arch::Timer& t = vcpus_[vcpu].timers[id];
    const Ticks count = CountsOf(vcpu)[id];
    return std::string(CounterName(id)) + "=" + std::to_string(count.value) +
           ", CVAL=" + std::to_string(t.cval().value) + ", CTL=" + CtlText(t.ctl());
  }

  // -- Timer lines ---------------------------------------------------------

  // Compares every line with the one last reported and reports the changes.
  // `cause` is empty for a change the passing of time made.
  void Reconcile(std::string_view cause) {
    if (paused_) return;
    for (std::size_t i = 0; i < vcpus_.size(); ++i) {
      const arch::TimerCounts counts = CountsOf(i);
      const std::uint32_t lines = vcpus_[i].timers.OutputLines(counts) & ActiveMask(i);
      const std::uint32_t changed = lines ^ lines_[i];
      for (std::size_t t = 0; t < vcpus_[i].active_timers(); ++t) {
        if ((changed & (1U << t)) == 0) continue;
        const auto id = static_cast<TimerId>(t);
        const arch::Timer& timer = vcpus_[i].timers[id];
        const bool high = (lines & (1U << t)) != 0;
        std::ostream& o = Event();
        o << "vcpu" << i << ' ' << arch::NameOf(id) << " timer line " << (high ? "RISES" : "FALLS");
        if (!cause.empty()) {
          o << " (" << TimerState(i, id) << ") - " << cause << '\n';
        } else if (high) {
          o << ": " << CounterName(id) << '=' << counts[id].value
            << " reached CVAL=" << timer.cval().value << '\n';
        } else {
          o << ": " << CounterName(id) << " wrapped past 2^64-1 to " << counts[id].value
            << ", below CVAL=" << timer.cval().value << '\n';
        }
        log_.line_events.push_back(LineEvent{line_, now_, static_cast<std::uint32_t>(i), id, high,
                                             counts[id], timer.cval()});
      }
      lines_[i] = lines;
    }
  }

  // Lets the counters run to `t`, reporting every line that rises when its
  // count reaches CVAL (or falls when the count wraps around 2^64).
  void AdvanceTo(HostCount t) {
    while (!paused_) {
      std::optional<std::uint64_t> next;  // ticks from now_
      for (std::size_t i = 0; i < vcpus_.size(); ++i) {
        const arch::TimerCounts counts = CountsOf(i);
        for (std::size_t k = 0; k < vcpus_[i].active_timers(); ++k) {
          const auto id = static_cast<TimerId>(k);
          const arch::Timer& timer = vcpus_[i].timers[id];
          std::optional<Ticks> delta;
          if ((lines_[i] & (1U << k)) == 0) {
            delta = timer.TicksUntilFire(counts[id]);
          } else if (timer.cval().value != 0) {
            delta = Ticks{0 - counts[id].value};  // until the count wraps to 0
          }
          if (!delta || delta->value == 0 || delta->value > t.value - now_.value) continue;
          if (!next || delta->value < *next) next = delta->value;
        }
      }
      if (!next) break;
      now_ = HostCount{now_.value + *next};
      Reconcile("");
    }
    now_ = t;
  }

  // -- Offsets -------------------------------------------------------------

  struct OffsetsBefore {
    Ticks voffset;
    Ticks poffset;
    arch::OffsetSource vsource;
    arch::OffsetSource psource;
  };

  OffsetsBefore Offsets() const {
    return {clock_.virtual_offset(), clock_.physical_offset(), clock_.virtual_source(),
            clock_.physical_source()};
  }

  // Reports how the VM-wide offsets moved and what every vCPU's counter did.
  void ReportOffsets(const OffsetsBefore& before, std::size_t existing_vcpus) {
    auto report = [&](std::string_view which, std::string_view counter, Ticks from, Ticks to,
                      arch::OffsetSource source) {
      std::ostream& o = More();
      o << "VM " << which << " offset " << Signed(from) << " -> " << Signed(to) << " ("
        << arch::NameOf(source) << ")";
      if (existing_vcpus > 0 && from != to) {
        const Ticks old_count = GuestView(now_, from);
        const Ticks new_count = GuestView(now_, to);
        o << ": " << counter << " of " << (existing_vcpus == 1 ? "vcpu0" : "every vCPU")
          << " jumps " << old_count.value << " -> " << new_count.value << " ("
          << Delta(old_count, new_count) << ")";
      }
      o << '\n';
    };
    if (before.voffset != clock_.virtual_offset() || before.vsource != clock_.virtual_source()) {
      report("virtual", "CNTVCT", before.voffset, clock_.virtual_offset(), clock_.virtual_source());
    }
    if (before.poffset != clock_.physical_offset() || before.psource != clock_.physical_source()) {
      report("physical", "CNTPCT", before.poffset, clock_.physical_offset(),
             clock_.physical_source());
    }
  }

  // -- Commands ------------------------------------------------------------

  Result<void> CreateVcpu() {
    if (auto r = CheckRunning("create-vcpu"); !r) return r;
    const OffsetsBefore before = Offsets();
    const std::size_t existing = vcpus_.size();
    clock_.OnVcpuCreated(now_);
    vcpus_.emplace_back();
    lines_.push_back(0);
    Event() << "create-vcpu: vcpu" << existing << " created"
            << (clock_.vm_offset_set() ? " (the VM offset is set: creation resets no offset)"
                                       : " (legacy rule: the VM's offsets restart from now)")
            << '\n';
    ReportOffsets(before, existing);
    More() << "every vCPU now reads CNTVCT=" << clock_.VirtualCount(now_).value
           << ", CNTPCT=" << clock_.PhysicalCount(now_).value << '\n';
    Reconcile("after the offset change");
    return Ok();
  }

  Result<void> WriteCounter(const Command& c) {
    if (auto r = CheckRunning("write-counter"); !r) return r;
    if (auto r = CheckVcpu(c.vcpu); !r) return r;
    const bool virt = c.counter == arch::CounterKind::kVirtual;
    const std::string_view reg = virt ? "CNTVCT" : "CNTPCT";
    const OffsetsBefore before = Offsets();
    std::ostream& o = Event();
    o << "VMM writes vcpu" << c.vcpu << ' ' << reg << " = " << c.value << " (ONE_REG "
      << (virt ? "KVM_REG_ARM_TIMER_CNT" : "KVM_REG_ARM_PTIMER_CNT") << "): ";
    const Result<arch::CounterWriteEffect> effect =
        clock_.WriteCounterValue(c.counter, Ticks{c.value}, now_, vcpus_[c.vcpu].nested().enabled);
    if (!effect) {
      o << "refused: " << effect.error().Message() << '\n';
      return Ok();
    }
    if (*effect == arch::CounterWriteEffect::kIgnored) {
      const Ticks count = virt ? clock_.VirtualCount(now_) : clock_.PhysicalCount(now_);
      o << "accepted and IGNORED (the VM offset is set; offsets unchanged, " << reg
        << " still reads " << count.value << ")\n";
      return Ok();
    }
    o << "applied VM-wide (legacy rule: the offset moves so that " << reg << " reads " << c.value
      << " now)\n";
    ReportOffsets(before, vcpus_.size());
    Reconcile("after the offset change");
    return Ok();
  }

  Result<void> SetVmOffset(const Command& c) {
    if (auto r = CheckRunning("set-vm-offset"); !r) return r;
    const OffsetsBefore before = Offsets();
    std::ostream& o = Event();
    o << "VMM sets the VM offset to " << Signed(Ticks{c.value}) << " (KVM_ARM_SET_COUNTER_OFFSET)";
    const Result<void> r = clock_.SetVmOffset(Ticks{c.value});
    if (!r) {
      o << ": refused: " << r.error().Message() << '\n';
      return Ok();
    }
    o << ": both counters move; later counter-value writes are ignored\n";
    ReportOffsets(before, vcpus_.size());
    Reconcile("after the offset change");
    return Ok();
  }

  Result<void> GuestAccess(const Command& c) {
    const bool is_read = c.kind == CommandKind::kGuestRead;
    if (auto r = CheckRunning("guest access"); !r) return r;
    if (auto r = CheckVcpu(c.vcpu); !r) return r;
    // The real path: the syndrome a trap would report, decoded, emulated.
    const std::uint64_t esr = arch::EncodeSysRegTrap(arch::EncodingOf(c.reg), is_read, 0);
    const Result<arch::SysRegAccess> access = arch::DecodeSysRegTrap(esr);
    if (!access || access->reg != c.reg) {
      return Refuse(ErrorCode::kMalformed,
                    "model error: the trap syndrome " + Hex(esr) + " of " +
                        std::string(arch::NameOf(c.reg)) + " does not decode back to it" +
                        (access ? std::string() : ": " + access.error().Message()));
    }
    arch::VcpuTimerState& vcpu = vcpus_[c.vcpu];
    const arch::EmulationEnv env{&clock_, now_, freq_};
    const arch::Emulation em =
        arch::EmulateSysRegAccess(*access, is_read ? 0 : c.value, vcpu, arch::GuestContext{}, env);

    std::ostream& o = Event();
    o << "vcpu" << c.vcpu << " guest ";
    if (is_read) {
      o << "MRS x0, " << arch::NameOf(c.reg);
    } else {
      o << "MSR " << arch::NameOf(c.reg) << ", x0";
      if (IsTimerCtl(c.reg)) {
        o << " (x0=" << CtlText(c.value) << ')';
      } else if (c.value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        o << " (x0=" << Hex(c.value) << " = " << Signed(Ticks{c.value}) << ')';
      } else {
        o << " (x0=" << c.value << ')';
      }
    }
    o << "  [ESR_EL2 " << Hex(esr) << "]: ";
    const std::optional<TimerId> timer = TimerOf(c.reg);
    const bool timer_exists = timer && static_cast<std::size_t>(*timer) < vcpu.active_timers();
    switch (em.outcome) {
      case arch::AccessOutcome::kRead:
        log_.guest_reads.push_back(em.value);
        o << "reads " << em.value;
        if (IsTimerCtl(c.reg)) o << " = " << CtlText(em.value);
        if (IsTimerTval(c.reg)) {
          o << " (as signed 32-bit: "
            << static_cast<std::int32_t>(static_cast<std::uint32_t>(em.value)) << ')';
        }
        o << '\n';
        break;
      case arch::AccessOutcome::kWritten:
        o << "written";
        if (timer_exists)
          o << "; " << arch::NameOf(*timer) << " timer: " << TimerState(c.vcpu, *timer);
        o << '\n';
        break;
      case arch::AccessOutcome::kWriteIgnored:
        o << "write ignored (the counter frequency is the host's)\n";
        break;
      case arch::AccessOutcome::kUndefined:
        o << "UNDEFINED (the guest takes an UNDEF exception)\n";
        break;
      case arch::AccessOutcome::kTrapToEl1:
        o << "trap to the guest's EL1\n";
        break;
      case arch::AccessOutcome::kTrapToEl2:
        o << "trap to the guest's EL2\n";
        break;
    }
    if (!is_read) Reconcile("after the " + std::string(arch::NameOf(c.reg)) + " write");
    return Ok();
  }

  void Show() {
    Event() << "show: VM virtual offset " << Signed(clock_.virtual_offset()) << " ("
            << arch::NameOf(clock_.virtual_source()) << "), physical offset "
            << Signed(clock_.physical_offset()) << " (" << arch::NameOf(clock_.physical_source())
            << ")\n";
    More() << "VM offset set: " << (clock_.vm_offset_set() ? "yes" : "no")
           << "; physical offset applied by " << arch::NameOf(clock_.physical_mechanism())
           << (clock_.PhysicalAccessesTrap() ? " (guest CNTPCT/CNTP_* accesses trap)" : "") << '\n';
    if (paused_) {
      More() << "the VM is PAUSED (save " << paused_name_ << " at line " << paused_line_
             << "): no vCPU runs, lines are not reported\n";
    }
    if (vcpus_.empty()) More() << "no vCPU yet\n";
    for (std::size_t i = 0; i < vcpus_.size(); ++i) {
      const arch::VcpuTimerState& vcpu = vcpus_[i];
      const arch::TimerCounts counts = CountsOf(i);
      More() << "vcpu" << i << ": CNTVCT=" << clock_.VirtualCount(now_, vcpu.nested()).value
             << ", CNTPCT=" << clock_.PhysicalCount(now_).value << '\n';
      for (std::size_t k = 0; k < vcpu.active_timers(); ++k) {
        const auto id = static_cast<TimerId>(k);
        const arch::Timer& t = vcpu.timers[id];
        std::string name(arch::NameOf(id));
        name.resize(12, ' ');
        More(4) << name << ": CTL=" << CtlText(t.ctl()) << ", CVAL=" << t.cval().value
                << ", TVAL=" << t.TvalSigned(counts[id])
                << ", ISTATUS=" << (t.Istatus(counts[id]) ? 1 : 0)
                << ", line=" << (t.Output(counts[id]) ? "HIGH" : "low") << '\n';
      }
      const std::optional<arch::Deadline> d =
          vcpu.timers.NextDeadline(counts, vcpu.active_timers());
      if (!d) {
        More(4) << "next deadline: none (no timer is enabled and unmasked)\n";
      } else if (d->delta.value == 0) {
        More(4) << "next deadline: " << arch::NameOf(d->timer) << " line is high now\n";
      } else {
        More(4) << "next deadline: " << arch::NameOf(d->timer) << " in " << d->delta.value
                << " ticks";
        if (d->delta.value <= kMax - now_.value) {
          out_ << " (t=" << FormatHostTime(HostCount{now_.value + d->delta.value}, freq_) << ')';
        }
        out_ << '\n';
      }
    }
  }

  Result<void> Save(const Command& c) {
    if (auto r = CheckRunning("save"); !r) return r;
    if (vcpus_.empty()) return Refuse(ErrorCode::kBadState, "save: no vCPU to save yet");
    Snapshot s;
    s.line = c.line;
    s.host_at_save = now_;
    s.virtual_count = clock_.VirtualCount(now_);
    s.physical_count = clock_.PhysicalCount(now_);
    for (const arch::VcpuTimerState& vcpu : vcpus_) {
      SavedVcpu sv;
      sv.cntkctl_el1 = vcpu.cntkctl_el1;
      for (std::size_t k = 0; k < arch::kTimerCount; ++k) {
        const arch::Timer& t = vcpu.timers[static_cast<TimerId>(k)];
        sv.ctl[k] = t.ctl();
        sv.cval[k] = t.cval();
      }
      s.vcpus.push_back(sv);
    }
    Event() << "save " << c.text
            << ": the VM pauses; saved the guest's counts CNTVCT=" << s.virtual_count.value
            << ", CNTPCT=" << s.physical_count.value
            << " and, per vCPU, CTL and CVAL (TVAL and ISTATUS are derived, never saved)\n";
    for (std::size_t i = 0; i < s.vcpus.size(); ++i) {
      std::ostream& o = More();
      o << "vcpu" << i << ':';
      for (std::size_t k = 0; k < vcpus_[i].active_timers(); ++k) {
        o << ' ' << arch::NameOf(static_cast<TimerId>(k)) << " CTL=" << CtlText(s.vcpus[i].ctl[k])
          << " CVAL=" << s.vcpus[i].cval[k].value << ';';
      }
      o << " CNTKCTL_EL1=" << Hex(s.vcpus[i].cntkctl_el1) << '\n';
    }
    snapshots_[c.text] = std::move(s);
    paused_ = true;
    paused_name_ = c.text;
    paused_line_ = c.line;
    return Ok();
  }

  Result<void> Restore(const Command& c) {
    const auto it = snapshots_.find(c.text);
    if (it == snapshots_.end()) {
      return Refuse(ErrorCode::kInvalidArgument,
                    "restore: no snapshot named " + Quoted(c.text) + " was saved");
    }
    const Snapshot& s = it->second;
    Event() << "restore " << c.text << " (saved at line " << s.line << ", policy freeze)"
            << (paused_ ? "" : ": the running VM is replaced") << '\n';
    if (c.host_counter) {
      now_ = *c.host_counter;
      ++host_;
      Event() << "=== destination host #" << host_ << ": its counter reads " << now_.value
              << " now; times from here on are on its axis ===\n";
    }
    // A new VM on this host: the VMM creates the vCPUs (legacy resets
    // happen), sets the VM offset, then restores CTL and CVAL.
    clock_ = arch::VmClock(clock_.features());
    vcpus_.clear();
    lines_.clear();
    paused_ = false;
    for (std::size_t i = 0; i < s.vcpus.size(); ++i) {
      static_cast<void>(CreateVcpu());
    }
    const Ticks offset = OffsetFor(now_, s.virtual_count);
    Event() << "freeze: VM offset = host now " << now_.value << " - saved CNTVCT "
            << s.virtual_count.value << " = " << Signed(offset) << '\n';
    const OffsetsBefore before = Offsets();
    if (const Result<void> r = clock_.SetVmOffset(offset); !r) {
      return Refuse(r.error().code, "restore: " + r.error().Message());
    }
    ReportOffsets(before, vcpus_.size());
    for (std::size_t i = 0; i < s.vcpus.size(); ++i) {
      arch::VcpuTimerState& vcpu = vcpus_[i];
      vcpu.cntkctl_el1 = s.vcpus[i].cntkctl_el1;
      std::ostream& o = Event();
      o << "VMM restores vcpu" << i << " (after the offset):";
      for (std::size_t k = 0; k < vcpu.active_timers(); ++k) {
        arch::Timer& t = vcpu.timers[static_cast<TimerId>(k)];
        t.WriteCtl(s.vcpus[i].ctl[k]);
        t.WriteCval(s.vcpus[i].cval[k]);
        o << ' ' << arch::NameOf(static_cast<TimerId>(k)) << " CTL=" << CtlText(t.ctl())
          << " CVAL=" << t.cval().value << ';';
      }
      o << " CNTKCTL_EL1=" << Hex(vcpu.cntkctl_el1) << '\n';
    }
    const Ticks vcount = clock_.VirtualCount(now_);
    const Ticks pcount = clock_.PhysicalCount(now_);
    Event() << "guest resumes: CNTVCT=" << vcount.value << " (saved " << s.virtual_count.value
            << (vcount == s.virtual_count ? ": continuous" : ": MOVED")
            << "), CNTPCT=" << pcount.value << " (saved " << s.physical_count.value
            << (pcount == s.physical_count ? ": continuous" : "") << ")\n";
    if (pcount != s.physical_count) {
      More() << "note: one VM offset sets both counters, so CNTPCT resumes at CNTVCT; "
             << "on the source they differed by " << Signed(s.physical_count - s.virtual_count)
             << '\n';
    }
    Reconcile("restored");
    return Ok();
  }

  FrequencyHz freq_;
  std::ostream& out_;
  int line_ = 0;
  HostCount now_{0};
  int host_ = 0;  // 0: the source host; n: the nth destination
  arch::VmClock clock_;
  std::vector<arch::VcpuTimerState> vcpus_;
  std::vector<std::uint32_t> lines_;  // the last reported lines, bit per timer
  bool paused_ = false;
  std::string paused_name_;
  int paused_line_ = 0;
  std::map<std::string, Snapshot> snapshots_;
  PlayLog log_;
};

}  // namespace

Result<std::uint64_t> ParseCount(std::string_view token, FrequencyHz freq, bool allow_negative) {
  const std::string shown(token);
  auto bad = [&shown](std::string_view why) {
    return Fail(ErrorCode::kInvalidArgument,
                "bad number " + Quoted(shown) + ": " + std::string(why));
  };
  bool negative = false;
  if (!token.empty() && token.front() == '-') {
    if (!allow_negative) return bad("a negative value is not allowed here");
    negative = true;
    token.remove_prefix(1);
  }
  if (token.empty()) return bad(kNumberHint);

  std::uint64_t magnitude = 0;
  if (token.size() > 2 && token[0] == '0' && Lower(token[1]) == 'x') {
    std::string digits;
    if (!CollectDigits(token.substr(2), /*hex=*/true, digits) || digits.empty()) {
      return bad(kNumberHint);
    }
    const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, 16);
    if (res.ec == std::errc::result_out_of_range) return bad("more than 2^64-1");
    if (res.ec != std::errc() || res.ptr != digits.data() + digits.size()) return bad(kNumberHint);
  } else {
    std::size_t i = 0;
    while (i < token.size() && (IsDigit(token[i]) || token[i] == '_')) ++i;
    const std::string_view whole = token.substr(0, i);
    std::string_view fraction;
    if (i < token.size() && token[i] == '.') {
      const std::size_t start = ++i;
      while (i < token.size() && IsDigit(token[i])) ++i;
      fraction = token.substr(start, i - start);
    }
    const std::string_view unit = token.substr(i);
    std::string digits;
    CollectDigits(whole, false, digits);
    const std::size_t whole_digits = digits.size();
    digits.append(fraction);
    if (digits.empty() || whole_digits == 0) return bad(kNumberHint);
    const std::optional<std::uint64_t> unit_ns = NanosecondsPerUnit(unit);
    if (!unit_ns) {
      return bad("unknown unit " + Quoted(unit) +
                 " (ns, us, ms or s; a plain integer is ticks of the host counter)");
    }
    if (*unit_ns == 0 && !fraction.empty()) return bad("a fraction needs a unit, as in 1.5ms");
    if (fraction.size() > 18) return bad("too many decimals");
    std::uint64_t mantissa = 0;
    const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), mantissa);
    if (res.ec == std::errc::result_out_of_range) return bad("more than 2^64-1");
    if (res.ec != std::errc() || res.ptr != digits.data() + digits.size()) return bad(kNumberHint);
    if (*unit_ns == 0) {
      magnitude = mantissa;
    } else {
      // ticks = mantissa / 10^decimals * unit_ns * freq / 1e9, rounded down.
      const U128 scale = static_cast<U128>(*unit_ns) * freq.hz();
      const U128 max128 = ~static_cast<U128>(0);
      if (mantissa != 0 && scale > max128 / mantissa) return bad("more than 2^64-1 ticks");
      U128 denominator = kNsPerSecond;
      for (std::size_t d = 0; d < fraction.size(); ++d) denominator *= 10;
      const U128 ticks = static_cast<U128>(mantissa) * scale / denominator;
      if (ticks > kMax) return bad("more than 2^64-1 ticks");
      magnitude = static_cast<std::uint64_t>(ticks);
    }
  }
  return negative ? 0 - magnitude : magnitude;
}

Result<Script> ParseScript(std::string_view text, FrequencyHz freq) {
  Script script;
  int line = 0;
  HostCount last{0};
  int last_line = 0;
  std::set<std::string, std::less<>> saved;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view content = text.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    if (const std::size_t hash = content.find('#'); hash != std::string_view::npos) {
      content = content.substr(0, hash);
    }
    const std::vector<std::string_view> tokens = Tokenize(content);
    if (tokens.empty()) continue;
    Result<Command> command = LineParser(line, content, tokens, freq).Parse();
    if (!command) return tl::unexpected(command.error());
    if (command->time < last) {
      return LineError(line, ErrorCode::kInvalidArgument,
                       "time goes backwards: " + FormatHostTime(command->time, freq) +
                           " is before " + FormatHostTime(last, freq) + " (line " +
                           std::to_string(last_line) + ")");
    }
    last = command->time;
    last_line = line;
    if (command->kind == CommandKind::kSave) saved.insert(command->text);
    if (command->kind == CommandKind::kRestore) {
      if (!saved.contains(command->text)) {
        return LineError(line, ErrorCode::kInvalidArgument,
                         "restore of unknown snapshot " + Quoted(command->text) +
                             " (no earlier 'save " + command->text + "')");
      }
      if (command->host_counter) last = *command->host_counter;
    }
    script.commands.push_back(std::move(*command));
  }
  return script;
}

Result<PlayLog> PlayScript(const Script& script, FrequencyHz freq, std::ostream& out) {
  Player player(freq, out);
  for (const Command& c : script.commands) {
    if (Result<void> r = player.Play(c); !r) return tl::unexpected(r.error());
  }
  return player.TakeLog();
}

std::string FormatHostTime(HostCount t, FrequencyHz freq) {
  const U128 ns = static_cast<U128>(t.value) * kNsPerSecond / freq.hz();
  const auto ms = static_cast<std::uint64_t>(ns / 1'000'000);
  std::string frac = std::to_string(static_cast<std::uint64_t>(ns % 1'000'000));
  frac.insert(0, 6 - frac.size(), '0');
  return std::to_string(ms) + "." + frac + "ms";
}

std::string_view CommandReference() {
  return R"(One command per line; '#' starts a comment. TIME is a reading of the host
counter: plain integers are ticks (1_000, 0x3e8), or a duration from the
counter's zero with a unit: ns, us, ms, s (1.5ms), converted at --frequency.
Times never go backwards. Values (VALUE, H) take the same forms; VALUE may be
negative (modulo 2^64) where that makes sense (offsets, counter values, TVAL).

  at TIME create-vcpu
      Create the next vCPU (vcpu0, vcpu1, ...). Legacy rule (before set-vm-offset):
      the VM's virtual offset restarts from now for EVERY vCPU, physical offset 0.
  at TIME write-counter vcpu N virtual|physical VALUE
      The VMM writes CNTVCT/CNTPCT by value (ONE_REG). Legacy: moves the VM-wide
      offset; after set-vm-offset: accepted and ignored.
  at TIME set-vm-offset VALUE
      KVM_ARM_SET_COUNTER_OFFSET: both offsets take VALUE.
  at TIME guest vcpu N read REG
  at TIME guest vcpu N write REG VALUE
      A guest MRS/MSR of a counter or timer register by its Arm name
      (CNTVCT_EL0, CNTV_TVAL_EL0, CNTP_CVAL_EL0, CNTV_CTL_EL0, ...), from EL1,
      run through the trap path: ESR_EL2 encode, decode, emulate. CTL values may
      be written as ENABLE, IMASK or ENABLE|IMASK.
  at TIME show
      Offsets and their source; per vCPU the counts, each timer's CTL, CVAL,
      TVAL, ISTATUS, line, and the next deadline.
  at TIME save NAME
      Pause the VM and save the guest's counts and per vCPU CTL/CVAL (TVAL and
      ISTATUS are derived, never saved). A paused VM takes no guest or VMM
      commands until a restore.
  at TIME restore NAME [host-counter H] [policy freeze]
      Replace the VM by a new one built from snapshot NAME: create its vCPUs,
      set the VM offset so that the guest resumes at the count it paused at
      (freeze: offset = host now - saved CNTVCT), then restore CTL and CVAL.
      With host-counter H the VM moves to a destination host whose counter
      reads H at this instant: TIME is still on the old host's axis, and every
      later TIME is on the destination's (so it must be >= H). Without it the
      restore is onto the same host and the axis continues.
  at TIME note TEXT
      Print TEXT in the log.
  run-until TIME
      Let time run to TIME, reporting timer lines that rise.

Between commands every timer line that rises (its count reaches CVAL) is
reported at the exact host time; lines that rise or fall because of a register
write, a counter write or an offset change are reported at that command.
)";
}

}  // namespace vtime::model_demo
