"""`provd db copy SRC DST`: copy a SQLite database into PostgreSQL
(`provd.store.copy`). Like `provd serve`, it opens the databases itself (no server
involved), so it imports the store's modules, and only when it runs.

Exit status: 0 when every table's rows were copied and counted alike; 1 when the copy
failed or the counts differ (nothing is committed then); 2 for bad usage, a source
that cannot be read, or a destination that already holds data.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from provd.store.copy import TableCount


@click.group("db")
def db() -> None:
    """Move provd's data between databases."""


@db.command("copy")
@click.argument("source", metavar="SRC", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("destination", metavar="DST")
def copy_command(source: Path, destination: str) -> None:
    """Copy the SQLite database SRC into the PostgreSQL database DST (a postgresql://
    URL), which must be empty: jobs, logs, files, queues, daemons, daemon keys and quota
    allowances, in one transaction, then compare the row counts of every table.

    Stop `provd serve` on SRC first: writes made during the copy are not copied.
    """
    import trio

    from provd.config import redact_url
    from provd.errors import ProvdError, StoreUnusable
    from provd.secrets import is_postgres_url
    from provd.store.copy import CopyRefused, CountMismatch, copy_sqlite_to_postgres

    if not is_postgres_url(destination):
        raise click.BadParameter("expected a postgresql:// (or postgres://) URL", param_hint="DST")
    click.echo(f"copying {source} into {redact_url(destination)}", err=True)
    try:
        counts = trio.run(copy_sqlite_to_postgres, source, destination)
    except (CopyRefused, StoreUnusable) as error:
        _fail(str(error), 2)
    except CountMismatch as error:
        _print_counts(error.counts)
        _fail(str(error), 1)
    except ProvdError as error:
        _fail(str(error), 1)
    _print_counts(counts)


def _print_counts(rows: list[TableCount]) -> None:
    width = max([len("TABLE"), *(len(c.table) for c in rows)])
    click.echo(f"{'TABLE':<{width}}  {'SQLITE':>8}  {'POSTGRESQL':>10}")
    for c in rows:
        mark = "" if c.ok else "  differs"
        click.echo(f"{c.table:<{width}}  {c.source:>8}  {c.destination:>10}{mark}")


def _fail(message: str, status: int) -> NoReturn:
    click.echo(f"provd: {message}", err=True)
    sys.exit(status)
