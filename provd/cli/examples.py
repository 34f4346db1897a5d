"""`provd examples list` and `provd examples extract`: the echo templates that come
with provd (provd/examples/, in the wheel and in the executable).

Why: someone who downloaded only the executable has no clone and so no `examples/`
folder; with these, and with `--archive example:NAME` (`resolve_archive`), the first
five minutes need nothing but the one file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

import provd

# `--archive example:NAME` (provd jobs create, provd files upload) names a bundled example.
EXAMPLE_PREFIX = "example:"
# The file that makes a folder an echo template (docs/echo.md).
SCRIPT = "provd-echo.json"


def examples_root() -> Path:
    """Where the bundled examples are: provd/examples beside provd's modules, in a
    checkout, an installed wheel and the executable's unpacked archive alike."""
    return Path(provd.__file__).resolve().parent / "examples"


def bundled_examples() -> dict[str, Path]:
    """Every bundled example by name (its folder's), sorted: the folders that hold a
    `provd-echo.json`."""
    root = examples_root()
    if not root.is_dir():
        return {}
    return {
        path.name: path
        for path in sorted(root.iterdir())
        if path.is_dir() and (path / SCRIPT).is_file()
    }


def example_path(name: str) -> Path:
    """The folder of the bundled example `name`; a `click.BadParameter` naming the
    examples there are if there is none."""
    found = bundled_examples()
    if name not in found:
        names = ", ".join(found) or "none"
        raise click.BadParameter(f"no bundled example {name!r} (there are: {names})")
    return found[name]


def resolve_archive(value: str) -> str:
    """`value` as `--archive` takes it: `example:NAME` becomes the bundled example's
    folder, anything else is a path and stays as it is."""
    if value.startswith(EXAMPLE_PREFIX):
        return str(example_path(value.removeprefix(EXAMPLE_PREFIX)))
    return value


def description(path: Path) -> str:
    """An example's one-line description: its script's `description`, without the
    leading "NAME: " the bundled ones start with."""
    try:
        text = json.loads((path / SCRIPT).read_text(encoding="utf-8")).get("description", "")
    except (OSError, ValueError, AttributeError):
        return ""
    return str(text).removeprefix(f"{path.name}: ")


def example_files(path: Path) -> list[Path]:
    """The files of a bundled folder, relative to it and sorted (no bytecode caches)."""
    return sorted(
        file.relative_to(path)
        for file in path.rglob("*")
        if file.is_file() and "__pycache__" not in file.parts
    )


@click.group("examples")
def examples() -> None:
    """Echo templates that come with provd: list them, or extract them to a folder.

    Any of them can also be used directly: `provd jobs create --archive
    example:NAME`, without extracting it.
    """


@examples.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def examples_list(as_json: bool) -> None:
    """List the bundled examples: name and what each shows."""
    rows = [(name, description(path)) for name, path in bundled_examples().items()]
    if as_json:
        click.echo(
            json.dumps([{"name": name, "description": text} for name, text in rows], indent=2)
        )
        return
    if not rows:
        click.echo("No examples.")
        return
    from provd.client.cli.output import format_table

    click.echo(format_table(rows, ("name", "description")))


@examples.command("extract")
@click.argument("arguments", nargs=-1, required=True, metavar="[NAME] DIR")
@click.option("--force", is_flag=True, help="Overwrite files that exist already.")
def examples_extract(arguments: tuple[str, ...], force: bool) -> None:
    """Write a bundled example's files into DIR, or, without NAME, every example
    into DIR/NAME (and the examples' README.md into DIR).

    Existing files are left alone (the command fails) unless --force is given.

    \b
    Examples:
      provd examples extract hello ./my-template
      provd examples extract ./examples
    """
    if len(arguments) > 2:
        raise click.UsageError("give at most NAME and DIR")
    target = Path(arguments[-1])
    if len(arguments) == 2:
        try:
            sources = [(example_path(arguments[0]), target)]
        except click.BadParameter as error:
            raise click.BadParameter(error.message, param_hint="NAME") from None
    else:
        sources = [(path, target / name) for name, path in bundled_examples().items()]
        if (examples_root() / "README.md").is_file():
            sources.append((examples_root(), target))
    copies = []
    for source, destination in sources:
        files = ["README.md"] if source == examples_root() else example_files(source)
        copies += [(source / name, destination / name) for name in map(Path, files)]
    existing = [str(to) for _, to in copies if to.exists()]
    if existing and not force:
        from provd.client.cli.context import Failure

        raise Failure(f"{', '.join(existing)}: exists already (--force overwrites)")
    for source_file, destination_file in copies:
        destination_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_file, destination_file)
        click.echo(str(destination_file))
