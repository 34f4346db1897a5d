"""The `provd` admin CLI against a real server.

Most tests run the click command in a worker thread (CliRunner) against the
in-process server; `test_cli_as_a_subprocess` runs `python -m provd` for real.
A test daemon (tests.daemon_clients.TestDaemon) takes jobs so that they run and end.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tarfile
import types
from pathlib import Path
from typing import Any

import click
import pytest
import trio
from click.testing import Result

from provd import __version__
from provd.archive import pack_directory
from provd.cli import COMMANDS, main
from provd.client.cli.output import format_table
from provd.client.connect import call
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.secrets import ADMIN_TOKEN_FILE, secret_path
from tests.archives import MAIN_TF, make_tar, make_zip
from tests.cli_runner import CLI_SECONDS, ENV_NAMES, Cli
from tests.conftest import ADMIN_TOKEN, Server
from tests.daemon_clients import Jobs, TestDaemon


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> Cli:
    return Cli(server.url, tmp_path / "xdg")


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """A template directory with a subdirectory and an executable file."""
    root = tmp_path / "template"
    (root / "modules").mkdir(parents=True)
    (root / "main.tf").write_bytes(MAIN_TF["main.tf"])
    (root / "modules" / "net.tf").write_text("# network\n")
    (root / "setup.sh").write_text("#!/bin/sh\n")
    (root / "setup.sh").chmod(0o755)
    return root


async def upload_hash(cli: Cli, path: Path) -> str:
    return str((await cli.json("files", "upload", str(path)))["hash"])


# -- version, usage --------------------------------------------------------------------


async def test_version(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    here = f"{sys.platform}-{os.uname().machine}"
    assert (await cli("version")).stdout == f"provd {__version__}\nplatform  {here}\n"
    assert await cli.json("version") == {"version": __version__, "platform": here}
    # A release build's provd/_build_info.py adds the commit and build date.
    build = types.ModuleType("provd._build_info")
    build.COMMIT = "0123abc"  # type: ignore[attr-defined]
    build.BUILD_DATE = "2025-01-31T12:00:00Z"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "provd._build_info", build)
    shown = (await cli("version")).stdout
    assert shown.splitlines()[0] == f"provd {__version__}"
    assert "0123abc" in shown and "2025-01-31T12:00:00Z" in shown
    assert await cli.json("version") == {
        "version": __version__,
        "platform": here,
        "commit": "0123abc",
        "buildDate": "2025-01-31T12:00:00Z",
    }


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "get"],  # missing ID
        ["jobs", "frobnicate"],
        ["jobs", "list", "--status", "sleeping"],
        ["jobs", "list", "--type", "image"],
        ["jobs", "list", "--tag", "no-equals-sign"],
        ["jobs", "list", "--url", "127.0.0.1:8420"],
        ["jobs", "create", "--type", "import"],  # neither --file nor --archive
        ["jobs", "create", "--type", "import", "--file", "a" * 64, "--param", "cpu=2"],
        ["jobs", "create", "--type", "dry-run", "--file", "a" * 64, "--transition", "stop"],
        ["quota", "set", "5"],  # neither --user nor --group
        ["quota", "set", "--user", "u1", "--group", "g", "5"],
        ["quota", "set", "--user", "u1", "--", "-1"],
        ["files", "upload", "/no/such/path"],
    ],
)
async def test_bad_usage_exits_2(cli: Cli, args: list[str]) -> None:
    result = await cli(*args, expect=2)
    assert "Usage: provd" in result.stderr
    assert "Error:" in result.stderr


def test_the_lazy_command_table_matches_the_commands() -> None:
    """`provd --help` lists the short help stored in `provd.cli.COMMANDS` without
    importing the commands; it must say what each command's own help says."""
    assert main.list_commands(click.Context(main)) == sorted(COMMANDS)
    for name, lazy in COMMANDS.items():
        command = lazy.load()
        assert command.name == name
        assert command.hidden == lazy.hidden, name
        stored = click.Command(name, help=lazy.short_help)
        for limit in (30, 45, 200):
            assert stored.get_short_help_str(limit) == command.get_short_help_str(limit), name


