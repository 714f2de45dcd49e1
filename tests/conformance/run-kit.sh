#!/bin/sh
# The guest programs as a conformance kit: runs every guest program on one
# platform and prints one verdict line per check, for compare.sh to set the
# platforms side by side (guests/README.md, "Conformance kit").
#
# Usage: run-kit.sh [-o FILE] PLATFORM GUEST_DIR [VMM]
#   qemu        QEMU TCG, virt with GICv3, the guest at EL1 (VMM: the
#               qemu-system-aarch64 to use; default on PATH); the el2_*
#               programs at EL2 (virtualization=on)
#   qemu-gicv2  the same with GICv2, without the el2_* programs (they
#               need a GICv3)
#   emu         vtvmm --backend emu (VMM: that vtvmm; default on PATH); the
#               el2_* programs with --el2 on vtvmm's GICv3
#   kvm         vtvmm on KVM, the in-kernel vGICv3 (VMM: vtvmm; default on
#               PATH): the lab's platform. The el2_* programs run when
#               `vtvmm --probe` finds nested virtualization.
#   exec        another VMM: VMM is a command run as `VMM PROG CPUS ELF`,
#               the console input on its stdin, that boots ELF at EL1 on a
#               virt-layout machine with CPUS vCPUs and copies the UART to
#               its stdout. KIT_EL2=1: it can start a guest at EL2 too.
# Environment: KIT_PROGS (a subset, in order), KIT_QUIET=1 (no guest
# output), KIT_TIMEOUT (seconds per program, default 120), KIT_ATTEMPTS
# (runs of a program with a failed check, default 2: the last counts).
#
# Output, tab-separated, besides each guest's output prefixed "  [prog] ":
#   check   PLATFORM PROG NAME TAG VERDICT     one per check line: VERDICT is
#                                              "ok" or "not ok", TAG "arch",
#                                              "vtvmm:<choice>" or "untagged"
#   program PLATFORM PROG STATUS DETAIL        STATUS: ran (DETAIL exit=N
#                                              vmm_status=N attempts=N),
#                                              incomplete (no exit line),
#                                              not-run or variant (DETAIL why)
# -o FILE also writes those lines to FILE. Exit status: 1 if an arch check
# failed, an untagged check appeared, a program did not complete, or (on emu
# and kvm) a vtvmm check failed; vtvmm checks elsewhere are informational.
set -u
outfile=''
if [ "${1:-}" = -o ]; then
  outfile=${2:?-o needs a file}
  shift 2
fi
platform=${1:?usage: run-kit.sh [-o FILE] PLATFORM GUEST_DIR [VMM]}
g=${2:?guest dir}
vmm=${3:-}
limit=${KIT_TIMEOUT:-120}
case $platform in
  qemu | qemu-gicv2) vmm=${vmm:-qemu-system-aarch64} ;;
  emu | kvm) vmm=${vmm:-vtvmm} ;;
  exec) [ -n "$vmm" ] || { echo "run-kit: exec needs a VMM command" >&2; exit 2; } ;;
  *) echo "run-kit: unknown platform '$platform'" >&2; exit 2 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
verdicts=$tmp/verdicts
: >"$verdicts"
failures=0
tab=$(printf '\t')

# Every program the Makefile builds: the kit's, then the variants that share
# a kit program's checks and only last longer or lie to vtvmm's host side.
kit_progs="counters timer timer_storm smp ipi_storm clockwatch timer_migrate reset console_input
  trace_marker pvtime pvtime_scribble el2_idle el2_nested el2_watch"
variants="clockwatch_long:clockwatch trace_marker_long:trace_marker el2_watch_long:el2_watch
  el2_nested_lie:el2_nested"

el2=no
case $platform in
  kvm) "$vmm" --probe 2>&1 | grep -q "nested virtualization (EL2): yes" && el2=yes ;;
  emu | qemu) el2=yes ;;
  exec) [ "${KIT_EL2:-0}" = 1 ] && el2=yes ;;
esac

emit() {  # a verdict or program line
  printf '%s\n' "$1" | tee -a "$verdicts"
}

# cpus PROG: the vCPUs a program needs.
cpus() {
  case $1 in smp | ipi_storm) echo 2 ;; *) echo 1 ;; esac
}

# boot PROG ELF: runs one program on the platform, its console on stdout.
boot() {
  prog=$1 elf=$2 n=$(cpus "$1")
  case $platform in
    qemu | qemu-gicv2)
      gic=3
      [ "$platform" = qemu-gicv2 ] && gic=2
      # QEMU reboots at SYSTEM_RESET unless -no-reboot; reset needs the reboot.
      reboot=-no-reboot
      [ "$prog" = reset ] && reboot=''
      # A guest hypervisor starts at EL2 (HCR_EL2.E2H = 0 there, and PSCI
      # over SMC: the guests' runtime copes with both).
      virt=''
      case $prog in el2_*) virt=',virtualization=on' ;; esac
      timeout "$limit" "$vmm" -M "virt,gic-version=$gic$virt" -cpu max -smp "$n" -m 256M -nographic \
        $reboot -kernel "$elf" 2>&1
      ;;
    emu | kvm)
      backend=''
      [ "$platform" = emu ] && backend='--backend emu'
      case $prog in
        reset) extra='--guest-counter 0' ;;
        pvtime | pvtime_scribble) extra='--pvtime on' ;;
        el2_*) extra='--el2' ;;
        *) extra='' ;;
      esac
      "$vmm" $backend --timeout "$limit" --cpus "$n" $extra "$elf" 2>&1
      ;;
    exec)
      "$vmm" "$prog" "$n" "$elf" 2>&1
      ;;
  esac
}

