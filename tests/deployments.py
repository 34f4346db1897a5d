"""Several real `provd serve` processes on one database, as the cross-process tests
(tests/test_cross_process.py) see them: a `Deployment`.

A scenario never builds a URL itself: it asks the deployment for a client *on process
i* (`jobs(i)`, `daemon(i, …)`, `daemons(i)`), for the URLs a `provd daemon` should
try with process i first (`daemon_urls(i)`), and to SIGKILL process i (`kill(i)`).
Every process here has its own port, so "on process i" is "to urls[i]". A deployment
whose processes share one port (`provd serve --workers N`) can plug in by pinning
those clients to a process some other way (see `Deployment`'s docstring).

- `postgres_deployment`: N `provd serve --db postgresql://…` on one fresh schema of
  the throwaway cluster (tests/pg.py);
- `sqlite_deployment`: N `provd serve` on one SQLite file.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import quote

import trio

from provd.client.connect import call, daemon_service_client
from provd.gen.provd.v1 import daemons_pb2 as dpb
from tests import pg
from tests.conftest import ADMIN_TOKEN, Server
from tests.daemon_clients import Jobs, TestDaemon
from tests.processes import EXIT_SECONDS, ServerProcess, provd_env, start_server


def at(url: str) -> Server:
    """What the test clients need of a server: its URL."""
    return cast(Server, _Address(url))


@dataclass(frozen=True)
class _Address:
    url: str


@dataclass
class Deployment:
    """provd processes serving one database.

    `urls[i]` reaches process `i` (pid `pids[i]`) and no other. The scenarios use only
    the methods below to talk to "process i", so a deployment whose processes share
    one address (workers) needs to override `jobs`, `daemon` and `daemons` to return
    clients whose connection is held by process i (open connections until /proc says
    that pid holds one: tests/procfs.py `holders`), `daemon_urls` to return its one
    URL, and `kill` to SIGKILL a worker (its supervisor then starts another: `alive`
    must say which indices still serve the processes' old identities)."""

    name: str
    processes: list[ServerProcess]
    killed: set[int] = field(default_factory=set)

    @property
    def urls(self) -> list[str]:
        return [process.url for process in self.processes]

    @property
    def pids(self) -> list[int]:
        return [process.process.pid for process in self.processes]

    def __len__(self) -> int:
        return len(self.processes)

    def alive(self) -> list[int]:
        """The indices of the processes not killed."""
        return [i for i in range(len(self)) if i not in self.killed]

    def jobs(self, i: int) -> Jobs:
        """The job API on process i."""
        return Jobs(at(self.urls[i]))

    def daemon(self, i: int, name: str, **options: object) -> TestDaemon:
        """A test daemon whose calls all go to process i."""
        return TestDaemon(at(self.urls[i]), name, **options)  # type: ignore[arg-type]

    async def daemons(self, i: int) -> list[dpb.Daemon]:
        """ListDaemons through process i."""
        client = daemon_service_client(self.urls[i], ADMIN_TOKEN)
        return list((await call(client.list_daemons, dpb.ListDaemonsRequest())).daemons)

    def daemon_urls(self, first: int) -> list[str]:
        """Every process's URL, process `first` first, for `provd daemon --url …`."""
        return self.urls[first:] + self.urls[:first]

    async def kill(self, i: int) -> None:
        """SIGKILL process i and wait until it is gone."""
        self.killed.add(i)
        os.kill(self.pids[i], signal.SIGKILL)
        status = await self.processes[i].wait()
        assert status == -signal.SIGKILL, self.output(i)

    def output(self, i: int) -> str:
        return f"--- {self.name} process {i} ({self.urls[i]}) said:\n" + bytes(
            self.processes[i].output
        ).decode(errors="replace")

    def outputs(self) -> str:
        return "\n".join(self.output(i) for i in range(len(self)))

    async def stop(self) -> None:
        """SIGTERM every live process and wait for them; their exit statuses are not
        judged here (a test may have left streams open)."""
        for i in self.alive():
            if self.processes[i].process.returncode is None:
                self.processes[i].signal(signal.SIGTERM)
        with trio.move_on_after(EXIT_SECONDS):
            for i in self.alive():
                await self.processes[i].process.wait()
        for i in self.alive():
            if self.processes[i].process.returncode is None:
                self.processes[i].signal(signal.SIGKILL)
                await self.processes[i].process.wait()


# Every process of a deployment gets these (and the test's own), so that drains at
# the end of a test are quick.
COMMON_ARGS = ("--shutdown-grace", "0.5")


def postgres_url(cluster: pg.Cluster, dsn: str) -> str:
    """A postgresql:// URL (what `--db` takes) for `dsn`, a key=value DSN of
    `pg.create_schema` (its schema is its search_path)."""
    schema = dsn.rsplit("search_path=", 1)[1].rstrip("'")
    host = quote(str(cluster.socket_dir), safe="")
    options = quote(f"-c search_path={schema}", safe="")
    return f"postgresql://{pg.ROLE}@/{pg.DATABASE}?host={host}&options={options}"


async def postgres_deployment(
    nursery: trio.Nursery, url: str, count: int, args: Sequence[str], data_home: Path
) -> Deployment:
    """`count` `provd serve --db URL` started at once (migrations take turns behind
    an advisory lock), each on a port of its own."""
    env = provd_env(XDG_DATA_HOME=str(data_home))
    processes: list[ServerProcess | None] = [None] * count

    async def start(i: int) -> None:
        processes[i] = await start_server(nursery, cast(Path, url), *COMMON_ARGS, *args, env=env)

    async with trio.open_nursery() as starting:
        for i in range(count):
            starting.start_soon(start, i)
    return Deployment(f"postgres-{count}", [p for p in processes if p is not None])


async def sqlite_deployment(
    nursery: trio.Nursery, db_path: Path, count: int, args: Sequence[str]
) -> Deployment:
    """`count` `provd serve --db FILE` on one file: the first creates and migrates it,
    the others then start at once and join its wake-up path."""
    env = provd_env(XDG_DATA_HOME=str(db_path.parent / "data"))
    first = await start_server(nursery, db_path, *COMMON_ARGS, *args, env=env)
    processes: list[ServerProcess | None] = [first] + [None] * (count - 1)

    async def start(i: int) -> None:
        processes[i] = await start_server(nursery, db_path, *COMMON_ARGS, *args, env=env)

    async with trio.open_nursery() as starting:
        for i in range(1, count):
            starting.start_soon(start, i)
    return Deployment(f"sqlite-{count}", [p for p in processes if p is not None])