async def test_top_level_help_lists_every_command(cli: Cli) -> None:
    shown = (await cli("--help")).stdout
    assert shown.startswith("Usage: provd [OPTIONS] COMMAND [ARGS]...")
    listed = shown.split("Commands:\n", 1)[1].splitlines()
    shown_commands = sorted(name for name, lazy in COMMANDS.items() if not lazy.hidden)
    assert [line.split()[0] for line in listed] == shown_commands
    assert "_worker" not in shown_commands
    jobs_line = ["jobs", "Create, list, inspect and cancel jobs, and read their logs."]
    assert jobs_line in [line.split(None, 1) for line in listed]
    for command in ("serve", "daemon"):
        assert f"Usage: provd {command} [OPTIONS]" in (await cli(command, "--help")).stdout
    unknown = await cli("frobnicate", expect=2)
    assert "No such command 'frobnicate'" in unknown.stderr


async def test_every_command_has_help(cli: Cli) -> None:
    commands = [
        ["files", "upload"],
        *[["jobs", name] for name in ("create", "list", "queues", "get", "cancel", "logs")],
        ["daemons", "list"],
        *[["quota", name] for name in ("set", "list", "get", "delete")],
        ["version"],
    ]
    for command in commands:
        shown = (await cli(*command, "--help")).stdout
        assert f"Usage: provd {' '.join(command)}" in shown
        if command != ["version"]:
            assert "--url" in shown and "--token" in shown and "--json" in shown


# -- files -----------------------------------------------------------------------------


async def test_upload_a_tar_a_zip_and_a_directory(cli: Cli, tmp_path: Path, template: Path) -> None:
    tar = make_tar(MAIN_TF)
    (tmp_path / "t.tar").write_bytes(tar)
    result = await cli("files", "upload", str(tmp_path / "t.tar"))
    expected = hashlib.sha256(tar).hexdigest()
    assert result.stdout.split() == ["hash", expected, "size", "10.0", "KiB"]
    assert await cli.json("files", "upload", str(tmp_path / "t.tar")) == {
        "hash": expected,
        "size": str(len(tar)),
    }

    (tmp_path / "t.zip").write_bytes(make_zip(MAIN_TF))
    zipped = await upload_hash(cli, tmp_path / "t.zip")
    assert len(zipped) == 64 and zipped == await upload_hash(cli, tmp_path / "t.zip")

    # A directory is packed deterministically: the hash is that of pack_directory,
    # and touching the files does not change it.
    packed = await upload_hash(cli, template)
    assert packed == hashlib.sha256(pack_directory(template)).hexdigest()
    os.utime(template / "main.tf", (1, 1))
    assert await upload_hash(cli, template) == packed


