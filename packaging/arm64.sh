#!/usr/bin/env bash
# `just arm64`: provd's executables for Linux arm64 (aarch64), built and smoke-tested
# on an x86-64 Debian/Ubuntu machine under emulation, end to end:
#
#   1. qemu-user-static, binfmt-support and debootstrap (apt-get, if missing), and
#      qemu's binfmt_misc entry for aarch64 with the F flag (the interpreter is opened
#      when registered, so it works inside a chroot with no qemu in it);
#   2. an arm64 Debian 12 root, .cache/arm64-root (debootstrap --variant=minbase
#      --arch=arm64, made once and reused; --rebuild-root makes it again), with
#      Debian's /usr/bin/python3.11 and libpython3.11, binutils (PyInstaller, strip,
#      glibc-floor.sh's objdump) and git (the spec's commit and SOURCE_DATE_EPOCH);
#   3. the source: a clone of HEAD, at /src/provd in the root. --uncommitted adds the
#      working tree's uncommitted changes and new files (--uncommitted=packaging,.ci:
#      only under those paths); `provd version` then says <commit>-dirty. A release
#      (--release) is built from the commit only;
#   4. in the root, under emulation: a venv on /usr/bin/python3.11 (/opt/provd-venv,
#      kept between runs), `pip install '.[postgres]'` and the dev extra's PyInstaller
#      requirement, pinned to the versions of the dev venv (.venv) when there is one, so
#      that both platforms carry the same distributions (every one has an aarch64
#      wheel on PyPI; only provd itself is built, and it is pure Python); then
#      packaging/build.sh;
#   5. .ci/package-smoke on the aarch64 build, inside the root (qemu via binfmt):
#      version, serve, dashboard, daemon, jobs to success, SIGTERM -> exit 0, nothing
#      left behind (PROVD_SMOKE_NO_BUILD=1: it smokes dist/ as built in step 4); then
#      packaging/portable.sh when the tree has one (staticx built from source: gcc,
#      musl-tools, scons, patchelf are apt-installed into the root), and its
#      `provd version` in a root with nothing else in it (no libc, no qemu);
#   6. the results copied out to dist/arm64/ (provd, provd-onedir/, provd-portable,
#      contents.txt, smoke.log; with --release also release/: provd-linux-aarch64*,
#      the onedir tarball, the portable one and the SBOMs, made by
#      packaging/release.sh in the root, where dpkg knows the arm64 packages), and a
#      summary: `file`, sizes, SHA-256, timings, smoke result.
#
# Why emulation: CI has no arm64 runner, and the build does not fit in CI's 30
# minutes under qemu (docs/install.md, "Linux arm64", has this machine's timings).
# On an arm64 machine, `just release` builds natively instead. `packaging/release.sh
# --with-arm64` runs this with --release and adds its files to dist/release/.
#
# Usage: packaging/arm64.sh [--uncommitted[=PATH,...]] [--release] [--rebuild-root]
#   Run as root (debootstrap, chroot, mounts). Every mount made in the root is
#   unmounted on exit. ARM64_ROOT=dir moves the root (default .cache/arm64-root).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

uncommitted=no
release=
rebuild_root=
for arg in "$@"; do
    case $arg in
    --uncommitted) uncommitted=. ;;
    --uncommitted=*) uncommitted=${arg#--uncommitted=} ;;
    --release) release=1 ;;
    --rebuild-root) rebuild_root=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "arm64.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done
if [ -n "$release" ] && [ "$uncommitted" != no ]; then
    echo "arm64.sh: a release is built from a commit: no --uncommitted with --release" >&2
    exit 2
fi
[ "$(id -u)" = 0 ] || { echo "arm64.sh: run as root (debootstrap, chroot, mount)" >&2; exit 2; }

root=${ARM64_ROOT:-$repo/.cache/arm64-root}
out=$repo/dist/arm64
suite=bookworm
mirror=${ARM64_MIRROR:-http://deb.debian.org/debian}
packages=python3.11,python3.11-venv,python3-distutils,libpython3.11,binutils,git,ca-certificates,curl,file
venv=/opt/provd-venv  # inside the root
started_at=$SECONDS
declare -A took=()
step() { printf '\n=== arm64: %s (%ss)\n' "$*" "$((SECONDS - started_at))"; }
timed() {  # NAME COMMAND...: run it, record its seconds under NAME
    local name=$1 t0=$SECONDS
    shift
    "$@"
    took[$name]=$((SECONDS - t0))
}

# -- 1. the host: qemu, binfmt, debootstrap --------------------------------------------

step "host tools: qemu-user-static, binfmt-support, debootstrap"
native=
[ "$(uname -m)" = aarch64 ] && native=1
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ -z "$native" ]; then
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ -z "$native" ]; then
    binfmt=/proc/sys/fs/binfmt_misc
    [ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
    [ -e "$binfmt/qemu-aarch64" ] || update-binfmts --enable qemu-aarch64
    grep -q '^enabled' "$binfmt/qemu-aarch64" || update-binfmts --enable qemu-aarch64
    flags=$(sed -n 's/^flags: //p' "$binfmt/qemu-aarch64")
    case $flags in
    *F*) ;;
    *) echo "arm64.sh: binfmt qemu-aarch64 has flags '$flags', without F it cannot run" \
        "in a chroot; remove it (echo -1 > $binfmt/qemu-aarch64) and rerun" >&2; exit 1 ;;
    esac
    echo "binfmt: qemu-aarch64 $(sed -n 's/^interpreter //p' "$binfmt/qemu-aarch64"), flags $flags"
