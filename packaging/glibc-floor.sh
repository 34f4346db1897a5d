#!/usr/bin/env bash
# The newest glibc symbol version that a built provd needs: the oldest glibc (so, the
# oldest Linux distribution) it can start on. Checks the executable and every shared
# library of the one-directory bundle, which holds the same files the one-file
# executable unpacks.
#
# Usage: packaging/glibc-floor.sh [dist/provd-onedir] [-v]   (-v: one line per file)
set -euo pipefail
bundle=${1:-dist/provd-onedir}
verbose=${2:-}

floor=
while IFS= read -r -d '' file; do
    need=$(objdump -T "$file" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -n1) \
        || true
    [ -n "$need" ] || continue
    [ "$verbose" = -v ] && printf '%-12s %s\n' "$need" "${file#"$bundle"/}"
    floor=$(printf '%s\n%s\n' "$floor" "$need" | sed '/^$/d' | sort -V | tail -n1)
done < <(find "$bundle" -type f \( -name provd -o -name '*.so' -o -name '*.so.*' \) -print0)

echo "glibc floor: ${floor#GLIBC_} (highest GLIBC_ symbol version needed in $bundle)"
