#!/usr/bin/env bash
# Plants KVM in a scratch copy of src/vmm and expects check-seam to refuse
# each one; a check that cannot fail proves nothing.
set -euo pipefail
check=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/src/vmm"
printf '#include "vtime/backend/hypervisor.h"\n// KVM_RUN in a comment is fine\nint ok();\n' \
  >"$scratch/src/vmm/clean.cc"
"$check" "$scratch" >/dev/null || { echo "FAIL: clean tree refused"; exit 1; }

expect_refused() {
  printf '%b' "$2" >"$scratch/src/vmm/bad.cc"
  if "$check" "$scratch" >/dev/null 2>&1; then
    echo "FAIL: check-seam accepted $1"
    exit 1
  fi
  echo "ok: refused $1"
}
expect_refused "<linux/kvm.h>" '#include <linux/kvm.h>\n'
expect_refused "vtime's KVM header" '#include "vtime/backend/kvm.h"\n'
expect_refused "the KVM factory" '#include "vtime/backend/kvm_hypervisor.h"\n'
expect_refused "a KVM backend file" '#include "backend/kvm/host_counter.h"\n'
expect_refused "the kvm namespace" 'auto x = vtime::kvm::ReadHostCounter();\n'
expect_refused "a KVM constant" 'int c = KVM_CAP_COUNTER_OFFSET;\n'
expect_refused "an ioctl" 'void f(int fd) { ioctl(fd, 0); }\n'
