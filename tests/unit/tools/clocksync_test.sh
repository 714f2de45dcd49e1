#!/bin/sh
# vtime-clocksync on this host over loopback: the command line insists on an
# address and on a choice of authentication; a client with the right PSK is
# served, one with the wrong PSK and a plain one are refused before any
# exchange, and --insecure still works when asked for.
# Usage: clocksync_test.sh CLOCKSYNC MKCREDS
set -u
cs=${1:?usage: clocksync_test.sh CLOCKSYNC MKCREDS}
mk=${2:?usage: clocksync_test.sh CLOCKSYNC MKCREDS}
tmp=$(mktemp -d -t clocksync_test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# expect STATUS PATTERN CMD...: CMD exits with STATUS and its stderr matches.
expect() {
  want=$1 pattern=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  if [ "$got" = "$want" ] && grep -q -- "$pattern" "$tmp/err"; then
    pass "$*: status $got, '$pattern'"
  else
    fail "$*: status $got (wanted $want), stderr: $(cat "$tmp/err")"
  fi
}

expect 2 "serve needs ADDRESS:PORT" "$cs" serve 5555 --insecure
expect 2 "needs to know how to authenticate the peer" "$cs" serve 127.0.0.1:5555
expect 2 "needs to know how to authenticate the peer" "$cs" sync 127.0.0.1 5555
expect 2 "not several" "$cs" sync 127.0.0.1 5555 --insecure --tls-psk x

if ! "$mk" psk "$tmp/good.psk" >/dev/null || ! "$mk" psk "$tmp/other.psk" >/dev/null; then
  echo "FAIL mkcreds"
  exit 1
fi
chmod 644 "$tmp/other.psk"
expect 1 "lets the group or others at it" "$cs" sync 127.0.0.1 5555 --tls-psk "$tmp/other.psk"
chmod 600 "$tmp/other.psk"

# A free port (the kernel's choice) for the server.
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1,
  LocalAddr => "127.0.0.1", LocalPort => 0, Proto => "tcp")->sockport')

# serve AUTH...: starts a server in the background (output in $tmp/serve.*).
serve() {
  # A new file each time: the wait below must not find the last server's
  # "serving on" before this one has even opened it.
  rm -f "$tmp/serve.out" "$tmp/serve.err"
  "$cs" serve "127.0.0.1:$port" --timeout 20 "$@" >"$tmp/serve.out" 2>"$tmp/serve.err" &
  server=$!
  i=0
  until grep -q "serving on" "$tmp/serve.out" 2>/dev/null || [ $i -ge 300 ]; do
    sleep 0.1
    i=$((i + 1))
  done
}

serve --tls-psk "$tmp/good.psk"
expect 1 "the peer does not know our pre-shared key (identity 'vtvmm')" \
  "$cs" sync 127.0.0.1 "$port" --rounds 4 --tls-psk "$tmp/other.psk"
expect 1 "exchange 1:" "$cs" sync 127.0.0.1 "$port" --rounds 4 --insecure
"$cs" sync 127.0.0.1 "$port" --rounds 16 --tls-psk "$tmp/good.psk" >"$tmp/sync.out" 2>&1
status=$?
wait "$server"
server_status=$?
cat "$tmp/sync.out" "$tmp/serve.out" "$tmp/serve.err"
if [ "$status" = 0 ] && [ "$server_status" = 0 ] &&
  grep -q "^clocksync: link: TLS 1.3 TLS_AES_128_GCM_SHA256, PSK identity 'vtvmm'" \
    "$tmp/sync.out" &&
  grep -q "^clocksync: offset_ns=" "$tmp/sync.out" &&
  grep -q "^clocksync: served 16 exchanges" "$tmp/serve.out"; then
  pass "right PSK: 16 exchanges over TLS"
else
  fail "right PSK: sync $status, serve $server_status"
fi
if grep -q "refused 127.0.0.1 port .*pre-shared key for identity 'vtvmm' is not the one in" \
  "$tmp/serve.err" && grep -q "refused .*does not speak TLS" "$tmp/serve.err"; then
  pass "the server refused the wrong key and the plain client, and said why"
else
  fail "the server's refusals: $(cat "$tmp/serve.err")"
fi

serve --insecure
"$cs" sync 127.0.0.1 "$port" --rounds 4 --insecure >"$tmp/sync.out" 2>&1
status=$?
wait "$server"
server_status=$?
if [ "$status" = 0 ] && [ "$server_status" = 0 ] &&
  grep -q "^clocksync: link: plain TCP" "$tmp/sync.out"; then
  pass "--insecure: plain TCP when asked for"
else
  fail "--insecure: status $status: $(cat "$tmp/sync.out")"
fi

[ "$failures" = 0 ] || { echo "$failures check(s) failed"; exit 1; }
echo "all checks passed"
