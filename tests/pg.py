"""A throwaway PostgreSQL cluster for the tests: started once per session, removed after.

`start_cluster` runs `initdb` into a fresh temporary directory and `pg_ctl start` with
the server listening only on a Unix socket in that directory (no TCP port at all), trust
authentication, and durability off (fsync, synchronous_commit, full_page_writes: the
data is thrown away). initdb refuses to run as root, so when the tests run as root
the cluster belongs to the unprivileged user `nobody` (the directory is chowned to it
and the server runs with its uid and gid); root connects through the socket anyway.
The superuser role is `provd`.

The server binaries are looked up on PATH, then in Debian's
/usr/lib/postgresql/<version>/bin (the newest version). `.ci/run` installs Debian's
`postgresql` package when they are missing.

`create_schema`/`drop_schema`: each test gets an empty schema of its own in one
database, and the store it opens migrates it from scratch.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import pytest

from tests import pg

ROLE = "provd"
UNPRIVILEGED_USER = "nobody"
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
}


class ClusterUnavailable(Exception):
    """PostgreSQL could not be started here; the message says why."""


def find_bin_dir() -> Path | None:
    """The directory of `initdb` and `pg_ctl`: PATH first, then the newest of Debian's."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if (path / "initdb").exists() and (path / "pg_ctl").exists()
    ]
    return max(candidates, key=version) if candidates else None


@dataclass
class Cluster:
    bin_dir: Path
    base: Path  # everything of the cluster lives under it
    uid: int | None  # the user the server runs as (None: this process's user)
    gid: int | None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "socket"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} user={ROLE} dbname={dbname}"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one of the server's programs as the cluster's user."""
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.base,
            user=self.uid,
            group=self.gid,
            extra_groups=[] if self.uid is not None else None,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            timeout=120,
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def start_cluster() -> Cluster:
    """initdb and start a new cluster; raises `ClusterUnavailable` saying why not."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise ClusterUnavailable(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: install the"
            " distribution's package (Debian: apt-get install postgresql)"
        )
    uid = gid = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            raise ClusterUnavailable(
                f"running as root and there is no user {UNPRIVILEGED_USER!r} to run initdb as"
            ) from None
        uid, gid = account.pw_uid, account.pw_gid
    base = Path(tempfile.mkdtemp(prefix="provd-pg-"))
    cluster = Cluster(bin_dir, base, uid, gid)
    try:
        cluster.socket_dir.mkdir()
        if uid is not None and gid is not None:
            for path in (base, cluster.socket_dir):
                os.chown(path, uid, gid)
        done = cluster.run(
            "initdb",
            "-D",
            str(cluster.data_dir),
            "-U",
            ROLE,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        if done.returncode != 0:
            raise ClusterUnavailable(f"initdb failed: {done.stderr.strip() or done.stdout}")
        options = " ".join(f"-c {key}={value}" for key, value in SERVER_SETTINGS.items())
        options += f" -c unix_socket_directories={cluster.socket_dir}"
        done = cluster.run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(cluster.data_dir),
            "-l",
            str(cluster.log_file),
            "-o",
            options,
        )
        if done.returncode != 0:
            raise ClusterUnavailable(
                f"pg_ctl start failed: {done.stderr.strip() or done.stdout.strip()}\n"
                f"{cluster.log_tail()}"
            )
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    """Stop the server (immediately: the data is thrown away) and remove everything."""
    try:
        if (cluster.data_dir / "postmaster.pid").exists():
            cluster.run("pg_ctl", "stop", "-D", str(cluster.data_dir), "-m", "immediate", "-w")
    finally:
        shutil.rmtree(cluster.base, ignore_errors=True)


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


# -- per-test schemas ----------------------------------------------------------------

DATABASE = "provd_tests"


def _admin(cluster: Cluster, statement: str, dbname: str = DATABASE) -> None:
    import psycopg

    with psycopg.connect(cluster.dsn(dbname), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def create_test_database(cluster: Cluster) -> None:
    """The database that holds every test's schema."""
    _admin(cluster, f"CREATE DATABASE {DATABASE}", dbname="postgres")


def create_schema(cluster: Cluster) -> str:
    """A new, empty schema; returns a DSN whose connections use it (search_path), so a
    store opened on it migrates it from scratch like a new database. Much faster
    than a database per test (CREATE DATABASE copies the catalogs: ~0.5 s)."""
    name = f"t_{uuid.uuid4().hex}"
    _admin(cluster, f"CREATE SCHEMA {name}")
    return f"{cluster.dsn(DATABASE)} options='-c search_path={name}'"


def drop_schema(cluster: Cluster, dsn: str) -> None:
    name = dsn.rsplit("search_path=", 1)[1].rstrip("'")
    _admin(cluster, f"DROP SCHEMA IF EXISTS {name} CASCADE")


# -- a cluster for a fixture, with the suite's skip/fail rule -------------------------


def cluster_for_fixture() -> Iterator[Cluster]:
    """A started cluster with the tests' database, for a fixture to `yield from`; stopped
    and removed after. Without PostgreSQL (no binaries, no psycopg) the test is skipped
    saying why, except in CI (CI=true), where it fails: tests/store/conftest.py's rule."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as error:
        _unavailable(f"psycopg is not installed ({error}): pip install -e '.[postgres]'")
    try:
        cluster = start_cluster()
    except ClusterUnavailable as error:
        _unavailable(str(error))
    try:
        create_test_database(cluster)
        yield cluster
    finally:
        stop_cluster(cluster)


def _unavailable(why: str) -> NoReturn:

    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI: {why}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {why}")


PASSWORD_ROLE = "provd_pw"


PASSWORD = "Sekr3t-pw-4d7f"


def password_schema(cluster: pg.Cluster) -> str:
    """A role that logs in with a password (scram) and a schema of its own; returns
    the schema."""
    import psycopg

    hba = cluster.data_dir / "pg_hba.conf"
    if PASSWORD_ROLE not in hba.read_text():
        hba.write_text(f"local all {PASSWORD_ROLE} scram-sha-256\n" + hba.read_text())
        done = cluster.run("pg_ctl", "reload", "-D", str(cluster.data_dir))
        assert done.returncode == 0, done.stderr
        with psycopg.connect(cluster.dsn(pg.DATABASE), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")  # type: ignore[arg-type]
    schema = f"pw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.dsn(pg.DATABASE), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {PASSWORD_ROLE}")  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while True:  # the reload takes effect a moment later
        try:
            with psycopg.connect(password_url(cluster, "postgresql", "wrong", schema)):
                pass
        except psycopg.OperationalError as error:
            if "password" in str(error):
                return schema
        assert time.monotonic() < deadline, "pg_hba.conf reload did not take effect"
        time.sleep(0.05)


def password_url(cluster: pg.Cluster, scheme: str, password: str, schema: str) -> str:
    host = quote(str(cluster.socket_dir), safe="")
    options = quote(f"-c search_path={schema}", safe="")
    return f"{scheme}://{PASSWORD_ROLE}:{password}@/{pg.DATABASE}?host={host}&options={options}"
