"""The `provd` command line, in the style of sqlite-utils: each command is a thin
wrapper over a library call (`provd.client.connect_lite`'s Connect clients,
`provd.archive`), prints a
readable table by default and JSON with `--json`, and exits 0 on success, 1 when the
operation failed (`provd: <what went wrong>` on stderr) and 2 on bad usage.

- `provd/cli/serve.py`: `provd serve`
- `provd/client/daemon/command.py`: `provd daemon`
- `provd/client/cli/jobs.py`: `provd files upload`, `provd jobs create/list/get/cancel/logs`
- `provd/client/cli/admin.py`: `provd daemons list`, `provd quota …`, `provd version`
- `provd/client/cli/context.py`: `--url`, `--token`, `--db` (finding the server and the
  admin token) and errors
- `provd/client/cli/output.py`: tables and JSON

Commands are loaded lazily (`COMMANDS`): `provd --help` imports none of them, and a
command imports only its own module, so `provd jobs list` never loads the server and
`provd serve` loads it only when it runs. PyInstaller cannot follow these string
imports; packaging/provd.spec collects every `provd` module for that reason.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

from provd import __version__


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """A subcommand that is imported only when it is used: where it lives
    ("module:attribute") and the first sentence of its help, which `provd --help`
    lists without importing it (tests/test_cli.py checks the two agree)."""

    target: str
    short_help: str
    # Not listed by `provd --help` (the supervisor's `_worker`).
    hidden: bool = False

    def load(self) -> click.Command:
        module_name, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


# Every subcommand of `provd`; `provd --help` lists them sorted by name.
COMMANDS: Mapping[str, LazyCommand] = {
    "serve": LazyCommand(
        "provd.cli.serve:serve_command", "Run the provd server in the foreground."
    ),
    "daemon": LazyCommand(
        "provd.client.daemon.command:daemon_command",
        "Run a provisioner daemon with the built-in echo provisioner.",
    ),
    "files": LazyCommand("provd.client.cli.jobs:files", "Template source archives."),
    "jobs": LazyCommand(
        "provd.client.cli.jobs:jobs", "Create, list, inspect and cancel jobs, and read their logs."
    ),
    "daemons": LazyCommand(
        "provd.client.cli.admin:daemons", "The provisioner daemons provd has seen."
    ),
    "keys": LazyCommand(
        "provd.client.cli.keys:keys",
        "Daemon keys: scoped, revocable credentials for provisioner daemons.",
    ),
    "quota": LazyCommand(
        "provd.client.cli.admin:quota",
        "Workspace quota: daily credit allowances per user and group.",
    ),
    "version": LazyCommand(
        "provd.client.cli.admin:version", "Print provd's version and the platform it runs on."
    ),
    "examples": LazyCommand(
        "provd.cli.examples:examples",
        "Echo templates that come with provd: list them, or extract them to a folder.",
    ),
    "db": LazyCommand("provd.cli.db:db", "Move provd's data between databases."),
    "backup": LazyCommand(
        "provd.cli.backup:backup", "Copy the server's SQLite database to FILE while it serves."
    ),
    "_worker": LazyCommand(
        "provd.cli.serve:worker_command",
        "A worker process of `provd serve --workers` (started by it, not by people).",
        hidden=True,
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (`LazyCommand`)."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, LazyCommand], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        lazy = self.lazy_commands.get(cmd_name)
        return lazy.load() if lazy is not None else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with each lazy command's help from the table, so that
        `provd --help` imports no command."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit)))
            elif not self.lazy_commands[name].hidden:
                # A stand-in with the stored help shortens it exactly as click would.
                stand_in = click.Command(name, help=self.lazy_commands[name].short_help)
                rows.append((name, stand_in.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="provd")
def main() -> None:
    """provd: a job server for provisioner daemons.

    Every command that calls the server takes --url (env PROVD_URL) and --token
    (env PROVD_ADMIN_TOKEN); without a token it reads the admin-token file that
    `provd serve` keeps beside its database (--db, env PROVD_DB).
    """


__all__ = ["COMMANDS", "LazyCommand", "LazyGroup", "main"]
