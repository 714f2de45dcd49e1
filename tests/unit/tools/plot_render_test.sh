#!/bin/sh
# vtime-trace plot's pictures rendered by headless Chromium (Debian's
# chromium) and looked at by png_probe: the fuzz corpus's migrated nested
# timeline (a move from host a to host b), and a timeline written here with
# a 3 s pause on one host after which the guest's counter continues with
# the host's (it steps up by the time away). Then broken SVGs must fail the
# probe, so the check is known to be able to fail. No chromium is a failure,
# never a skip.
# Usage: plot_render_test.sh VTIME_TRACE PNG_PROBE MIGRATED_TIMELINE
set -u
tool=$1 probe=$2 migrated=$3
fails=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "FAIL chromium is not installed: the render test needs Debian's chromium (scripts/install-deps)"
  echo "vtime-trace plot: 1 failed"
  exit 1
fi
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT

# le BYTES VALUE: VALUE little-endian in BYTES bytes (shell arithmetic is
# 64-bit signed: a count past 2^63 is written as a negative number).
le() {
  i=0
  while [ "$i" -lt "$1" ]; do
    printf "\\$(printf %03o $((($2 >> (8 * i)) & 255)))"
    i=$((i + 1))
  done
}
# ev KIND HOST COUNT VIRTUAL_OFFSET PHYSICAL_OFFSET VCPU CNTVOFF: one event
# as include/vtime/trace/timeline.h's Encode writes it (kinds: 1 start,
# 2 offsets, 3 pause, 4 nested offset).
ev() { le 2 "$1"; le 2 0; le 4 "$2"; le 8 "$3"; le 8 "$4"; le 8 "$5"; le 4 "$6"; le 4 0; le 8 "$7"; }
# The one-host timeline: one vCPU on host lab-a (62.5 MHz), started at its
# count 1 s with the guest at 0, paused at 3 s, resumed at 6 s with the same
# offsets (the `wallclock` policy: the guest's counter jumps by 3 s).
s=62500000
{
  le 4 1; le 4 1; le 8 5; printf lab-a; le 8 $s; le 8 3
  ev 1 0 $s $s $s 0 0
  ev 3 0 $((3 * s)) 0 0 0 0
  ev 1 0 $((6 * s)) $s $s 0 0
} >"$d/payload"
# The frame (wire.h): magic, version 1, flags 0, payload length, payload,
# then the CRC-32 of all that (gzip's trailer holds the same CRC-32).
{ printf 'VTTLINE\0'; le 4 1; le 4 0; le 8 "$(wc -c <"$d/payload")"; cat "$d/payload"; } >"$d/framed"
{ cat "$d/framed"; gzip -c <"$d/framed" | tail -c 8 | head -c 4; } >"$d/pause.vtl"
case $("$tool" timeline "$d/pause.vtl" 2>&1) in
  "guest of 1 vCPUs, 1 hosts, 3 events"*) pass "the one-host timeline decodes";;
  *) fail "the one-host timeline decodes: $("$tool" timeline "$d/pause.vtl" 2>&1)";;
esac

slowest=0
render() {  # SVG PNG WIDTH HEIGHT: a screenshot of the SVG at that window size
  start=$(date +%s%N)
  rm -f "$2"
  XDG_CONFIG_HOME=$d/xdg XDG_CACHE_HOME=$d/xdg timeout 120 "$browser" --headless --no-sandbox \
    --disable-gpu --hide-scrollbars --no-first-run --no-default-browser-check \
    --disable-extensions --user-data-dir="$d/profile" --window-size="$3,$4" \
    --screenshot="$2" "file://$1" >"$d/chromium.log" 2>&1
  rc=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  [ $ms -gt $slowest ] && slowest=$ms
  echo "chromium rendered $(basename "$1") in $((ms / 1000)).$(printf %03d $((ms % 1000))) s (exit $rc)"
  if [ ! -s "$2" ]; then
    echo "chromium wrote no screenshot; its output:"
    sed 's/^/  /' "$d/chromium.log"
  fi
}
probe() {  # WHAT PNG PROBE-ARGS...
  what=$1 png=$2
  shift 2
  if "$probe" "$png" "$@" >"$d/probe.out"; then pass "$what"; else fail "$what"; fi
  sed 's/^/  /' "$d/probe.out"
}

# The migration: vCPU 1 (its nested CNTVOFF_EL2 and the VM offsets change on
# host a, then it moves to b); its physical counter at another size.
"$tool" plot "$migrated" -o "$d/migrated.svg" --vcpu 1 >/dev/null && pass "plot a migrated timeline" ||
  fail "plot a migrated timeline"
