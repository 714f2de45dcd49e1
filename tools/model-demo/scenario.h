// The model demonstration: a small script language that drives the pure
// timer model (VmClock, the per-vCPU timers and the trapped-access
// emulation) along a timeline, and a player that prints, step by step, what
// the guest reads and when each timer line rises and falls.
//
// The player is pure: it reads no clock and does no I/O besides writing to
// the std::ostream it is given. Time comes only from the script.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vtime/arch/sysreg.h"
#include "vtime/arch/timer.h"
#include "vtime/arch/vm_clock.h"
#include "vtime/result.h"
#include "vtime/units.h"

namespace vtime::model_demo {

/// What a script line asks for.
enum class CommandKind : std::uint8_t {
  kCreateVcpu,    ///< at T create-vcpu
  kWriteCounter,  ///< at T write-counter vcpu N virtual|physical VALUE
  kSetVmOffset,   ///< at T set-vm-offset VALUE
  kGuestRead,     ///< at T guest vcpu N read REG
  kGuestWrite,    ///< at T guest vcpu N write REG VALUE
  kShow,          ///< at T show
  kSave,          ///< at T save NAME
  kRestore,       ///< at T restore NAME [host-counter H] [policy freeze]
  kNote,          ///< at T note TEXT
  kRunUntil,      ///< run-until T
};

/// One parsed script line.
struct Command {
  int line = 0;  ///< 1-based line number in the script.
  CommandKind kind = CommandKind::kShow;
  /// When it happens, in ticks of the host counter in force (the source
  /// host's, or after a restore with host-counter, the destination's).
  HostCount time;
  std::uint32_t vcpu = 0;                                   ///< write-counter, guest
  arch::CounterKind counter = arch::CounterKind::kVirtual;  ///< write-counter
  arch::SysReg reg = arch::SysReg::CNTVCT_EL0;              ///< guest
  std::uint64_t value = 0;  ///< write-counter, set-vm-offset, guest write
  std::string text;         ///< save/restore: the snapshot name; note: the text
  /// restore: the destination host's counter at this instant; empty for a
  /// restore onto the same host (the time axis then continues).
  std::optional<HostCount> host_counter;
};

/// A whole script, in order.
struct Script {
  std::vector<Command> commands;
};

/// Parses a number: ticks as a plain integer (decimal, `_` separators
/// allowed, or 0x hexadecimal), or a duration with a unit (`ns`, `us`, `ms`,
/// `s`; a decimal fraction such as `1.5ms` is allowed) converted to ticks at
/// `freq`, rounded down. With `allow_negative`, a leading `-` gives the value
/// modulo 2^64 (a negative TVAL or offset). Fails with a one-line message.
Result<std::uint64_t> ParseCount(std::string_view token, FrequencyHz freq,
                                 bool allow_negative = false);

/// Parses a script. Every error names the line: "line 7: ...". Also checks
/// that time never goes backwards on the axis in force, and that a restore
/// names a snapshot saved earlier.
Result<Script> ParseScript(std::string_view text, FrequencyHz freq);

/// A timer line transition, as the player reported it.
struct LineEvent {
  int line = 0;    ///< The script line whose command (or whose wait) it belongs to.
  HostCount time;  ///< Host count on the axis in force.
  std::uint32_t vcpu = 0;
  arch::TimerId timer = arch::TimerId::kEl1Virtual;
  bool high = false;  ///< Rose (true) or fell (false).
  Ticks count;        ///< The count the timer compares against, then.
  Ticks cval;         ///< Its CVAL, then.

  friend bool operator==(const LineEvent&, const LineEvent&) = default;
};

/// What a play produced besides the printed log.
struct PlayLog {
  std::vector<LineEvent> line_events;
  /// Every value a guest read returned, in order (for tests and tools).
  std::vector<std::uint64_t> guest_reads;
};

/// Plays `script` with a counter at `freq`, writing the event log to `out`.
/// Fails on a command the state does not allow (a vCPU that does not exist,
/// a guest access while the VM is paused by a save, ...), with the line.
Result<PlayLog> PlayScript(const Script& script, FrequencyHz freq, std::ostream& out);

/// A host count as a time on its axis: "1620.000000ms".
std::string FormatHostTime(HostCount t, FrequencyHz freq);

/// The script language, for --help and --list-commands.
std::string_view CommandReference();

}  // namespace vtime::model_demo
