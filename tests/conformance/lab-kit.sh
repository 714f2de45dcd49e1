#!/bin/sh
# The kit's KVM column: run-kit.sh's kvm platform, natively on an arm64
# host with /dev/kvm or in one boot of the arm64 lab, its verdicts written
# to OUT for compare.sh.
# Usage: lab-kit.sh native OUT GUEST_DIR VTVMM
#        lab-kit.sh lab|lab-el2 OUT GUEST_DIR ARM64_VTVMM LAB_RUN [LAB_RUN_ARGS...]
# lab-el2 runs only the el2_* programs and fails unless they ran: its lab
# must have nested virtualization (--kernel newest --append
# kvm-arm.mode=nested --cpu neoverse-v1).
set -u
mode=${1:?usage: lab-kit.sh native|lab|lab-el2 OUT GUEST_DIR VTVMM [LAB_RUN...]}
out=${2:?verdict file}
g=${3:?guest dir}
vtvmm=${4:?vtvmm}
shift 4
kit=$(dirname "$0")/run-kit.sh
tab=$(printf '\t')
log=$(mktemp)
trap 'rm -f "$log"' EXIT
case $mode in
  native)
    sh "$kit" -o "$out" kvm "$g" "$vtvmm"
    exit $?
    ;;
  lab) env_args='' ;;
  lab-el2) env_args='KIT_PROGS=el2_idle el2_nested el2_watch' ;;
  *) echo "lab-kit: unknown mode '$mode'" >&2; exit 2 ;;
esac
[ $# -ge 1 ] || { echo "lab-kit: no lab/run command" >&2; exit 2; }
if [ -n "$env_args" ]; then set -- "$@" --env "$env_args"; fi
"$@" --add "$vtvmm:/bin/vtvmm" --add "$g:/guests" --add "$kit:/bin/run-kit.sh" \
  -- sh /bin/run-kit.sh kvm /guests >"$log" 2>&1
status=$?
cat "$log"
grep "^\(check\|program\)$tab" "$log" >"$out"
if [ "$status" = 125 ]; then
  echo "lab-kit: the lab failed (status 125)" >&2
  exit 1
fi
if [ "$mode" = lab-el2 ] && grep -q "^program${tab}kvm${tab}el2_[a-z_]*${tab}not-run" "$out"; then
  echo "lab-kit: the el2_* programs did not run: no nested virtualization in this lab" >&2
  exit 1
fi
[ -s "$out" ] || { echo "lab-kit: no verdicts in the lab's output" >&2; exit 1; }
exit "$status"
