#!/bin/sh
# Sets the verdicts of run-kit.sh on several platforms side by side: a
# Markdown table (program x platform: arch and vtvmm checks passed) and
# every check whose verdict differs between platforms, with the reason when
# the difference is expected. Enforces the kit's rule:
#   - every arch check has the same verdict on every platform that ran its
#     program (a check missing there counts as a different verdict);
#   - every vtvmm check has the same verdict on the vtvmm platforms (emu,
#     kvm). Elsewhere (QEMU, another VMM) a failed vtvmm check is "n/a":
#     that platform lacks vtvmm's device or service, or chose otherwise.
# Programs a platform cannot run (el2_* with GICv2) are shown as not run and
# are not counted.
# Usage: compare.sh [-o FILE] LABEL=VERDICTS...   (a LABEL given twice
# merges its files: KVM from two lab boots, say). Exit 1 if the rule is
# broken, 2 on bad usage.
set -u
outfile=''
if [ "${1:-}" = -o ]; then
  outfile=${2:?-o needs a file}
  shift 2
fi
[ $# -ge 1 ] || { echo "usage: compare.sh [-o FILE] LABEL=VERDICTS..." >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
labels=''
for a in "$@"; do
  label=${a%%=*} file=${a#*=}
  if [ "$label" = "$a" ] || [ ! -r "$file" ]; then
    echo "compare: '$a' is not LABEL=readable-file" >&2
    exit 2
  fi
  case " $labels " in *" $label "*) ;; *) labels="$labels $label" ;; esac
  awk -F '\t' -v l="$label" 'BEGIN { OFS = "\t" } $1 == "check" || $1 == "program" { $2 = l "\t" $2; print }' \
    "$file" >>"$tmp/all"