async def test_upload_of_something_that_is_no_archive_fails(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a tar")
    result = await cli("files", "upload", str(tmp_path / "notes.txt"), expect=1)
    assert result.stderr.startswith("provd: invalid_argument: data: not a valid tar archive")
    (tmp_path / "broken.tgz").write_text("not gzip")
    result = await cli("files", "upload", str(tmp_path / "broken.tgz"), expect=1)
    assert "not a gzip file" in result.stderr


def test_pack_directory_is_deterministic(template: Path) -> None:
    (template / "link.tf").symlink_to("main.tf")
    with tarfile.open(fileobj=io.BytesIO(pack_directory(template))) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == [
            "link.tf",
            "main.tf",
            "modules",
            "modules/net.tf",
            "setup.sh",
        ]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
        modes = {m.name: m.mode for m in members}
        assert (modes["main.tf"], modes["setup.sh"], modes["modules"]) == (0o644, 0o755, 0o755)
        assert archive.getmember("link.tf").linkname == "main.tf"
        extracted = archive.extractfile("modules/net.tf")
        assert extracted is not None and extracted.read() == b"# network\n"


# -- jobs ------------------------------------------------------------------------------


async def test_create_each_type(
    cli: Cli, server: Server, nursery: trio.Nursery, template: Path, tmp_path: Path
) -> None:
    imported = await cli.json(
        "jobs", "create", "--type", "import", "--archive", str(template), "--var", "region=eu"
    )
    assert imported["type"] == "JOB_TYPE_TEMPLATE_IMPORT"
    assert imported["status"] == "JOB_STATUS_PENDING"
    assert imported["fileHash"] == hashlib.sha256(pack_directory(template)).hexdigest()
    assert imported["templateImport"]["userVariableValues"] == [
        {"name": "region", "value": "eu", "sensitive": False}
    ]

    (tmp_path / "state.tfstate").write_bytes(b"\x00state")
    build = await cli.json(
        "jobs", "create", "--type", "build", "--file", imported["fileHash"],
        "--provisioner", "echo", "--organization", "acme", "--tag", "os=linux",
        "--var", "region=us", "--param", "cpu=2", "--param", "disk=a=b",
        "--workspace", "dev", "--workspace-id", "ws-1", "--transition", "stop",
        "--build-id", "b-1", "--owner-id", "u-1", "--owner-name", "alice",
        "--group", "devs", "--group", "ops", "--state-file", str(tmp_path / "state.tfstate"),
        "--log-level", "debug", "--priority", "7", "--user-id", "u-2", "--user-name", "bob",
    )  # fmt: skip
    assert build["type"] == "JOB_TYPE_WORKSPACE_BUILD"
    assert (build["organization"], build["priority"]) == ("acme", 7)
    assert build["tags"] == {"os": "linux", "scope": "organization", "owner": ""}
    assert build["initiator"] == {"userId": "u-2", "userName": "bob"}

    dry_run = await cli.json(
        "jobs", "create", "--type", "dry-run", "--file", imported["fileHash"],
        "--param", "cpu=4", "--workspace", "preview",
    )  # fmt: skip
    assert dry_run["type"] == "JOB_TYPE_TEMPLATE_DRY_RUN"
    assert dry_run["templateDryRun"]["richParameterValues"] == [{"name": "cpu", "value": "4"}]
    assert dry_run["templateDryRun"]["metadata"]["workspaceName"] == "preview"

    # The daemon gets every value the build was created with.
    daemon = TestDaemon(server, "d1", organization="acme", tags={"os": "linux"})
    acquired = (await (await daemon.acquire(nursery)).wait()).workspace_build
    assert acquired.workspace_build_id == "b-1"
    assert (acquired.workspace_name, acquired.state, acquired.log_level) == (
        "dev",
        b"\x00state",
        "debug",
    )
    assert [(p.name, p.value) for p in acquired.rich_parameter_values] == [
        ("cpu", "2"),
        ("disk", "a=b"),
    ]
    assert [(v.name, v.value) for v in acquired.variable_values] == [("region", "us")]
    metadata = acquired.metadata
    assert metadata.workspace_transition == sdk.STOP
    assert (metadata.workspace_name, metadata.workspace_id) == ("dev", "ws-1")
    assert (metadata.workspace_owner_id, metadata.workspace_owner) == ("u-1", "alice")
    assert list(metadata.workspace_owner_groups) == ["devs", "ops"]


async def test_create_prints_a_readable_job(cli: Cli, template: Path) -> None:
    shown = (await cli("jobs", "create", "--type", "build", "--archive", str(template))).stdout
    fields = dict(line.split(None, 1) for line in shown.splitlines() if not line[0].isspace())
    assert fields["type"] == "build" and fields["status"] == "pending"
    assert fields["queue"] == "1 of 1"
    assert fields["provisioner"] == "echo" and fields["organization"] == "default"
    assert fields["workspace"].endswith("(start)")
    assert "no daemon is connected" in shown  # the pending reason


async def test_list_as_table_and_json(cli: Cli, template: Path) -> None:
    assert (await cli("jobs", "list")).stdout == "No jobs.\n"
    file_hash = await upload_hash(cli, template)
    created = [
        await cli.json("jobs", "create", "--type", kind, "--file", file_hash, "--tag", tag)
        for kind, tag in (("import", "team=a"), ("build", "team=b"), ("dry-run", "team=a"))
    ]
    ids = [job["id"] for job in created]

    table = (await cli("jobs", "list")).stdout.splitlines()
    assert table[0].split() == [
        "ID", "TYPE", "STATUS", "PROVISIONER", "ORGANIZATION", "CREATED", "QUEUE",
    ]  # fmt: skip
    assert [line.split()[:3] for line in table[2:]] == [
        [ids[2], "dry-run", "pending"],
        [ids[1], "build", "pending"],
        [ids[0], "import", "pending"],
    ]

    listing = await cli.json("jobs", "list")
    assert [job["id"] for job in listing["jobs"]] == ids[::-1]
    assert listing["nextPageToken"] == ""

    first = await cli("jobs", "list", "--limit", "2")
    assert len(first.stdout.splitlines()) == 4
    assert "--page-token" in first.stderr
    page = await cli.json("jobs", "list", "--limit", "2")
    rest = await cli.json("jobs", "list", "--limit", "2", "--page-token", page["nextPageToken"])
    assert [job["id"] for job in rest["jobs"]] == [ids[0]]
    everything = await cli.json("jobs", "list", "--limit", "1", "--all")
    assert [job["id"] for job in everything["jobs"]] == ids[::-1]

    team_a = await cli.json("jobs", "list", "--tag", "team=a")
    assert [job["id"] for job in team_a["jobs"]] == [ids[2], ids[0]]
    await cli("jobs", "cancel", ids[1])
    canceled = await cli.json("jobs", "list", "--status", "canceled")
    assert [job["id"] for job in canceled["jobs"]] == [ids[1]]
    assert (await cli.json("jobs", "list", "--provisioner", "terraform"))["jobs"] == []

    for position, kind in enumerate(("import", "build", "dry-run")):
        typed = await cli.json("jobs", "list", "--type", kind)
        assert [job["id"] for job in typed["jobs"]] == [ids[position]], kind
    builds = (await cli("jobs", "list", "--type", "build", "--status", "canceled")).stdout
    assert [line.split()[:3] for line in builds.splitlines()[2:]] == [[ids[1], "build", "canceled"]]
    assert (await cli("jobs", "list", "--type", "dry-run", "--status", "canceled")).stdout == (
        "No jobs.\n"
    )


async def test_get_and_cancel(cli: Cli, template: Path) -> None:
    job = await cli.json("jobs", "create", "--type", "import", "--archive", str(template))
    got = await cli.json("jobs", "get", job["id"])
    assert (got["id"], got["queuePosition"], got["queueSize"]) == (job["id"], 1, 1)
    assert "no daemon is connected" in got["pendingReason"]
    shown = (await cli("jobs", "get", job["id"])).stdout
    assert "pending reason" in shown and "queue           1 of 1" in shown

    canceled = (await cli("jobs", "cancel", job["id"])).stdout
    assert "status        canceled" in canceled and "completed" in canceled
    again = await cli("jobs", "cancel", job["id"], expect=1)
    assert again.stderr.startswith("provd: failed_precondition: ")
    assert "already canceled" in again.stderr
    assert (await cli.json("jobs", "get", job["id"]))["status"] == "JOB_STATUS_CANCELED"

    missing = await cli("jobs", "get", "00000000-0000-0000-0000-000000000000", expect=1)
    assert missing.stderr.startswith("provd: not_found: ")
    malformed = await cli("jobs", "get", "nope", expect=1)
    assert malformed.stderr == "provd: invalid_argument: id: 'nope' is not a job id (a UUID)\n"


def daemon_log(output: str, stage: str = "Plan", level: int = sdk.INFO) -> pd.Log:
    return pd.Log(source=pd.PROVISIONER, level=level, stage=stage, output=output)  # type: ignore[arg-type]


async def test_logs_of_a_job_that_ran(
    cli: Cli, server: Server, nursery: trio.Nursery, template: Path
) -> None:
    job = await cli.json("jobs", "create", "--type", "import", "--archive", str(template))
    daemon = TestDaemon(server, "d1")
    assert (await (await daemon.acquire(nursery)).wait()).job_id == job["id"]
    await daemon.update(
        job["id"], logs=[daemon_log("planning"), daemon_log("careful", "Apply", sdk.WARN)]
    )

    # While it runs: the lines so far, exit 0.
    shown = (await cli("jobs", "logs", job["id"])).stdout.splitlines()
    assert shown[-2].endswith(" INFO  [Plan] planning")
    assert shown[-1].endswith(" WARN  [Apply] careful")
    running = await cli("jobs", "get", job["id"])
    assert "status        running" in running.stdout and "worker" in running.stdout

    lines = [
        json.loads(line)
        for line in (await cli("jobs", "logs", job["id"], "--json")).stdout.splitlines()
    ]
    assert [(line["stage"], line["output"]) for line in lines[-2:]] == [
        ("Plan", "planning"),
        ("Apply", "careful"),
    ]
    after = await cli("jobs", "logs", job["id"], "--after", lines[-2]["id"])
    assert after.stdout.splitlines() == shown[-1:]

    await daemon.complete(job["id"])
    followed = await cli("jobs", "logs", job["id"], "--follow")
    assert followed.stdout.splitlines() == shown
    assert followed.stderr == f"job {job['id']} succeeded\n"
    got = (await cli("jobs", "get", job["id"])).stdout
    assert "status        succeeded" in got and "result" in got


async def test_logs_follow_until_the_job_fails(
    cli: Cli, server: Server, nursery: trio.Nursery, template: Path
) -> None:
    job = await cli.json("jobs", "create", "--type", "import", "--archive", str(template))
    follower = Background(nursery, cli("jobs", "logs", "--follow", job["id"], expect=1))
    daemon = TestDaemon(server, "d1")
    await (await daemon.acquire(nursery)).wait()
    await daemon.update(job["id"], logs=[daemon_log("about to fail")])
    await daemon.fail(job["id"], "boom", error_code="E42")
    result = await follower.result()
    assert "[Plan] about to fail" in result.stdout
    assert result.stderr == f"provd: job {job['id']} failed: boom (E42)\n"


async def test_create_follow_until_the_job_succeeds(
    cli: Cli, server: Server, nursery: trio.Nursery, template: Path
) -> None:
    daemon = TestDaemon(server, "d1")
    acquisition = await daemon.acquire(nursery)
    creator = Background(
        nursery,
        cli(
            "jobs", "create", "--type", "dry-run", "--archive", str(template), "--follow", "--json"
        ),
    )
    job_id = (await acquisition.wait()).job_id
    await daemon.update(job_id, logs=[daemon_log("dry run")])
    await daemon.complete(job_id, template_dry_run=pd.CompletedJob.TemplateDryRun())
    result = await creator.result()
    first, *logs = (json.loads(line) for line in result.stdout.splitlines())
    assert first["id"] == job_id and first["type"] == "JOB_TYPE_TEMPLATE_DRY_RUN"
    assert logs[-1]["output"] == "dry run"
    assert result.stderr == ""


class Background:
    """A CLI run in the background of a test; `result` waits for it."""

    def __init__(self, nursery: trio.Nursery, run: Any) -> None:
        self._done = trio.Event()
        self._result: Result | None = None
        nursery.start_soon(self._run, run)

    async def _run(self, run: Any) -> None:
        self._result = await run
        self._done.set()

    async def result(self) -> Result:
        with trio.fail_after(CLI_SECONDS):
            await self._done.wait()
        assert self._result is not None
        return self._result


async def test_jobs_queues(cli: Cli, server: Server) -> None:
    assert (await cli("jobs", "queues")).stdout == "No jobs are pending.\n"
    job = await Jobs(server).create(provisioner="terraform", tags={"os": "linux"})
    (queue,) = (await cli.json("jobs", "queues"))["queues"]
    assert (queue["provisioner"], queue["pending"], queue["oldestCreatedAt"]) == (
        "terraform",
        1,
        job.created_at.ToJsonString(),
    )
    assert queue["unroutableReason"].startswith("no daemon is connected")
    lines = (await cli("jobs", "queues")).stdout.splitlines()
    assert lines[0].split() == [
        "ORGANIZATION",
        "PROVISIONER",
        "TAGS",
        "PENDING",
        "OLDEST",
        "DAEMONS",
    ]
    assert lines[2].split()[:3] == ["default", "terraform", "os=linux,"]
    assert lines[2].split()[-1] == "none"
    assert lines[4] == "No connected daemon can take:"
    assert lines[5].startswith(
        "- terraform jobs of default with tags os=linux, owner=, scope=organization:"
        " no daemon is connected in organization 'default'"
    )
    assert (await cli("jobs", "queues", "--organization", "acme")).stdout == (
        "No jobs are pending.\n"
    )


# -- daemons, quota --------------------------------------------------------------------


async def test_daemons_list(cli: Cli, server: Server, nursery: trio.Nursery) -> None:
    assert (await cli("daemons", "list")).stdout == "No daemons have connected.\n"
    await TestDaemon(server, "laptop-1", tags={"os": "linux"}).acquire(nursery)
    with trio.fail_after(10):
        while not (listing := await cli.json("daemons", "list"))["daemons"]:
            await trio.sleep(0.01)
    (daemon,) = listing["daemons"]
    assert (daemon["name"], daemon["provisioners"], daemon["connected"]) == (
        "laptop-1",
        ["echo"],
        True,
    )
    table = (await cli("daemons", "list")).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "ORGANIZATION", "PROVISIONERS"]
    row = table[2].split()
    assert row[:4] == ["laptop-1", "default", "echo", "os=linux,"]
    assert "waiting" in row


