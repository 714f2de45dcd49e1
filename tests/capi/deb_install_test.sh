#!/usr/bin/env bash
# The C API's Debian packages on a clean Debian 12: builds them
# (scripts/package), installs them with apt into a fresh debootstrap chroot,
# builds the consumer program and the adoption example (examples/kvm-time)
# against the installed files through find_package and through pkg-config
# inside the chroot, runs them (the example's KVM path is arm64-only: here
# the library must refuse it, saying why; lab.capi_kvm runs it on KVM), then
# purges the packages and checks that nothing of them is left. On amd64 it
# then does the same with the arm64 packages (scripts/package arm64) through
# dpkg's multiarch: apt installs them with their arm64 dependencies.
#
# The chroot's base (minbase plus a compiler, CMake and pkg-config) is made
# once with debootstrap from this machine's own apt mirror and kept as a
# tarball in CACHE_DIR; every run unpacks a fresh copy, so the packages are
# always installed on a system that has never seen them. Needs root.
# Usage: deb_install_test.sh CACHE_DIR
set -euo pipefail
cache=$1
root_dir=$(cd "$(dirname "$0")/../.." && pwd)
here=$root_dir/tests/capi
arch=$(dpkg --print-architecture)
suite=bookworm
[ "$(id -u)" -eq 0 ] || { echo "deb_install_test: needs root (debootstrap, chroot)"; exit 1; }

# The packages under test.
"$root_dir/scripts/package" "$arch" >/dev/null
debs=("$root_dir/build-deb-$arch"/libvtime*_"$arch".deb)
[ "${#debs[@]}" -eq 2 ] || { echo "FAIL: expected two .deb files, found ${debs[*]}"; exit 1; }

# The base, once. The mirror is the one apt on this machine already uses for
# the suite: no host name is written here.
mkdir -p "$cache"
base=$cache/debian-$suite-$arch-capi.tar
# Disk: the base's tree and its tar while it is made, then the tar and a
# chroot unpacked from it (1354 MB at the peak, measured 2026-12-07). Say so
# plainly rather than fail half-way on a full disk.
need_mb=900
[ -f "$base" ] || need_mb=1500
free_mb=$(df -Pm "$cache" 2>/dev/null | awk 'NR == 2 { print $4 }') || free_mb=''
if [ -n "$free_mb" ] && [ "$free_mb" -lt "$need_mb" ]; then
  echo "deb_install_test: only ${free_mb} MB free in $cache; this test needs about $need_mb MB"
  exit 1
fi
if [ ! -f "$base" ]; then
  mirror=$(apt-get indextargets --format '$(REPO_URI)' "Release: $suite" 'Identifier: Packages' |
           head -n 1)
  [ -n "$mirror" ] || { echo "deb_install_test: no apt source for $suite on this machine"; exit 1; }
  echo "making the $suite base from $mirror (once; cached in $base)"
  work=$(mktemp -d "$cache/debootstrap.XXXXXX")
  if ! debootstrap --variant=minbase --include=gcc,libc6-dev,cmake,make,pkgconf "$suite" "$work" \
    "$mirror" >"$cache/debootstrap.log" 2>&1; then
    tail -20 "$cache/debootstrap.log"
    df -Pm "$cache" || true
    rm -rf "$work"
    exit 1
  fi
  tar -C "$work" -cf "$base.tmp" . || { rm -rf "$work" "$base.tmp"; exit 1; }
  rm -rf "$work"
  mv "$base.tmp" "$base"
fi

