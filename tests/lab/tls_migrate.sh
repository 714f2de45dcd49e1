#!/bin/sh
# Authenticated migration in the lab. On the host: makes right and wrong
# credentials with scripts/mkcreds (a PSK pair, two x509 sets from unrelated
# CAs), then boots one lab machine and runs the checks there, where two
# vtvmm migrate over loopback:
#  - a source with the wrong key, or a certificate from another CA, or plain
#    TCP, is refused by the destination before it reads any byte of VM
#    state, and keeps running its guest to the end;
#  - the right PSK and the right x509 set migrate;
#  - plain TCP and TLS, alternated, give the pause and the throughput TLS
#    costs (FIGURE lines, medians of the runs).
# Usage (host): [RUNS=N] tls_migrate.sh host VTVMM GUEST_DIR [LAB/RUN OPTIONS...]
#        (lab):  tls_migrate.sh lab GUEST_DIR CREDS_DIR [RUNS]
mode=${1:?usage: tls_migrate.sh host|lab ...}
shift
if [ "$mode" = host ]; then
  vtvmm=${1:?vtvmm}
  guests=${2:?guest dir}
  shift 2
  here=$(cd "$(dirname "$0")" && pwd)
  creds=$(mktemp -d -t vtime-creds.XXXXXX)
  trap 'rm -rf "$creds"' EXIT
  mk="$here/../../scripts/mkcreds"
  "$mk" psk "$creds/right.psk" >/dev/null && "$mk" psk "$creds/wrong.psk" >/dev/null &&
    "$mk" x509 "$creds/ca1" >/dev/null && "$mk" x509 "$creds/ca2" >/dev/null ||
    { echo "FAIL: scripts/mkcreds could not make the test credentials"; exit 1; }
  exec "$here/../../lab/run" "$@" --add "$vtvmm:/bin/vtvmm" --add "$guests:/guests" \
    --add "$creds:/creds" --add "$here/tls_migrate.sh:/bin/tls_migrate.sh" \
    -- sh /bin/tls_migrate.sh lab /guests /creds "${RUNS:-2}"
fi

g=${1:?guest dir}
c=${2:?credentials dir}
runs=${3:-2}
failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
ip link set lo up 2>/dev/null
# The files keep their mode through the initramfs; make sure of it.
chmod 600 "$c"/*.psk "$c"/*/*-key.pem
ok_line="ok - clockwatch: cntvct never went backwards"
port=5200

# migrate NAME "DESTINATION CREDENTIALS" "SOURCE CREDENTIALS" [SOURCE ARGS...]
# (32 MiB, moving after 800 ms of clockwatch's 3 s; later SOURCE ARGS win)
migrate() {
  name=$1 dcred=$2 scred=$3
  shift 3
  port=$((port + 1))
  # shellcheck disable=SC2086
  vtvmm --timeout 20 $dcred --incoming "127.0.0.1:$port" >/tmp/tls-dst.out 2>&1 &
  dst=$!
  # shellcheck disable=SC2086
  vtvmm --timeout 60 $scred --memory 32 --migrate-to "127.0.0.1:$port" --migrate-after 800 "$@" \
    "$g/clockwatch.elf" >/tmp/tls-src.out 2>&1
  src_status=$?
  wait "$dst"
  dst_status=$?
  sed "s|^|  [$name source] |" /tmp/tls-src.out | grep -vE "clockwatch: t=|migration: sent"
  sed "s|^|  [$name destination] |" /tmp/tls-dst.out | grep -vE "clockwatch: t=|migration: received"
}

# refused NAME WHY DESTINATION-CREDENTIALS SOURCE-CREDENTIALS
refused() {
  migrate "$1" "$3" "$4"
  if grep -q "refusing a connection from 127.0.0.1:[0-9]* before reading anything: .*$2" /tmp/tls-dst.out &&
    ! grep -qE "migration: (received|pre-copy|stop-and-copy)" /tmp/tls-dst.out &&
    [ "$dst_status" = 125 ]; then
    pass "$1: the destination refused the peer ($2) before reading any VM state"
  else
    fail "$1: destination status $dst_status, no refusal naming '$2' before reading"
  fi
  if [ "$src_status" = 0 ] && grep -q "the guest keeps running here" /tmp/tls-src.out &&
    grep -q "$ok_line" /tmp/tls-src.out; then
    pass "$1: the source kept its guest and ran it to the end"
  else
    fail "$1: source status $src_status"
  fi
}

psk="--tls-psk $c/right.psk"
refused "wrong PSK" "pre-shared key" "$psk" "--tls-psk $c/wrong.psk"
refused "certificate from another CA" "certificate" "--tls-x509 $c/ca1" "--tls-x509 $c/ca2"
refused "plain TCP to a TLS destination" "TLS" "$psk" "--insecure"

moved() {  # NAME: the last migrate moved the guest, which finished on the destination
  if [ "$src_status" = 0 ] && grep -q "migrated to 127.0.0.1:$port" /tmp/tls-src.out &&
    [ "$dst_status" = 0 ] && grep -q "$ok_line" /tmp/tls-dst.out; then
    pass "$1: migrated, the guest finished on the destination with its counters never backwards"
  else
    fail "$1: source status $src_status, destination status $dst_status"
  fi
}
migrate "right PSK" "$psk" "$psk"
grep -q "connected to 127.0.0.1:$port (TLS" /tmp/tls-src.out || fail "right PSK: the link was not TLS"
moved "right PSK"
migrate "right x509" "--tls-x509 $c/ca1" "--tls-x509 $c/ca1"
moved "right x509"

# What TLS costs: plain and PSK alternated, RUNS runs each (2 in the test
# suite; the README's figures are from RUNS=4). 16 MiB moving after
# 300 ms, so that even a slow (loaded) TLS pre-copy ends well within the
# guest's run.
rm -f /tmp/tls-plain.fig /tmp/tls-psk.fig
for run in $(seq "$runs"); do
  for kind in plain psk; do
    [ "$kind" = plain ] && cred=--insecure || cred=$psk
    migrate "$kind run $run" "$cred" "$cred" --memory 16 --migrate-after 300 >/dev/null
    line=$(grep "migrated to" /tmp/tls-src.out)
    rate=$(echo "$line" | sed -n 's/.*RAM at \([0-9.]*\) MiB\/s.*/\1/p')
    pause=$(echo "$line" | sed -n 's/.*paused here for \([0-9]*\) ms.*/\1/p')
    if [ -n "$rate" ] && [ -n "$pause" ] && [ "$dst_status" = 0 ]; then
      echo "$rate $pause" >>"/tmp/tls-$kind.fig"
      echo "  [$kind run $run] RAM at $rate MiB/s, paused $pause ms"
    else
      fail "$kind run $run: no figures (source status $src_status, destination $dst_status: $(grep -E "migration failed|refusing" /tmp/tls-src.out /tmp/tls-dst.out | head -n 2))"
    fi
  done
done
median() {  # COLUMN FILE
  cut -d' ' -f"$1" "$2" | sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
if [ -s /tmp/tls-plain.fig ] && [ -s /tmp/tls-psk.fig ]; then
  echo "FIGURE migration of a 16 MiB guest over loopback in the lab, median of $runs runs each:" \
    "plain TCP $(median 1 /tmp/tls-plain.fig) MiB/s, pause $(median 2 /tmp/tls-plain.fig) ms;" \
    "TLS 1.3 PSK $(median 1 /tmp/tls-psk.fig) MiB/s, pause $(median 2 /tmp/tls-psk.fig) ms"
fi

echo "tls_migrate: $failures failure(s)"
[ "$failures" -eq 0 ]