# parse_checks PROG LOG: the check lines of LOG as verdict lines. A check line
# is "ok|not ok - <program>: <name>[: key=value...] # <tag>": the tag ends
# the line, the details follow the last ": " when that starts with key=.
parse_checks() {
  tr -d '\r' <"$2" | awk -v plat="$platform" -v prog="$1" '
    /^(ok|not ok) - / {
      v = ($1 == "ok") ? "ok" : "not ok"
      s = $0
      sub(/^(ok|not ok) - /, "", s)
      tag = "untagged"
      if (match(s, / # [a-z][a-z0-9:-]*$/)) {
        tag = substr(s, RSTART + 3)
        s = substr(s, 1, RSTART - 1)
      }
      i = index(s, ": ")
      if (i) s = substr(s, i + 2)
      last = 0
      for (p = 1; (j = index(substr(s, p), ": ")) > 0; p += j + 1) last = p + j - 1
      if (last && substr(s, last + 2) ~ /^[A-Za-z_][A-Za-z0-9_]*=/) s = substr(s, 1, last - 1)
      printf "check\t%s\t%s\t%s\t%s\t%s\n", plat, prog, s, tag, v
    }'
}

# failing FILE: the verdicts in FILE that fail this platform.
failing() {
  awk -F '\t' -v plat="$platform" '
    $1 == "check" {
      if ($5 == "untagged") { print "untagged: " $3 ": " $4; next }
      if ($6 != "ok" && ($5 == "arch" || plat == "emu" || plat == "kvm")) print $5 ": " $3 ": " $4
    }' "$1"
}

for prog in ${KIT_PROGS:-$kit_progs}; do
  elf=$g/$prog.elf
  if [ ! -f "$elf" ]; then
    emit "program${tab}$platform${tab}$prog${tab}incomplete${tab}no $elf"
    failures=$((failures + 1))
    continue
  fi
  case $prog in
    el2_*)
      if [ "$el2" != yes ]; then
        case $platform in
          qemu-gicv2) why='needs a GICv3 (with its virtualization interface): the qemu platform runs it' ;;
          *) why='needs nested virtualization (EL2), which this kernel lacks' ;;
        esac
        emit "program${tab}$platform${tab}$prog${tab}not-run${tab}$why"
        continue
      fi
      ;;
  esac
  log=$tmp/$prog.log
  # A program with a failed check runs once more (KIT_ATTEMPTS, default 2):
  # on a loaded host an emulator's vCPU thread can miss a timing bound. The
  # last attempt counts; the program line says how many it took.
  attempt=1
  while :; do
    if [ "$prog" = console_input ]; then
      { seq 1 300; printf '\004'; } | boot "$prog" "$elf" >"$log"
    else
      boot "$prog" "$elf" >"$log" </dev/null
    fi
    status=$?
    [ "${KIT_QUIET:-0}" = 1 ] || sed "s|^|  [$prog] |" "$log"
    parse_checks "$prog" "$log" >"$tmp/v"
    code=$(tr -d '\r' <"$log" | sed -n 's/^vtguest: exit \([0-9]*\).*/\1/p' | tail -n 1)
    if [ "$attempt" -ge "${KIT_ATTEMPTS:-2}" ] || { [ -n "$code" ] && [ -z "$(failing "$tmp/v")" ]; }; then
      break
    fi
    echo "run-kit: $prog failed on attempt $attempt; running it again"
    attempt=$((attempt + 1))
  done
  while IFS= read -r line; do emit "$line"; done <"$tmp/v"
  if [ -n "$code" ]; then
    emit "program${tab}$platform${tab}$prog${tab}ran${tab}exit=$code vmm_status=$status attempts=$attempt"
  else
    emit "program${tab}$platform${tab}$prog${tab}incomplete${tab}no exit line, vmm_status=$status"
    failures=$((failures + 1))
  fi
done
if [ -z "${KIT_PROGS:-}" ]; then
  for v in $variants; do
    emit "program${tab}$platform${tab}${v%%:*}${tab}variant${tab}the checks of ${v#*:}, longer or for vtvmm's host side; not run by the kit"
  done
fi

# The verdict on this platform alone.
bad=$(failing "$verdicts")
if [ -n "$bad" ]; then
  printf '%s\n' "$bad" | sed 's/^/run-kit: failed: /'
  failures=$((failures + $(printf '%s\n' "$bad" | wc -l)))
fi
[ -n "$outfile" ] && cp "$verdicts" "$outfile"
summary=$(awk -F '\t' '$1 == "check" { n[$5 == "arch" ? "arch" : "vtvmm"]++; if ($6 == "ok") ok[$5 == "arch" ? "arch" : "vtvmm"]++ }
  END { printf "arch %d/%d, vtvmm %d/%d", ok["arch"], n["arch"], ok["vtvmm"], n["vtvmm"] }' "$verdicts")
echo "run-kit: $platform: $summary checks passed, $failures failure(s)"
[ "$failures" -eq 0 ]