async def test_quota_set_list_get_delete(
    cli: Cli, server: Server, nursery: trio.Nursery, template: Path
) -> None:
    assert "no quota" in (await cli("quota", "list")).stdout
    assert (await cli.json("quota", "get", "--user", "u1"))["budget"] == -1

    set_user = await cli("quota", "set", "--user", "u1", "10")
    assert set_user.stdout.splitlines()[2].split() == ["default", "u1", "10"]
    assert await cli.json("quota", "set", "--group", "devs", "5") == {
        "organization": "default",
        "group": "devs",
        "allowance": 5,
    }
    listing = await cli.json("quota", "list")
    assert sorted(
        (a.get("userId", ""), a.get("group", ""), a["allowance"]) for a in listing["allowances"]
    ) == [("", "devs", 5), ("u1", "", 10)]
    assert len((await cli("quota", "list")).stdout.splitlines()) == 4

    # A build created through the CLI counts towards its owner's consumption.
    job = await cli.json(
        "jobs", "create", "--type", "build", "--archive", str(template),
        "--workspace-id", "ws-1", "--owner-id", "u1", "--group", "devs",
    )  # fmt: skip
    daemon = TestDaemon(server, "builder")
    await (await daemon.acquire(nursery)).wait()
    decision = await call(
        daemon.client.commit_quota, pd.CommitQuotaRequest(job_id=job["id"], daily_cost=3)
    )
    assert decision.ok
    await daemon.complete(job["id"], workspace_build=pd.CompletedJob.WorkspaceBuild())

    usage = await cli.json("quota", "get", "--user", "u1", "--group", "devs")
    assert usage == {"creditsConsumed": 3, "budget": 15}
    shown = (await cli("quota", "get", "--user", "u1", "--group", "devs")).stdout
    assert shown.split() == ["user", "u1", "consumed", "3", "budget", "15", "remaining", "12"]

    assert (await cli("quota", "delete", "--user", "u1")).stdout == (
        "Deleted the allowance of user u1.\n"
    )
    gone = await cli("quota", "delete", "--user", "u1", expect=1)
    assert gone.stderr == "provd: user u1 has no allowance in organization default\n"
    assert await cli.json("quota", "delete", "--user", "u1", "--ignore") == {"deleted": False}
    assert await cli.json("quota", "delete", "--group", "devs") == {"deleted": True}
    assert (await cli.json("quota", "list"))["allowances"] == []


