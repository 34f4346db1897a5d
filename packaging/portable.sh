#!/usr/bin/env bash
# Build dist/provd-portable: the one-file provd that needs no libc on the machine, so it
# runs on any Linux x86-64 distribution (glibc of any age, musl, or none at all: a
# scratch container). docs/install.md, "The portable executable".
#
#   1. a build venv, build/portable-venv, on Debian's /usr/bin/python3.11 (staticx
#      refuses the dev venv's pyenv Python: its libpython has a DT_RUNPATH, staticx
#      issue #188), with the pinned tools of packaging/portable-requirements.txt and
#      provd's dependencies at the versions the dev venv ($VENV, default .venv) has,
#      so that both downloads carry the same ones;
#   2. the same PyInstaller build as `just package` (packaging/build.sh, the same spec)
#      into build/portable/dist, work directory build/portable/pyinstaller;
#   3. staticx (packaging/staticx_reproducible.py): the one file, plus the glibc, ld.so
#      and every system library any of its binaries loads (also the ones entry.py
#      unpacks on first use, which staticx cannot see), behind a static bootloader,
#      uncompressed; build/portable/staticx-contents.txt lists what it added (for the
#      SBOM, packaging/release.sh).
#
# Reproducible like build.sh: the same tree built twice gives the same bytes
# (SOURCE_DATE_EPOCH, PYTHONHASHSEED=0, staticx's archive members dated and owned
# alike). packaging/check-reproducible.sh --portable builds twice and compares.
#
# Usage: packaging/portable.sh [--out FILE]   (default dist/provd-portable)
set -euo pipefail
cd "$(dirname "$0")/.."

out=dist/provd-portable
if [ "${1:-}" = "--out" ]; then
    out=${2:?--out needs a file}
fi
python=/usr/bin/python3.11
venv=build/portable-venv
dev_venv=${VENV:-.venv}
work=build/portable
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

# Debian's python3.11 with its venv module (apt package python3.11-venv).
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "portable.sh: installing Debian's python3.11 and python3.11-venv"
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3.11 python3.11-venv \
            || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3.11 python3.11-venv; }
    else
        echo "portable.sh: needs $python with venv: apt-get install python3.11-venv" >&2
        exit 1
    fi
fi

# The build venv, made again when its inputs change (a stamp of them inside it).
mkdir -p "$work"
constraints=$work/constraints.txt
if [ -x "$dev_venv/bin/pip" ]; then
    # The dev venv's versions of everything but provd and the pinned build tools.
    pinned=$(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' packaging/portable-requirements.txt \
        | tr 'A-Z_.' 'a-z--' | paste -sd'|')
    "$dev_venv/bin/pip" freeze --exclude-editable 2>/dev/null \
        | grep -E '^[A-Za-z0-9_.-]+==' \
        | awk -F'==' -v pinned="^($pinned)\$" \
            '{ name = tolower($1); gsub(/[_.]/, "-", name); if (name !~ pinned) print }' \
        >"$constraints"
else
    : >"$constraints"
fi
stamp=$(cat packaging/portable-requirements.txt pyproject.toml "$constraints" | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.provd-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "== build venv $venv ($python)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        -r packaging/portable-requirements.txt -c "$constraints" -e '.[postgres]'
    echo "$stamp" >"$venv/.provd-stamp"
fi

echo "== PyInstaller: packaging/build.sh with $venv into $work/dist"
VENV=$venv WORKPATH=$work/pyinstaller packaging/build.sh --distpath "$work/dist"

# Every library outside the bundle that one of its binaries needs (ldd, with the
# bundle's own directories first, as at run time), but the loader, which staticx adds
# itself. staticx only looks at the binaries the bootloader unpacks, not at the ones
# packaging/entry.py keeps in the module archive (pyqwest, psycopg, OpenSSL, SQLite).
internal=$work/dist/provd-onedir/_internal
libpath=$(find "$internal" -type d \( -path "$internal" -o -name '*.libs' \) | paste -sd:)
extra_libs=$work/system-libs.txt
while IFS= read -r -d '' binary; do
    LD_LIBRARY_PATH=$libpath ldd "$binary" 2>/dev/null || true
done < <(find "$internal" -type f \( -name '*.so' -o -name '*.so.*' \) -print0) \
    | sed -n 's/.*=> \(\/[^ ]*\) (0x.*/\1/p' | sort -u \
    | while read -r lib; do
        case $lib in "$PWD"/* | */ld-linux*) continue ;; esac
        [ -n "$(find "$internal" -name "$(basename "$lib")" -print -quit)" ] || echo "$lib"
    done >"$extra_libs"
echo "system libraries for staticx: $(xargs -n1 basename <"$extra_libs" | paste -sd' ')"

# The libraries the bundle carries itself: staticx must not add a second copy of the
# ones entry.py unpacks on first use (OpenSSL, SQLite), which it cannot see.
bundled=$work/bundled-libs.txt
find "$internal" -name '*.so*' -printf '%f\n' | sort -u >"$bundled"

# --no-compress: the archive holds the PyInstaller executable, compressed already, and
# staticx's bootloader unpacks it on every start; with xz that took 0.9 s more per
# start here (`provd --help` 1.2 s against 0.33 s), for 2.9 MB less.
echo "== staticx -> $out"
mkdir -p "$(dirname "$out")"
libs=()
while read -r lib; do libs+=(-l "$lib"); done <"$extra_libs"
PATH=$PWD/$venv/bin:$PATH "$venv/bin/python" packaging/staticx_reproducible.py \
    --bundled "$bundled" --no-compress "${libs[@]}" "$work/dist/provd" "$out.part"
mv "$out.part" "$out"
chmod 0755 "$out"
# What staticx added beside the program, as contents.txt lines (packaging/sbom.py).
objcopy --dump-section .staticx.archive="$work/staticx-archive.tar" "$out" "$work/staticx-copy"
{
    echo "DISTRIBUTION staticx"
    tar -tvf "$work/staticx-archive.tar" | awk '$1 ~ /^-/ && $NF != "provd" { print "BINARY     " $NF }' \
        | sort
} >"$work/staticx-contents.txt"
rm -f "$work/staticx-archive.tar" "$work/staticx-copy"
echo "staticx added: $(awk '$1 == "BINARY" { print $2 }' "$work/staticx-contents.txt" | paste -sd' ')"
echo "built $out ($(du -k "$out" | cut -f1) KiB) with SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
(cd "$(dirname "$out")" && sha256sum "$(basename "$out")")
