# provd's everyday commands. `just --list` shows them.

venv := ".venv"
python := venv / "bin/python"

# Create the venv and install provd with its dev tools.
setup:
    python3 -m venv {{venv}}
    {{venv}}/bin/pip install -e '.[dev]'

# Regenerate provd/gen from proto/ (commit the result).
gen:
    {{python}} proto/generate.py

# Fail if provd/gen is not what `just gen` produces from proto/.
check-gen: gen
    git diff --exit-code --stat -- provd/gen
    test -z "$(git status --porcelain -- provd/gen)"

# Run the test suite.
test *ARGS:
    {{venv}}/bin/pytest {{ARGS}}

# Lint, format check and type check.
lint:
    {{venv}}/bin/ruff check .
    {{venv}}/bin/ruff format --check provd tests proto bench
    {{venv}}/bin/mypy provd

# Rewrite the settings table of docs/operations.md from `provd serve`'s options.
settings-doc:
    {{python}} -m provd.cli.settings --write docs/operations.md

# Run the server on the default address and database.
run *ARGS:
    {{venv}}/bin/provd serve {{ARGS}}

# Every release file of this platform in dist/release/: executables, SBOM, SHA256SUMS
# (--with-arm64: the aarch64 files too, built under qemu by packaging/arm64.sh).
release *ARGS:
    VENV={{venv}} packaging/release.sh {{ARGS}}

# Run every benchmark; each prints a table and one JSON line (docs/performance.md).
# scale_out.py also needs h2load (apt-get install nghttp2-client).
bench:
    {{python}} bench/lifecycle.py
    {{python}} bench/dispatch.py --subprocess
    {{python}} bench/scale.py
    {{python}} bench/logs.py
    {{python}} bench/peer.py
    {{python}} bench/compression.py
    {{python}} bench/listings.py
    {{python}} bench/peer.py --workers auto
    {{python}} bench/scale_out.py
    {{python}} bench/startup.py

# Build dist/provd (one file) and dist/provd-onedir/ with PyInstaller; reproducible.
package:
    VENV={{venv}} packaging/build.sh

# Build dist/provd-portable (the one file + staticx: needs no libc); reproducible.
portable:
    VENV={{venv}} packaging/portable.sh

# The arm64 executables, built and smoke-tested under qemu (as root), in dist/arm64/.
arm64 *ARGS:
    packaging/arm64.sh {{ARGS}}
