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

# Run the server on the default address and database.
run *ARGS:
    {{venv}}/bin/provd serve {{ARGS}}
