# lab/debs.sh: sourced (bash) by the lab scripts that cache an arm64 program
# shellcheck shell=bash
# from Debian to run inside the lab (lab/setup-qemu-peer, lab/setup-tracecmd):
# resolve its packages against an empty arm64 status, download them, unpack
# them, and keep the program with the loader and its NEEDED libraries.
# The caller sets `prog` (for messages) and `say`/`die` before sourcing.

# debs_resolve PACKAGE MUST_HAVE [APT-GET ARGS...]: the packages apt would
# install on an arm64 machine with nothing on it (an empty dpkg status, so
# the host's own amd64 packages satisfy nothing), one "NAME VERSION ARCH
# SIZE" line each (VERSION as in the .deb's file name). Fails, with apt's
# messages on stderr, unless a file name matches MUST_HAVE.
debs_resolve() {
    local pkg=$1 must=$2 empty rc=0
    shift 2
    empty=$(mktemp)
    apt-get -o Dir::State::status="$empty" -o APT::Architecture=arm64 -o APT::Architectures=arm64 \
        --print-uris -qq install -y --no-install-recommends "$@" "$pkg" \
        >"$empty.uris" 2>"$empty.err" || rc=$?
    if [ "$rc" != 0 ] || ! grep -q "$must" "$empty.uris"; then
        cat "$empty.err" >&2
        rm -f "$empty" "$empty.uris" "$empty.err"
        return 1
    fi
    # 'URI' NAME_VERSION_ARCH.deb SIZE HASH  ->  NAME VERSION ARCH SIZE
    awk '{ f = $2; sub(/\.deb$/, "", f); n = split(f, p, "_"); print p[1], p[2], p[3], $3 }' "$empty.uris"
    rm -f "$empty" "$empty.uris" "$empty.err"
}

# debs_resolve_or_update ...: debs_resolve, after one apt-get update when
# the first try fails (stale lists). Its messages go to stderr: the caller
# takes the list from stdout.
debs_resolve_or_update() {
    debs_resolve "$@" 2>/dev/null && return 0
    say "apt-get update ..." >&2
    apt-get update -qq >/dev/null || die "apt-get update failed"
    debs_resolve "$@"
}

# debs_mb BYTES: megabytes with one decimal.
debs_mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# debs_download DIR LIST: fetches the packages of LIST (debs_resolve's
# lines) that DIR does not hold yet; sets debs_fetched, debs_fetched_bytes.
debs_download() {
    local dir=$1 list=$2 name ver arch size file v spec
    mkdir -p "$dir"
    debs_fetched=0 debs_fetched_bytes=0
    while read -r name ver arch size; do
        file=${name}_${ver}_${arch}.deb
        [ -s "$dir/$file" ] && continue
        v=$(printf '%s' "$ver" | sed 's/%3a/:/g')
        if [ "$arch" = all ]; then spec="$name=$v"; else spec="$name:$arch=$v"; fi
        (cd "$dir" && apt-get download -qq -o APT::Sandbox::User=root "$spec" >/dev/null 2>&1) ||
            die "apt-get download $spec failed"
        [ -s "$dir/$file" ] || die "downloaded $spec but $file is not in $dir"
        debs_fetched=$((debs_fetched + 1)) debs_fetched_bytes=$((debs_fetched_bytes + size))
    done <<EOF
$list
EOF
}

# debs_unpack DIR LIST ROOT: every package of LIST from DIR, into ROOT.
debs_unpack() {
    local dir=$1 list=$2 root=$3 name ver arch size
    while read -r name ver arch size; do
        dpkg-deb -x "$dir/${name}_${ver}_${arch}.deb" "$root"
    done <<EOF
$list
EOF
}

# debs_needed FILE: the NEEDED entries of an ELF file.
debs_needed() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

# debs_closure ROOT LIBDIR ELF...: copies ld-linux-aarch64.so.1 and every
# shared library the ELF files need, directly or through each other, from the
# unpacked tree ROOT into LIBDIR; fails naming the libraries ROOT lacks.
debs_closure() {
    local root=$1 libdir=$2 ldso sos todo next lib src missing=
    shift 2
    mkdir -p "$libdir"
    ldso=$(find "$root" -name ld-linux-aarch64.so.1 \( -type f -o -type l \) -print -quit)
    [ -n "$ldso" ] || die "no ld-linux-aarch64.so.1 in the downloaded packages (libc6:arm64)"
    cp -L "$ldso" "$libdir/ld-linux-aarch64.so.1"
    # Where each shared object of the unpacked tree is, by file name.
    sos=$(mktemp)
    find "$root" -name '*.so*' \( -type f -o -type l \) >"$sos"
    todo=
    for lib in "$@"; do todo="$todo $(debs_needed "$lib")"; done
    while [ -n "$todo" ]; do
        next=
        for lib in $todo; do
            [ -e "$libdir/$lib" ] && continue
            src=$(grep -m1 "/$lib\$" "$sos" || true)
            if [ -z "$src" ]; then
                missing="$missing $lib"
                continue
            fi
            cp -L "$src" "$libdir/$lib"
            next="$next $(debs_needed "$libdir/$lib")"
        done
        todo=$next
    done
    rm -f "$sos"
    [ -z "$missing" ] || die "libraries that no resolved package provides:$missing"
}