render "$d/migrated.svg" "$d/migrated.png" 960 540
probe "migrated: a run on each side of the move" "$d/migrated.png" --pause
"$tool" plot "$migrated" -o "$d/physical.svg" --physical --size 800x480 >/dev/null &&
  pass "plot the physical counter at 800x480" || fail "plot --physical --size"
render "$d/physical.svg" "$d/physical.png" 800 480
probe "physical picture" "$d/physical.png" --pause
# The pause on one host: the guest's line steps up across the band.
"$tool" plot "$d/pause.vtl" -o "$d/pause.svg" >/dev/null && pass "plot the one-host pause" ||
  fail "plot the one-host pause"
grep -q 'paused 3 s' "$d/pause.svg" && grep -q 'guest +3 s' "$d/pause.svg" &&
  pass "the pause is labelled with its length and the guest's step" || fail "pause labels"
render "$d/pause.svg" "$d/pause.png" 960 540
probe "pause: the guest's counter steps up across it" "$d/pause.png" --step-up
"$tool" plot "$d/pause.vtl" -o "$d/again.svg" >/dev/null
cmp -s "$d/pause.svg" "$d/again.svg" && pass "the same timeline gives the same bytes" ||
  fail "the plot is not deterministic"
# A migration is not a step up of 3 s: the probe tells the pictures apart.
"$probe" "$d/migrated.png" --step-up >/dev/null && fail "the probe saw a step up at the move" ||
  pass "the probe sees no step up at the move"

# The check can fail. A cut SVG is an XML error in Chromium (a banner, then
# what came before the error, pushed down): cut early, or only its closing
# tag missing. An SVG without its namespace is shown as XML text, not drawn.
head -c 1200 "$d/pause.svg" >"$d/cut.svg"
sed '$d' "$d/pause.svg" >"$d/unclosed.svg"
sed 's| xmlns="http://www.w3.org/2000/svg"||' "$d/pause.svg" >"$d/nons.svg"
for broken in cut unclosed nons; do
  render "$d/$broken.svg" "$d/$broken.png" 960 540
  if [ ! -s "$d/$broken.png" ]; then
    fail "$broken.svg: chromium rendered nothing to look at"
  elif "$probe" "$d/$broken.png" --step-up >"$d/probe.out"; then
    fail "a broken SVG ($broken.svg) passed the probe"
  else
    pass "a broken SVG ($broken.svg) fails the probe: $(tail -n 1 "$d/probe.out")"
  fi
done
# Seconds, not minutes.
[ $slowest -lt 30000 ] && pass "each render under 30 s (slowest $slowest ms)" ||
  fail "a render took $slowest ms"

# Refusals, and a refused plot leaves OUT as it was.
cp "$d/pause.svg" "$d/kept.svg"
"$tool" plot "$migrated" -o "$d/kept.svg" --vcpu 9 >/dev/null 2>"$d/err"
[ $? -eq 1 ] && grep -q 'vCPU 9 of a 2-vCPU guest' "$d/err" && pass "refuses a vCPU the guest lacks" ||
  fail "vCPU 9: $(cat "$d/err")"
cmp -s "$d/pause.svg" "$d/kept.svg" && pass "a refused plot leaves OUT as it was" ||
  fail "a refused plot changed OUT"
"$tool" plot /nonexistent -o "$d/x.svg" >/dev/null 2>&1
[ $? -eq 1 ] && pass "refuses a missing timeline" || fail "missing timeline"
"$tool" plot "$d/payload" -o "$d/x.svg" >/dev/null 2>&1
[ $? -eq 1 ] && pass "refuses a file that is not a timeline" || fail "not a timeline"
"$tool" plot "$migrated" >/dev/null 2>&1
[ $? -eq 2 ] && pass "usage without -o" || fail "usage without -o"
"$tool" plot "$migrated" -o "$d/x.svg" --vcpu >/dev/null 2>&1
[ $? -eq 2 ] && pass "usage: --vcpu without N" || fail "usage: --vcpu without N"
[ -e "$d/x.svg" ] && fail "a refused plot left a file" || pass "a refused plot writes nothing"
ls "$d" | grep -q '\.tmp' && fail "a temporary file was left" || pass "no temporary file left"
if [ $fails -eq 0 ]; then echo "vtime-trace plot: all passed"; else echo "vtime-trace plot: $fails failed"; exit 1; fi
