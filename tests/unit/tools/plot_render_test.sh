#!/bin/sh
# vtime-trace plot's picture, rendered by headless Chromium (Debian's
# chromium) and looked at by png_probe: a migrated nested timeline (the
# fuzz corpus's) and a timeline with a pause on one host; then a broken SVG
# must fail the probe, so the check can fail.
# Usage: plot_render_test.sh VTIME_TRACE PNG_PROBE MIGRATED_TIMELINE
set -u
tool=$1 probe=$2 migrated=$3
fails=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "FAIL chromium is not installed (scripts/install-deps)"; exit 1; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
render() {  # SVG PNG
  start=$(date +%s.%N)
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$d/profile" \
    --window-size=960,540 --screenshot="$2" "file://$1" >"$d/chromium.log" 2>&1
  echo "chromium rendered $(basename "$1") in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
}

"$tool" plot "$migrated" -o "$d/migrated.svg" --vcpu 1 >/dev/null && pass "plot a migrated timeline" ||
  fail "plot a migrated timeline"
render "$d/migrated.svg" "$d/migrated.png"
"$probe" "$d/migrated.png" --pause && pass "migrated: runs on both sides of the move" ||
  fail "migrated picture"
# The physical counter, at another size.
"$tool" plot "$migrated" -o "$d/physical.svg" --physical --size 800x480 >/dev/null &&
  pass "plot the physical counter at 800x480" || fail "plot --physical --size"
render "$d/physical.svg" "$d/physical.png"
"$probe" "$d/physical.png" --pause && pass "physical picture" || fail "physical picture"
# The check can fail: a cut SVG is an XML error page in Chromium.
head -c 1200 "$d/migrated.svg" >"$d/cut.svg"
render "$d/cut.svg" "$d/cut.png"
case $("$probe" "$d/cut.png" --pause) in
  "not ok"*|*"
not ok"*) pass "a broken SVG fails the probe";;
  *) fail "a broken SVG did not fail the probe";;
esac
# Refusals.
"$tool" plot "$migrated" -o "$d/x.svg" --vcpu 9 >/dev/null 2>&1
[ $? -eq 1 ] && pass "refuses a vCPU the guest lacks" || fail "vCPU 9"
"$tool" plot /nonexistent -o "$d/x.svg" >/dev/null 2>&1
[ $? -eq 1 ] && pass "refuses a missing timeline" || fail "missing timeline"
"$tool" plot "$migrated" >/dev/null 2>&1
[ $? -eq 2 ] && pass "usage without -o" || fail "usage without -o"
[ -e "$d/x.svg" ] && fail "a refused plot left a file" || pass "a refused plot writes nothing"
if [ $fails -eq 0 ]; then echo "vtime-trace plot: all passed"; else echo "vtime-trace plot: $fails failed"; exit 1; fi
