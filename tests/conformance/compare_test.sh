#!/bin/sh
# compare.sh's rule on made-up verdicts: what must pass and what must not.
# Usage: compare_test.sh COMPARE_SH
set -u
compare=${1:?usage: compare_test.sh COMPARE_SH}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
t=$(printf '\t')
# verdicts PLATFORM [PROG NAME TAG VERDICT]...: a verdict file, each program ran.
verdicts() {
  plat=$1
  shift
  while [ $# -ge 4 ]; do
    echo "check$t$plat$t$1$t$2$t$3$t$4"
    echo "program$t$plat$t$1${t}ran${t}exit=0"
    shift 4
  done
}
# expect STATUS WORDS NAME LABEL=FILE...: compare's status and a phrase of its table.
expect() {
  want=$1 words=$2 name=$3
  shift 3
  sh "$compare" "$@" >"$tmp/out" 2>&1
  got=$?
  if [ "$got" = "$want" ] && grep -q -- "$words" "$tmp/out"; then
    echo "ok - $name"
  else
    echo "not ok - $name (status $got, wanted $want and '$words'):"
    sed 's/^/    /' "$tmp/out"
    failures=$((failures + 1))
  fi
}
verdicts qemu p "a" arch ok p "b" vtvmm:pvtime "not ok" >"$tmp/q"
verdicts emu p "a" arch ok p "b" vtvmm:pvtime ok >"$tmp/e"
verdicts kvm p "a" arch ok p "b" vtvmm:pvtime ok >"$tmp/k"
expect 0 "| p | b | \`vtvmm:pvtime\` | n/a | ok | ok | expected: n/a off vtvmm" \
  "a vtvmm check failed on QEMU is n/a" qemu="$tmp/q" emu="$tmp/e" kvm="$tmp/k"
expect 0 "arch 1/1, vtvmm 0/0 + 1 n/a" "the n/a is counted apart" qemu="$tmp/q" emu="$tmp/e"
verdicts kvm p "a" arch "not ok" p "b" vtvmm:pvtime ok >"$tmp/k2"
expect 1 "rule broken\*\*: an arch check must agree" "an arch check that differs breaks the rule" \
  qemu="$tmp/q" emu="$tmp/e" kvm="$tmp/k2"
verdicts kvm p "b" vtvmm:pvtime ok >"$tmp/k3"
expect 1 "| p | a | \`arch\` | ok | ok | absent |" "an arch check missing on one platform breaks it" \
  qemu="$tmp/q" emu="$tmp/e" kvm="$tmp/k3"
verdicts kvm p "a" arch ok p "b" vtvmm:pvtime "not ok" >"$tmp/k4"
expect 1 "must agree on emu and KVM" "a vtvmm check that differs between emu and KVM breaks it" \
  qemu="$tmp/q" emu="$tmp/e" kvm="$tmp/k4"
verdicts emu p "a" untagged ok >"$tmp/u"
expect 1 "has no tag" "an untagged check breaks it" emu="$tmp/u"
verdicts emu p "a" vtvmm:el2 ok >"$tmp/tc"
expect 1 "tagged arch / vtvmm:el2" "one check tagged differently on two platforms breaks it" \
  qemu="$tmp/q" emu="$tmp/tc"
{ verdicts kvm x "a" arch ok; echo "program${t}kvm${t}p${t}ran${t}exit=0"; cat "$tmp/k"; } >"$tmp/k5"
{ cat "$tmp/e"; echo "program${t}emu${t}x${t}not-run${t}needs EL2"; } >"$tmp/e5"
expect 0 "not run \[1\]" "a program one platform cannot run is not counted" emu="$tmp/e5" kvm="$tmp/k5"
{ cat "$tmp/e"; echo "program${t}emu${t}y${t}incomplete${t}no exit line"; } >"$tmp/e6"
expect 1 "y did not complete on emu" "a program that did not complete breaks it" emu="$tmp/e6" kvm="$tmp/k"
verdicts kvm p "b" vtvmm:pvtime ok >"$tmp/k7a"
verdicts kvm p "a" arch ok >"$tmp/k7b"
expect 0 "the rule holds" "a label given twice merges its files" emu="$tmp/e" kvm="$tmp/k7a" kvm="$tmp/k7b"
expect 2 "not LABEL=readable-file" "a bad argument is refused" emu
echo "compare_test: $failures failure(s)"
[ "$failures" -eq 0 ]