# -- finding the server and the token --------------------------------------------------


async def test_token_from_the_admin_token_file(cli: Cli, server: Server, tmp_path: Path) -> None:
    missing = await cli("jobs", "list", "--db", str(server.db_path), token=None, expect=1)
    token_file = secret_path(server.db_path.resolve(), ADMIN_TOKEN_FILE)
    assert missing.stderr.startswith(f"provd: no admin token: {token_file} does not exist")
    assert "--token" in missing.stderr and "PROVD_ADMIN_TOKEN" in missing.stderr

    token_file.write_text(ADMIN_TOKEN + "\n")
    await cli("jobs", "list", "--db", str(server.db_path), token=None)
    await cli("jobs", "list", token=None, env={"PROVD_DB": str(server.db_path)})

    # By default, beside $XDG_DATA_HOME/provd/provd.db.
    default_file = cli.home / "provd" / ADMIN_TOKEN_FILE
    default_file.parent.mkdir(parents=True)
    default_file.write_text(ADMIN_TOKEN)
    await cli("daemons", "list", token=None)

    # --token and PROVD_ADMIN_TOKEN come first.
    default_file.write_text("stale-token")
    wrong = await cli("daemons", "list", token=None, expect=1)
    assert wrong.stderr == (
        f"provd: unauthenticated: invalid admin token (the admin token came from {default_file})\n"
    )
    await cli("daemons", "list", "--token", ADMIN_TOKEN, token=None)


