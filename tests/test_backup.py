"""`provd backup FILE` under load: the copy, taken through the running server while a
daemon completes jobs and creators keep creating them, holds every job acknowledged
before the backup began, and a second server serves it."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio

from provd.client.connect import call
from provd.errors import FailedPrecondition
from provd.gen.provd.v1 import backup_pb2 as bpb
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.rpc.backup_handler import BackupServiceHandler
from provd.store.memory import MemoryStore
from tests.archives import make_tar
from tests.daemon_clients import Jobs
from tests.processes import run_cli, start_daemon, start_server

CREATORS = 4
WARM_UP_SECONDS = 2.0
ECHO = {"stages": [{"name": "Working", "line_delay": 0, "lines": ["a" * 200] * 5}]}


def _files(directory: Path, pattern: str) -> list[Path]:
    return list(directory.glob(pattern))


@pytest.mark.slow
async def test_backup_under_load_holds_every_acknowledged_job(tmp_path: Path) -> None:
    db = tmp_path / "live" / "provd.db"
    db.parent.mkdir()
    copy = tmp_path / "restore" / "provd.db"
    copy.parent.mkdir()
    acknowledged: list[str] = []
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, db)
        daemon = await start_daemon(nursery, server.url, "--jobs", "4")
        jobs = Jobs(SimpleNamespace(url=server.url))  # type: ignore[arg-type]
        uploaded = await call(
            jobs.client.upload_file,
            pb.UploadFileRequest(data=make_tar({"provd-echo.json": json.dumps(ECHO).encode()})),
        )

        async def create() -> None:
            while True:
                job = await jobs.create(file_hash=uploaded.hash)
                acknowledged.append(job.id)

        async with trio.open_nursery() as load:
            for _ in range(CREATORS):
                load.start_soon(create)
            await trio.sleep(WARM_UP_SECONDS)
            before = list(acknowledged)
            started = trio.current_time()
            result = await run_cli(server.url, "backup", str(copy), "--json")
            took = trio.current_time() - started
            during = len(acknowledged) - len(before)
            load.cancel_scope.cancel()
        written = json.loads(result.stdout)
        print(
            f"\nbackup of {written['bytes']} bytes, {written['jobs']} jobs, took {took:.2f} s;"
            f" {len(before)} jobs acknowledged before it, {during} during it"
        )
        assert written["file"] == str(copy)
        assert written["bytes"] == copy.stat().st_size
        assert len(before) > 0 and written["jobs"] >= len(before)
        assert _files(copy.parent, ".*.tmp") == [], "the CLI left its temporary file"
        assert _files(db.parent, "*.backup-*") == [], "the server left its copy"
        with sqlite3.connect(copy) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            stored = {row[0] for row in conn.execute("SELECT id FROM jobs")}
        assert set(before) <= stored

        # A second server on the copy serves every acknowledged job.
        restored = await start_server(nursery, copy)
        on_copy = Jobs(SimpleNamespace(url=restored.url))  # type: ignore[arg-type]
        for job_id in before:
            assert (await on_copy.get(job_id)).id == job_id
        daemon.signal(signal.SIGINT)
        await daemon.wait()
        for process in (restored, server):
            process.signal(signal.SIGTERM)
            assert await process.wait() == 0


@pytest.mark.slow
async def test_backup_without_the_admin_token_is_unauthenticated(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, tmp_path / "provd.db")
        target = tmp_path / "copy.db"
        result = await run_cli(server.url, "backup", str(target), "--token", "wrong", check=False)
        assert result.returncode == 1
        assert b"unauthenticated" in result.stderr
        assert not target.exists()
        assert _files(tmp_path, ".*.tmp") == []
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


async def test_backup_on_another_store_is_a_failed_precondition() -> None:
    """A store without a file to copy (PostgreSQL; here the memory store) answers
    failed_precondition, naming pg_dump."""
    handler = BackupServiceHandler(MemoryStore())
    with pytest.raises(FailedPrecondition, match="pg_dump"):
        async for _ in handler.backup(bpb.BackupRequest(), None):  # type: ignore[arg-type]
            pass
