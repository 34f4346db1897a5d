#!/usr/bin/env bash
# Build provd twice (packaging/build.sh into build/repro/1 and build/repro/2) and fail
# unless every output file, the one-file executable and each file of the one-directory
# bundle, has the same SHA-256 both times. Edit nothing in the tree while it runs.
#
# Usage: packaging/check-reproducible.sh [--portable]
#   --portable  the portable executable instead (packaging/portable.sh, twice, into
#               build/repro/N/provd-portable)
set -euo pipefail
cd "$(dirname "$0")/.."

rm -rf build/repro
for n in 1 2; do
    echo "== build $n"
    if [ "${1:-}" = "--portable" ]; then
        packaging/portable.sh --out "build/repro/$n/provd-portable"
    else
        packaging/build.sh --distpath "build/repro/$n"
    fi
done

digests() { (cd "build/repro/$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
if diff <(digests 1) <(digests 2); then
    echo "reproducible: $(digests 1 | wc -l) files identical; $(digests 1 | grep -E ' ./provd(-portable)?$')"
else
    echo "NOT reproducible: the files above differ between the two builds" >&2
    exit 1
fi
