"""The `provd` command line, in the style of sqlite-utils: each command is a thin
wrapper over a library call (the generated Connect clients, `provd.archive`), prints a
readable table by default and JSON with `--json`, and exits 0 on success, 1 when the
operation failed (`provd: <what went wrong>` on stderr) and 2 on bad usage.

| module | commands |
|---|---|
| `serve.py` | `provd serve` |
| `../daemon/command.py` | `provd daemon` |
| `jobs.py` | `provd files upload`, `provd jobs create/list/get/cancel/logs` |
| `admin.py` | `provd daemons list`, `provd quota set/list/get/delete`, `provd version` |
| `context.py` | `--url`, `--token`, `--db`: finding the server and the admin token; errors |
| `output.py` | tables and JSON |
"""

from __future__ import annotations

import click

from provd import __version__
from provd.cli.serve import serve_command
from provd.client.cli.admin import daemons, quota, version
from provd.client.cli.jobs import files, jobs
from provd.client.daemon.command import daemon_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provd")
def main() -> None:
    """provd: a job server for provisioner daemons.

    Every command that calls the server takes --url (env PROVD_URL) and --token
    (env PROVD_ADMIN_TOKEN); without a token it reads the admin-token file that
    `provd serve` keeps beside its database (--db, env PROVD_DB).
    """


main.add_command(serve_command)
main.add_command(daemon_command)
main.add_command(files)
main.add_command(jobs)
main.add_command(daemons)
main.add_command(quota)
main.add_command(version)

__all__ = ["main"]
