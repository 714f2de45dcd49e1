# Sourced by the two-machine lab tests (pair_*.sh), which set $here to their
# directory first.
#   run_pair OUT [LAB/PAIR ARGS...]  runs lab/pair with its stdout in OUT, prints
#                                    how long it took, and leaves its exit
#                                    status in $status (125: the lab failed)
#   pass MSG / fail MSG              one result line; fail counts $failures
#   make_psk                         a fresh pre-shared key for this run
#                                    (scripts/mkcreds) in $psk, for both
#                                    machines as $guest_psk (lab/pair --add
#                                    keeps its mode 0600); the caller's EXIT
#                                    trap removes $psk_dir
run_pair() {
  run_pair_out=$1
  shift
  run_pair_start=$(date +%s)
  "$here/../../lab/pair" "$@" >"$run_pair_out"
  status=$?
  echo "lab/pair took $(($(date +%s) - run_pair_start)) s, status $status"
}
failures=0
guest_psk=/etc/vtime/keys.psk
make_psk() {
  psk_dir=$(mktemp -d -t vtpsk.XXXXXX)
  psk=$psk_dir/keys.psk
  "$here/../../scripts/mkcreds" psk "$psk" >/dev/null || { echo "FAIL: mkcreds psk"; exit 125; }
}
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
