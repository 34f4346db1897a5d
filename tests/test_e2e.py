"""The whole developer flow with real processes: `provd serve`, `provd daemon`, and
the CLI, the way a user runs them from a terminal."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import trio

from tests.processes import run_cli, start_daemon, start_server

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def create(url: str, *args: str) -> dict:  # type: ignore[type-arg]
    result = await run_cli(url, "jobs", "create", "--json", *args)
    return json.loads(result.stdout)


async def get(url: str, job_id: str) -> dict:  # type: ignore[type-arg]
    return json.loads((await run_cli(url, "jobs", "get", "--json", job_id)).stdout)


async def wait_for_status(url: str, job_id: str, *statuses: str) -> dict:  # type: ignore[type-arg]
    with trio.fail_after(60):
        while True:
            job = await get(url, job_id)
            if job["status"] in statuses:
                return job
            await trio.sleep(0.1)


async def test_every_outcome_from_the_command_line(tmp_path: Path, nursery: trio.Nursery) -> None:
    server = await start_server(nursery, tmp_path / "provd.db")
    url = server.url
    daemon = await start_daemon(nursery, url, "--name", "e2e", "--jobs", "2")

    # Each job type to success, following its logs with the CLI.
    for kind, example, extra in (
        ("import", "hello", []),
        (
            "build",
            "workspace",
            ["--workspace", "dev", "--workspace-id", "ws-1", "--owner-id", "u1"],
        ),
        ("dry-run", "hello", []),
    ):
        result = await run_cli(
            url,
            "jobs",
            "create",
            "--type",
            kind,
            "--archive",
            str(EXAMPLES / example),
            *extra,
            "--follow",
        )
        assert result.returncode == 0
        assert b"succeeded" in result.stderr, result.stderr

    # A job that fails, with its error.
    broken = await create(url, "--type", "import", "--archive", str(EXAMPLES / "broken"))
    failed = await wait_for_status(url, broken["id"], "JOB_STATUS_FAILED")
    assert failed["error"]

    # An import missing a required variable fails with REQUIRED_TEMPLATE_VARIABLES;
    # given the value, the same template imports.
    needy = await create(url, "--type", "import", "--archive", str(EXAMPLES / "needs-variables"))
    failed = await wait_for_status(url, needy["id"], "JOB_STATUS_FAILED")
    assert failed["errorCode"] == "REQUIRED_TEMPLATE_VARIABLES"
    assert "api_token" in failed["error"]
    given = await create(
        url,
        "--type",
        "import",
        "--archive",
        str(EXAMPLES / "needs-variables"),
        "--var",
        "api_token=s3cret",
    )
    await wait_for_status(url, given["id"], "JOB_STATUS_SUCCEEDED")

    # A job canceled while it runs ends canceled, and the daemon stops working on it.
    slow = await create(
        url, "--type", "build", "--archive", str(EXAMPLES / "slow"), "--workspace", "w"
    )
    await wait_for_status(url, slow["id"], "JOB_STATUS_RUNNING")
    await run_cli(url, "jobs", "cancel", slow["id"])
    canceled = await wait_for_status(url, slow["id"], "JOB_STATUS_CANCELED")
    assert canceled["workerId"]
    logs = (await run_cli(url, "jobs", "logs", slow["id"])).stdout.decode()
    assert "asked to cancel" in logs

    listed = json.loads((await run_cli(url, "jobs", "list", "--json")).stdout)
    assert len(listed["jobs"]) == 7

    # SIGTERM to a daemon that is waiting: it cancels its streams and exits 0, and a
    # job created afterwards is not locked for it.
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait() == 0, daemon.output.decode()
    after = await create(url, "--type", "import", "--archive", str(EXAMPLES / "hello"))
    await trio.sleep(0.5)
    pending = await get(url, after["id"])
    assert pending["status"] == "JOB_STATUS_PENDING"
    assert pending["workerId"] == ""
    daemons = json.loads((await run_cli(url, "daemons", "list", "--json")).stdout)
    assert [d["connected"] for d in daemons["daemons"]] == [False]

    server.signal(signal.SIGTERM)
    assert await server.wait() == 0
