#!/usr/bin/env bash
# `just release`: the release files of this machine's platform, in dist/release/:
#
#   provd-linux-<arch>                the one-file executable
#   provd-linux-<arch>-onedir.tar.gz  the one-directory bundle (for services)
#   provd-linux-<arch>.cdx.json       a CycloneDX SBOM of what both carry, generated
#                                     from the build's own list (packaging/sbom.py)
#   provd-linux-x86_64-portable       the portable executable (packaging/portable.sh:
#                                     no libc needed); on x86-64 here, and for arm64
#                                     through --with-arm64 (PyPI has no aarch64 staticx)
#   provd-linux-x86_64-portable.cdx.json  its SBOM: its own build's list, and what
#                                     staticx added (glibc, ld.so, ...)
#   SHA256SUMS                        `sha256sum -c SHA256SUMS` checks them
#
# Built as packaging/build.sh builds (reproducible: the same commit gives the same
# bytes; the tarball is sorted, owned by 0:0, dated SOURCE_DATE_EPOCH and gzipped
# without a name or time). arm64 files come from running this on an arm64 machine, or
# from --with-arm64 on x86-64.
#
# Usage: packaging/release.sh [--reuse-build] [--with-arm64]
#        (VENV=path picks the venv, as for build.sh)
#   --reuse-build  package what dist/ and build/ already hold (CI, after its smoke test)
#   --with-arm64   also provd-linux-aarch64*: packaging/arm64.sh --release builds them
#                  from HEAD in an arm64 Debian root under qemu and smoke-tests them
#                  there (as root; too slow for CI, see docs/install.md, "Linux arm64")
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
with_arm64=
case " $* " in *" --with-arm64 "*) with_arm64=1 ;; esac
if [ "${1:-}" != "--reuse-build" ]; then
    packaging/build.sh
    # staticx has no arm64 wheel: natively, only x86-64 makes the portable executable
    # (packaging/arm64.sh builds staticx from source in its root for the arm64 one).
    if [ "$(uname -m)" = x86_64 ]; then
        packaging/portable.sh
    fi
fi

name=provd-linux-$(uname -m)
out=dist/release
rm -rf "$out"
mkdir -p "$out"
cp dist/provd "$out/$name"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -C dist -cf - provd-onedir | gzip -n -9 > "$out/$name-onedir.tar.gz"
"$venv/bin/python" packaging/sbom.py build/pyinstaller/provd/contents.txt > "$out/$name.cdx.json"
if [ -x dist/provd-portable ]; then
    # The same commit and date as the others (not left over from an older build), and
    # the platform named.
    if [ "$(dist/provd-portable version)" != "$(dist/provd version)" ]; then
        echo "release.sh: dist/provd-portable is not from this build: packaging/portable.sh" >&2
        exit 1
    fi
    cp dist/provd-portable "$out/$name-portable"
    # Its SBOM: its own PyInstaller build (Debian's Python) + what staticx added; with
    # the build venv's Python, whose distributions it carries.
    cat build/portable/pyinstaller/provd/contents.txt build/portable/staticx-contents.txt \
        >build/portable/release-contents.txt
    build/portable-venv/bin/python packaging/sbom.py build/portable/release-contents.txt \
        >"$out/$name-portable.cdx.json"
fi
if [ -n "$with_arm64" ]; then
    packaging/arm64.sh --release
    cp dist/arm64/release/provd-linux-aarch64* "$out/"
fi
(cd "$out" && sha256sum -- provd-* > SHA256SUMS && cat SHA256SUMS)
