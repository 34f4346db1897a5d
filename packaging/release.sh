#!/usr/bin/env bash
# `just release`: the release files of this machine's platform, in dist/release/:
#
#   provd-linux-<arch>                the one-file executable
#   provd-linux-<arch>-onedir.tar.gz  the one-directory bundle (for services)
#   provd-linux-<arch>.cdx.json       a CycloneDX SBOM of what both carry, generated
#                                     from the build's own list (packaging/sbom.py)
#   SHA256SUMS                        `sha256sum -c SHA256SUMS` checks them
#
# Built as packaging/build.sh builds (reproducible: the same commit gives the same
# bytes; the tarball is sorted, owned by 0:0, dated SOURCE_DATE_EPOCH and gzipped
# without a name or time). arm64 files come from running this on an arm64 machine.
#
# Usage: packaging/release.sh [--reuse-build]   (VENV=path picks the venv, as for build.sh)
#   --reuse-build  package what dist/ and build/ already hold (CI, after its smoke test)
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
if [ "${1:-}" != "--reuse-build" ]; then
    packaging/build.sh
fi

name=provd-linux-$(uname -m)
out=dist/release
rm -rf "$out"
mkdir -p "$out"
cp dist/provd "$out/$name"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -C dist -cf - provd-onedir | gzip -n -9 > "$out/$name-onedir.tar.gz"
"$venv/bin/python" packaging/sbom.py build/pyinstaller/provd/contents.txt > "$out/$name.cdx.json"
(cd "$out" && sha256sum -- provd-* > SHA256SUMS && cat SHA256SUMS)