async def test_wrong_token_is_a_clear_failure(cli: Cli) -> None:
    result = await cli("jobs", "list", token="not-the-token", expect=1)
    assert result.stderr == (
        "provd: unauthenticated: invalid admin token (the admin token came from"
        " PROVD_ADMIN_TOKEN)\n"
    )
    result = await cli("quota", "list", "--token", "nope", expect=1)
    assert result.stderr.endswith("(the admin token came from --token)\n")


async def test_server_down_names_the_address(cli: Cli) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    for command in (["jobs", "list"], ["daemons", "list"], ["jobs", "logs", "--follow", "x"]):
        result = await cli(*command, url=url, expect=1)
        assert result.stderr == (
            f"provd: cannot reach provd at {url} (connection refused); is 'provd serve' running?\n"
        )
        assert result.stdout == ""


@pytest.mark.slow
async def test_cli_as_a_subprocess(server: Server, tmp_path: Path, template: Path) -> None:
    """`python -m provd`, finding the token beside PROVD_DB, as a user would run it."""
    secret_path(server.db_path.resolve(), ADMIN_TOKEN_FILE).write_text(ADMIN_TOKEN)
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env.update(PROVD_URL=server.url, PROVD_DB=str(server.db_path), XDG_DATA_HOME=str(tmp_path))

    async def provd(*args: str) -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(CLI_SECONDS):
            return await trio.run_process(
                [sys.executable, "-m", "provd", *args],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

    uploaded = await provd("files", "upload", str(template), "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    file_hash = json.loads(uploaded.stdout)["hash"]
    created = await provd("jobs", "create", "--type", "import", "--file", file_hash, "--json")
    assert created.returncode == 0, created.stderr
    job_id = json.loads(created.stdout)["id"]
    listed = await provd("jobs", "list")
    assert listed.returncode == 0 and job_id in listed.stdout.decode()
    logs = await provd("jobs", "logs", job_id)
    assert logs.returncode == 0 and b"[Queued]" in logs.stdout

    failed = await provd("jobs", "get", job_id, "--token", "wrong")
    assert (failed.returncode, failed.stdout) == (1, b"")
    assert failed.stderr.startswith(b"provd: unauthenticated: ")
    usage = await provd("jobs", "get")
    assert usage.returncode == 2 and b"Usage: provd jobs get" in usage.stderr


@pytest.mark.slow
async def test_ctrl_c_stops_a_follow_at_once(cli: Cli, server: Server, template: Path) -> None:
    """`provd jobs logs --follow` of a job no daemon takes waits in a socket read; SIGINT
    interrupts it there (the stream is read in the main thread), and click says
    'Aborted!' with exit status 1."""
    job = await cli.json("jobs", "create", "--type", "import", "--archive", str(template))
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env.update(PROVD_URL=server.url, PROVD_ADMIN_TOKEN=ADMIN_TOKEN)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "provd", "jobs", "logs", "--follow", job["id"]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        printed = b""
        with trio.fail_after(CLI_SECONDS):
            while b"[Queued]" not in printed:  # following: the lines so far are out
                chunk = await process.stdout.receive_some()
                assert chunk, "provd exited before printing the job's first line"
                printed += chunk
        await trio.sleep(0.2)  # now blocked waiting for more
        process.send_signal(signal.SIGINT)
        with trio.fail_after(5):
            assert await process.wait() == 1
        assert (await process.stderr.receive_some()).decode().strip() == "Aborted!"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_tables_are_what_tabulate_printed() -> None:
    """`format_table` replaced tabulate (its import cost the CLI's start-up): for the
    CLI's tables, strings with disable_numparse, it prints what tabulate's "simple"
    (with headers) and "plain" formats printed, padded, empty and multi-line cells
    included."""
    tabulate = pytest.importorskip("tabulate").tabulate
    pieces = ["a", "bc", " ", "x y", "\n", "\r\n", "\r", "\t", "é", "", "True", "12", "  pad  "]
    generator = random.Random(1)
    for index in range(2000):
        columns = generator.randint(1, 5)
        rows = [
            ["".join(generator.choices(pieces, k=generator.randint(0, 4))) for _ in range(columns)]
            for _ in range(generator.randint(1, 4))
        ]
        headers = [generator.choice(["ID", "NAME", "LAST SEEN"]) for _ in range(columns)]
        headers = headers if index % 2 else []
        expected = tabulate(
            rows, headers=headers, tablefmt="simple" if headers else "plain", disable_numparse=True
        )
        assert format_table(rows, headers) == expected, (rows, headers)


@pytest.mark.parametrize("db", [None, "postgresql://provd:secret@db.example/provd"])
def test_credentials_without_a_database_file_come_from_the_data_directory(
    db: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no --db, or a PostgreSQL URL as --db (PROVD_DB), the admin commands and the
    daemon read the credentials that 'provd serve' keeps in the default data directory."""
    from provd.client.cli.context import resolve_connection
    from provd.client.daemon.command import _resolve_psk

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    data = tmp_path / "provd"
    data.mkdir()
    (data / "admin-token").write_text("the-admin-token\n")
    (data / "daemon-psk").write_text("the-daemon-psk\n")
    assert resolve_connection("http://127.0.0.1:1", None, db).token == "the-admin-token"
    assert _resolve_psk(None, db) == "the-daemon-psk"