chroot_dir=$(mktemp -d /var/tmp/vtime-deb-test.XXXXXX)
cleanup() {
  umount "$chroot_dir/proc" 2>/dev/null || true
  rm -rf "$chroot_dir"
}
trap cleanup EXIT
tar -C "$chroot_dir" -xf "$base"
mount -t proc proc "$chroot_dir/proc"
in_chroot() { chroot "$chroot_dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }

if in_chroot dpkg -s libvtime0 >/dev/null 2>&1; then
  echo "FAIL: the fresh chroot already has libvtime0"; exit 1
fi
mkdir -p "$chroot_dir/tmp/debs" "$chroot_dir/tmp/consumer" "$chroot_dir/tmp/example"
cp "${debs[@]}" "$chroot_dir/tmp/debs/"
cp "$here/install/consumer.c" "$here/install/CMakeLists.txt" "$chroot_dir/tmp/consumer/"
cp "$root_dir"/examples/kvm-time/{vmm.c,CMakeLists.txt,Makefile} "$chroot_dir/tmp/example/"

# apt, as a user would: the local files, their dependencies from the base.
inside=()
for deb in "${debs[@]}"; do inside+=("/tmp/debs/$(basename "$deb")"); done
in_chroot apt-get install -y --no-install-recommends "${inside[@]}" >"$chroot_dir/tmp/apt.log" 2>&1 ||
  { cat "$chroot_dir/tmp/apt.log"; echo "FAIL: apt could not install the packages"; exit 1; }
echo "ok: apt installed $(in_chroot dpkg-query -W -f '${Package} ${Version}  ' libvtime0 libvtime-dev)"
# (Captured first: grep -q ending the pipe early would fail it under pipefail.)
cache_listing=$(in_chroot ldconfig -p)
grep -q 'libvtime\.so\.0 ' <<<"$cache_listing" ||
  { echo "FAIL: the dynamic linker's cache does not know libvtime.so.0"; exit 1; }

in_chroot sh -c 'cmake -S /tmp/consumer -B /tmp/fp >/tmp/fp.log 2>&1 &&
                 cmake --build /tmp/fp >>/tmp/fp.log 2>&1' ||
  { cat "$chroot_dir/tmp/fp.log"; echo "FAIL: find_package build"; exit 1; }
echo "ok: find_package: $(in_chroot /tmp/fp/consumer)"
in_chroot sh -c 'cc -std=c11 -Wall -Wextra -Wpedantic -Werror /tmp/consumer/consumer.c \
                   -o /tmp/pc $(pkg-config --cflags --libs vtime)' ||
  { echo "FAIL: pkg-config build"; exit 1; }
echo "ok: pkg-config: $(in_chroot /tmp/pc)"

# The adoption example, both ways: its own CMakeLists.txt (find_package)
# and its Makefile (pkg-config).
in_chroot sh -c 'cmake -S /tmp/example -B /tmp/ex-fp >/tmp/ex.log 2>&1 &&
                 cmake --build /tmp/ex-fp >>/tmp/ex.log 2>&1 &&
                 make -C /tmp/example >>/tmp/ex.log 2>&1' ||
  { cat "$chroot_dir/tmp/ex.log"; echo "FAIL: the example does not build against the packages"; exit 1; }
for ex in /tmp/ex-fp/vtime-example-vmm /tmp/example/vtime-example-vmm; do
  set +e
  in_chroot "$ex" >"$chroot_dir/tmp/ex.out" 2>&1
  usage_status=$?
  in_chroot "$ex" run /dev/null >"$chroot_dir/tmp/ex.out" 2>&1
  run_status=$?
  set -e
  msg=$(cat "$chroot_dir/tmp/ex.out")
  if [ "$arch" = arm64 ]; then
    # No /dev/kvm in a chroot: the example says so (status 4).
    [ "$run_status" -ne 0 ] || { echo "FAIL: $ex ran without KVM: $msg"; exit 1; }
  elif [ "$run_status" != 3 ] || ! grep -q "vtime_kvm_host_counter: .*arm64" <<<"$msg"; then
    echo "FAIL: $ex run: status $run_status, not the library's refusal: $msg"; exit 1
  fi
  [ "$usage_status" = 2 ] || { echo "FAIL: $ex without arguments: status $usage_status"; exit 1; }
  echo "ok: $ex builds and runs; without arm64 KVM: $msg"
done

in_chroot apt-get purge -y libvtime-dev libvtime0 >"$chroot_dir/tmp/apt.log" 2>&1 ||
  { cat "$chroot_dir/tmp/apt.log"; echo "FAIL: apt could not remove the packages"; exit 1; }
left=$(cd "$chroot_dir" && find usr -name 'libvtime*' -o -name 'vtime.pc' -o -path '*vtime/vtime.h' \
       -o -path '*cmake/vtime*' | head)
[ -z "$left" ] || { echo "FAIL: left after purge: $left"; exit 1; }
echo "ok: purged without a trace"

# The arm64 packages on the same fresh Debian 12, as a multiarch system
# installs a foreign architecture's library: apt resolves their
# dependencies (libc6, libstdc++6, libgcc-s1) from Debian's arm64 archive.
# (lab.capi_kvm runs the packaged arm64 library on KVM.)
if [ "$arch" = amd64 ] && [ -d "$root_dir/lab/cache/sysroot" ]; then
  "$root_dir/scripts/package" arm64 >/dev/null
  arm_debs=("$root_dir/build-deb-arm64"/libvtime*_arm64.deb)
  [ "${#arm_debs[@]}" -eq 2 ] || { echo "FAIL: expected two arm64 .deb files"; exit 1; }
  cp "${arm_debs[@]}" "$chroot_dir/tmp/debs/"
  cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf" 2>/dev/null || true
  inside=()
  for deb in "${arm_debs[@]}"; do inside+=("/tmp/debs/$(basename "$deb")"); done
  in_chroot dpkg --add-architecture arm64
  in_chroot sh -c 'apt-get update && apt-get install -y --no-install-recommends "$@"' sh \
    "${inside[@]}" >"$chroot_dir/tmp/apt.log" 2>&1 ||
    { tail -n 30 "$chroot_dir/tmp/apt.log"; echo "FAIL: apt could not install the arm64 packages"; exit 1; }
  echo "ok: apt installed $(in_chroot dpkg-query -W -f '${Package}:${Architecture} ${Version}  ' \
    libvtime0:arm64 libvtime-dev:arm64)"
  so=$chroot_dir/usr/lib/aarch64-linux-gnu/libvtime.so.0
  [ -f "$so" ] && file -L "$so" | grep -q 'ARM aarch64' ||
    { echo "FAIL: no arm64 libvtime.so.0 in /usr/lib/aarch64-linux-gnu"; exit 1; }
  [ -f "$chroot_dir/usr/lib/aarch64-linux-gnu/pkgconfig/vtime.pc" ] &&
    [ -f "$chroot_dir/usr/lib/aarch64-linux-gnu/cmake/vtime/vtimeConfig.cmake" ] ||
    { echo "FAIL: the arm64 dev package lacks vtime.pc or the CMake package"; exit 1; }
  in_chroot apt-get purge -y libvtime-dev:arm64 libvtime0:arm64 >"$chroot_dir/tmp/apt.log" 2>&1 ||
    { cat "$chroot_dir/tmp/apt.log"; echo "FAIL: apt could not remove the arm64 packages"; exit 1; }
  left=$(cd "$chroot_dir" && find usr -name 'libvtime*' -o -name 'vtime.pc' -o -path '*cmake/vtime*' | head)
  [ -z "$left" ] || { echo "FAIL: left after purging the arm64 packages: $left"; exit 1; }
  echo "ok: the arm64 packages purged without a trace"
fi