fi

# -- 2. the arm64 Debian root ----------------------------------------------------------

# Never delete through a mount (a run killed by SIGKILL leaves /dev bound in the root).
remove_root() {  # DIR...
    local dir
    for dir in "$@"; do
        if mount | grep -qF " $dir/"; then
            echo "arm64.sh: $dir still has mounts (mount | grep arm64): unmount them first" >&2
            exit 1
        fi
        rm -rf "$dir"
    done
}
stamp="$root/.provd-arm64-root"
want="$suite $packages"
[ -n "$rebuild_root" ] && remove_root "$root"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    step "reuse the arm64 root $root ($want)"
else
    step "debootstrap an arm64 $suite root into $root"
    remove_root "$root" "$root.tmp"
    mkdir -p "$(dirname "$root")"
    timed root debootstrap --variant=minbase --arch=arm64 --include="$packages" \
        "$suite" "$root.tmp" "$mirror"
    rm -rf "$root.tmp"/var/cache/apt/archives/*.deb
    echo "$want" >"$root.tmp/.provd-arm64-root"
    mv "$root.tmp" "$root"
fi

# Mounts for the chroot, undone on any exit (in reverse order).
mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        mountpoint -q "${mounts[i]}" || continue  # unmounted already
        umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" || true
    done
}
trap cleanup EXIT
mount_in_root() {  # mount ARGS... TARGET (TARGET under the root)
    local target=${*: -1}
    mkdir -p "$target"
    mount "$@"
    mounts+=("$target")
}
mount_in_root -t proc proc "$root/proc"
mount_in_root --bind /dev "$root/dev"
mount_in_root -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
mount_in_root -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# pip in the root trusts what pip trusts here: this machine's CA bundle (which may hold a
# TLS-inspecting proxy's CA that the root's ca-certificates lacks).
pip_cert=
host_ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
if [ -s "$host_ca" ]; then
    cp -L "$host_ca" "$root/etc/ssl/host-ca.crt"
    pip_cert=/etc/ssl/host-ca.crt
fi

in_root() {  # COMMAND (a bash script, run in /src/provd in the root, under emulation)
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=120 ${pip_cert:+PIP_CERT=$pip_cert} \
        /bin/bash -c "set -euo pipefail; cd /src/provd; $1"
}

# -- 3. the source -----------------------------------------------------------------------

step "the source: a clone of HEAD$([ "$uncommitted" != no ] && echo " + uncommitted changes under: $uncommitted")"
src=$root/src/provd
rm -rf "$src"
mkdir -p "$root/src"
git clone --quiet --depth 1 "file://$repo" "$src"
commit=$(git -C "$src" rev-parse HEAD)
if [ "$uncommitted" != no ]; then
    IFS=, read -r -a paths <<<"$uncommitted"
    diff=$(mktemp)
    git diff "$commit" --binary -- "${paths[@]}" >"$diff"  # (HEAD may have moved on)
    [ -s "$diff" ] && git -C "$src" apply --whitespace=nowarn "$diff"
    rm -f "$diff"
    git ls-files -z --others --exclude-standard -- "${paths[@]}" \
        | tar --null -T - -cf - | tar -C "$src" -xf -
    git -C "$src" status --short | sed 's/^/  /'
fi
echo "in the root: $(in_root 'uname -m; /usr/bin/python3.11 -V; ldd --version | head -1' | tr '\n' ' ')"
echo "commit $commit ($(git -C "$src" log -1 --format='%cd' --date=iso-strict))"

# Pins: the dev venv's versions (the x86-64 build's), for what the root installs.
constraints=$root/src/constraints.txt  # outside the clone, which stays clean
: >"$constraints"
if [ -x .venv/bin/python ]; then
    .venv/bin/python -m pip freeze --exclude-editable 2>/dev/null | grep -E '^[A-Za-z0-9_.-]+==' \
        | grep -v -i '^provd==' >"$constraints" || true
fi
echo "pinned to .venv's versions: $(wc -l <"$constraints") distributions"

# -- 4. build in the root -------------------------------------------------------------

step "pip install provd[postgres] and PyInstaller into $venv (emulated)"
timed pip in_root "
    [ -x $venv/bin/python ] || /usr/bin/python3.11 -m venv $venv
    pyinstaller=\$($venv/bin/python -c '
import tomllib
dev = tomllib.load(open(\"pyproject.toml\", \"rb\"))[\"project\"][\"optional-dependencies\"][\"dev\"]
print(next(r for r in dev if r.lower().startswith(\"pyinstaller\")))')
    echo \"PyInstaller requirement (dev extra): \$pyinstaller\"
    $venv/bin/pip install --quiet -c ../constraints.txt --upgrade '.[postgres]' \"\$pyinstaller\"
    $venv/bin/pip list --format=freeze 2>/dev/null | grep -i -E '^(provd|pyinstaller|pyqwest|protobuf|psycopg-binary|trio)=='
"
# pip's own build of provd left build/ and provd.egg-info/ in the clone: not part of it.
in_root "rm -rf build provd.egg-info"

step "packaging/build.sh (emulated PyInstaller)"
timed pyinstaller in_root "VENV=$venv packaging/build.sh"

# -- 5. smoke ---------------------------------------------------------------------------

step ".ci/package-smoke on the aarch64 build (in the root, emulated)"
rm -rf "$out"
mkdir -p "$out"
smoke_status=0
t0=$SECONDS
in_root "PROVD_SMOKE_NO_BUILD=1 .ci/package-smoke" 2>&1 | tee "$out/smoke.log" || smoke_status=$?
took[smoke]=$((SECONDS - t0))

# -- 5b. the portable executable (after the smoke, whose result stands either way) ---------

if [ -x "$src/packaging/portable.sh" ]; then
    # The portable executable (packaging/portable.sh: the one file wrapped by staticx,
    # built with this root's Debian python3.11), pinned to $venv's versions. staticx
    # has no aarch64 wheel (0.14.2: manylinux1_x86_64 only), so pip builds it from its
    # sdist here: scons and a C compiler for its bootloader, musl-gcc (as its wheels
    # are built) rather than a static glibc; patchelf, which it runs.
    step "packaging/portable.sh (emulated, staticx built from source)"
    portable_status=0
    t0=$SECONDS
    in_root "
        command -v musl-gcc >/dev/null || { echo 'apt-get install gcc musl-tools scons patchelf (in the root)'
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends gcc libc6-dev musl-tools scons patchelf >/dev/null; }
        BOOTLOADER_CC=musl-gcc VENV=$venv packaging/portable.sh" || portable_status=$?
    took[portable]=$((SECONDS - t0))
else
    # HOOK (portable): no packaging/portable.sh in this tree, so no portable aarch64
    # executable. Once it exists, the branch above runs it.
    echo "(no packaging/portable.sh in this tree: no portable aarch64 build)"
fi

# -- 6. copy out, release files, summary ---------------------------------------------------

cp -a "$src/dist/." "$out/"  # provd, provd-onedir/ (and what portable.sh made)
cp "$src/build/pyinstaller/provd/contents.txt" "$out/contents.txt"
if [ -n "$release" ] && [ "$smoke_status" = 0 ] && [ "${portable_status:-0}" = 0 ]; then
    step "packaging/release.sh --reuse-build in the root (release files, SBOM)"
    in_root "VENV=$venv packaging/release.sh --reuse-build"
    cp -a "$src/dist/release" "$out/release"
fi

step "summary"
echo "built from commit $commit"
mapfile -t execs < <(cd "$out" && ls -d provd provd-onedir/provd provd-portable 2>/dev/null || true)
(cd "$out" && file "${execs[@]}" | sed 's/, BuildID[^,]*//')
printf '%-36s %10s  %s\n' file bytes sha256
for f in "${execs[@]/#/$out/}" "$out"/release/*; do
    [ -f "$f" ] || continue
    printf '%-36s %10s  %s\n' "${f#"$out"/}" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"
done
echo "provd-onedir/: $(du -sk "$out/provd-onedir" | cut -f1) KiB"
grep -E '^platform|^commit|^built|^version|glibc|^package-smoke' "$out/smoke.log" || true
if [ -x "$out/provd-portable" ]; then
    # It needs no libc: run it in a root with nothing but it, /proc and /tmp (qemu
    # comes from binfmt's F flag, not from the root).
    bare=$(mktemp -d "$repo/.cache/arm64-bare.XXXXXX")
    mkdir "$bare/proc" "$bare/tmp"
    chmod 1777 "$bare/tmp"
    cp "$out/provd-portable" "$bare/provd"
    mount_in_root --bind /proc "$bare/proc"
    echo "provd-portable version, in a root with no libc (only /provd, /proc, /tmp):"
    t0=$SECONDS
    chroot "$bare" /provd version | sed 's/^/  /' || portable_status=$?
    took[portable_run]=$((SECONDS - t0))
    umount "$bare/proc"
    mountpoint -q "$bare/proc" || rm -rf "$bare"
fi
echo "timings (s): root ${took[root]:-cached}, pip ${took[pip]}, PyInstaller ${took[pyinstaller]}," \
    "portable ${took[portable]:-none} (its version ${took[portable_run]:-none}), smoke ${took[smoke]}," \
    "total $((SECONDS - started_at))"
if [ "$smoke_status" != 0 ]; then
    echo "arm64: smoke FAILED (exit $smoke_status), see $out/smoke.log" >&2
    exit 1
fi
if [ "${portable_status:-0}" != 0 ]; then
    echo "arm64: packaging/portable.sh FAILED (exit $portable_status) in the root" >&2
    exit 1
fi
echo "arm64: OK, in $out"
