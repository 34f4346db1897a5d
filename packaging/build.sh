#!/usr/bin/env bash
# Build provd with PyInstaller from packaging/provd.spec (one Analysis, two outputs):
#   dist/provd          the one-file executable
#   dist/provd-onedir/  the one-directory bundle (for services)
#
# Reproducible: the same tree built twice gives the same bytes. The build date is the
# last commit's time (SOURCE_DATE_EPOCH, unless set), hash randomization is off
# (PYTHONHASHSEED=0), and PyInstaller starts from an empty work directory and cache.
# packaging/check-reproducible.sh builds twice and compares.
#
# Usage: packaging/build.sh [--distpath DIR]   (default: dist; VENV=path picks the venv,
#        WORKPATH=dir PyInstaller's work directory, default build/pyinstaller: its
#        contents.txt is what packaging/sbom.py reads)
set -euo pipefail
cd "$(dirname "$0")/.."

distpath=dist
if [ "${1:-}" = "--distpath" ]; then
    distpath=${2:?--distpath needs a directory}
fi
venv=${VENV:-.venv}
workpath=${WORKPATH:-build/pyinstaller}

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export PYTHONHASHSEED=0
export PYTHONDONTWRITEBYTECODE=1  # leave no __pycache__ behind in the tree

rm -rf "$workpath" "$distpath/provd" "$distpath/provd-onedir"
"$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath "$distpath" --workpath "$workpath" packaging/provd.spec

onefile_kib=$(du -k "$distpath/provd" | cut -f1)
onedir_kib=$(du -sk "$distpath/provd-onedir" | cut -f1)
echo "built $distpath/provd ($onefile_kib KiB) and $distpath/provd-onedir/ ($onedir_kib KiB)" \
    "with SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
(cd "$distpath" && sha256sum provd)
packaging/glibc-floor.sh "$distpath/provd-onedir"