done
awk -F '\t' -v labels="$labels" '
function reason(tag,   c) {
  c = tag; sub(/^vtvmm:/, "", c)
  if (c == "pvtime") return "no PV time service there (SMCCC PV_TIME_* not supported), so no record"
  if (c == "trace-marker") return "no trace-marker device at 0x090e0000 there (the store faults)"
  if (c == "one-offset") return "vtvmm moves both counters by one VM offset; QEMU on KVM leaves the physical offset at 0"
  if (c == "reset-keeps-time") return "vtvmm keeps the counter offset across SYSTEM_RESET; another VMM may restart the counter"
  if (c == "el2") return "vtvmm --el2 starts the guest at vEL2 with E2H = 1"
  return "a choice of vtvmm'"'"'s"
}
function kindof(p) { return (p == "emu" || p == "kvm") ? "vtvmm" : "other" }
function title(l, p) {
  if (l != p) return l
  if (p == "qemu") return "QEMU TCG (GICv3)"
  if (p == "qemu-gicv2") return "QEMU TCG (GICv2)"
  if (p == "emu") return "vtvmm --backend emu"
  if (p == "kvm") return "vtvmm on KVM (lab)"
  return l
}
function tagclass(t) { return t == "arch" ? "arch" : "vtvmm" }
{
  # fields: 1 type, 2 label, 3 platform, 4 program, then per type
  l = $2; plat[l] = $3
  if (!($4 in seenprog)) { seenprog[$4] = 1; progs[++np] = $4 }
  if ($1 == "program") {
    # Merged files: a run wins over "not run" from another boot.
    if ((l, $4) in st && (st[l, $4] == "ran" || st[l, $4] == "incomplete") && $5 != "ran" && $5 != "incomplete") next
    st[l, $4] = $5; why[l, $4] = $6
    next
  }
  k = $4 SUBSEP $5
  if (!(k in seencheck)) { seencheck[k] = 1; checks[++nc] = k; cprog[nc] = $4; cname[nc] = $5 }
  v[l, k] = $7
  if ((k in tag) && tag[k] != $6) tagclash[k] = tag[k] " / " $6
  tag[k] = $6
}
END {
  nl = split(labels, L, " ")
  broken = 0
  for (i = 1; i <= nc; i++) {
    k = checks[i]; p = cprog[i]; t = tag[k]; cls = tagclass(t)
    ref = ""; vref = ""; diff = 0; vdiff = 0; line = ""
    for (j = 1; j <= nl; j++) {
      l = L[j]
      s = st[l, p]
      if (s != "ran" && s != "incomplete") { cell[j] = "not run"; continue }
      x = ((l, k) in v) ? v[l, k] : "absent"
      cell[j] = x
      if (ref == "") ref = x; else if (x != ref) diff = 1
      if (kindof(plat[l]) == "vtvmm") { if (vref == "") vref = x; else if (x != vref) vdiff = 1 }
      if (cls == "vtvmm") {
        if (kindof(plat[l]) == "vtvmm") { if (x == "ok") okc[l, p, "vtvmm"]++; nc2[l, p, "vtvmm"]++ }
        else if (x == "ok") { okc[l, p, "vtvmm"]++; nc2[l, p, "vtvmm"]++ }
        else na[l, p]++
      } else {
        nc2[l, p, "arch"]++; if (x == "ok") okc[l, p, "arch"]++
      }
    }
    if (!diff && !(k in tagclash) && t != "untagged") continue
    judge = ""
    if (t == "untagged") { judge = "**rule broken**: the check has no tag"; broken++ }
    else if (k in tagclash) { judge = "**rule broken**: tagged " tagclash[k] " on different platforms"; broken++ }
    else if (cls == "arch") { judge = "**rule broken**: an arch check must agree on every platform"; broken++ }
    else if (vdiff) { judge = "**rule broken**: a vtvmm check must agree on emu and KVM"; broken++ }
    else judge = "expected: n/a off vtvmm: " reason(t)
    row = ""
    for (j = 1; j <= nl; j++) {
      c = cell[j]
      if ((c == "not ok" || c == "absent") && cls == "vtvmm" && kindof(plat[L[j]]) != "vtvmm") c = "n/a"
      row = row " " c " |"
    }
    # Checks of one program with the same tag, verdicts and reason share a row.
    key = p SUBSEP t SUBSEP row SUBSEP judge
    if (key in drow) { dnames[drow[key]] = dnames[drow[key]] "; " cname[i]; dcount[drow[key]]++; continue }
    drow[key] = ++nd
    dprog[nd] = p; dtag[nd] = t; dnames[nd] = cname[i]; dcount[nd] = 1; dcells[nd] = row; djudge[nd] = judge
  }
  for (i = 1; i <= np; i++) {
    p = progs[i]
    for (j = 1; j <= nl; j++) {
      l = L[j]; s = st[l, p]
      if (s == "incomplete") broken_inc[p] = broken_inc[p] " " l
    }
  }
  hdr = "| program |"; sep = "|---|"
  for (j = 1; j <= nl; j++) { hdr = hdr " " title(L[j], plat[L[j]]) " |"; sep = sep "---|" }
  print hdr; print sep
  nv = 0
  for (i = 1; i <= np; i++) {
    p = progs[i]
    variant = 0
    for (j = 1; j <= nl; j++) if (st[L[j], p] == "variant") { variant = 1; vwhy[p] = why[L[j], p] }
    if (variant) { vlist[++nv] = p; continue }
    row = "| " p " |"
    for (j = 1; j <= nl; j++) {
      l = L[j]; s = st[l, p]
      if (s == "not-run") {
        if (!((why[l, p]) in fnote)) { fnote[why[l, p]] = ++nf; ftext[nf] = why[l, p] }
        c = "not run [" fnote[why[l, p]] "]"
      }
      else if (s == "incomplete") c = "**incomplete** (" why[l, p] ")"
      else if (s == "ran") {
        c = "arch " (okc[l, p, "arch"] + 0) "/" (nc2[l, p, "arch"] + 0) ", vtvmm " (okc[l, p, "vtvmm"] + 0) "/" (nc2[l, p, "vtvmm"] + 0)
        if (na[l, p]) c = c " + " na[l, p] " n/a"
        if (match(why[l, p], /attempts=[0-9]+/) && substr(why[l, p], RSTART + 9, RLENGTH - 9) + 0 > 1)
          c = c " (" substr(why[l, p], RSTART + 9, RLENGTH - 9) " runs)"
      } else c = "—"
      row = row " " c " |"
    }
    print row
  }
  row = "| **total** |"
  for (j = 1; j <= nl; j++) {
    l = L[j]; a = 0; an = 0; b = 0; bn = 0; nn = 0
    for (i = 1; i <= np; i++) {
      p = progs[i]
      a += okc[l, p, "arch"]; an += nc2[l, p, "arch"]; b += okc[l, p, "vtvmm"]; bn += nc2[l, p, "vtvmm"]; nn += na[l, p]
    }
    c = "arch " a "/" an ", vtvmm " b "/" bn
    if (nn) c = c " + " nn " n/a"
    row = row " **" c "** |"
  }
  print row
  print ""
  for (i = 1; i <= nf; i++) print "[" i "] Not run: " ftext[i] ". Not counted, not a failure."
  if (nf) print ""
  if (nv) {
    printf "Variants, not run by the kit:"
    for (i = 1; i <= nv; i++) printf " `%s`%s", vlist[i], i < nv ? "," : ""
    print " (the checks of the program they are built from, longer, or with probes that lie to vtvmm'"'"'s host-side check)."
    print ""
  }
  if (nd) {
    hdr = "| program | check | tag |"; sep = "|---|---|---|"
    for (j = 1; j <= nl; j++) { hdr = hdr " " title(L[j], plat[L[j]]) " |"; sep = sep "---|" }
    print "Checks whose verdict differs between platforms:"
    print ""
    print hdr " why |"; print sep "---|"
    for (i = 1; i <= nd; i++)
      print "| " dprog[i] " | " (dcount[i] > 1 ? dcount[i] " checks: " : "") dnames[i] " | `" dtag[i] "` |" dcells[i] " " djudge[i] " |"
    print ""
  } else {
    print "Every check has the same verdict on every platform that ran it."
    print ""
  }
  for (p in broken_inc) { print "**rule broken**: " p " did not complete on" broken_inc[p]; broken++ }
  if (broken) print "compare: " broken " rule violation(s)"
  else print "compare: the rule holds: arch checks agree on every platform, vtvmm checks on emu and KVM."
  exit broken ? 1 : 0
}' "$tmp/all" >"$tmp/table"
status=$?
cat "$tmp/table"
[ -n "$outfile" ] && cp "$tmp/table" "$outfile"
exit "$status"
