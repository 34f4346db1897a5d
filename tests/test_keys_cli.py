"""`provd keys …`, `provd daemon --key-file` / PROVD_DAEMON_KEY and `provd serve
--daemon-psk off`, in-process against a real server (the same commands as
subprocesses, end to end, are in tests/test_keys_processes.py)."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from provd.cli import main
from provd.cli.serve import daemon_psk
from provd.client.daemon.command import _resolve_key
from provd.client.daemon.runner import DaemonSettings, run_daemon
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.secrets import DAEMON_PSK_FILE, secret_path
from tests.cli_runner import Cli
from tests.conftest import Server
from tests.daemon_clients import Jobs
from tests.reference_daemon import FAST


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> Cli:
    return Cli(server.url, tmp_path / "xdg")


async def test_create_list_and_delete(cli: Cli, tmp_path: Path) -> None:
    shown = await cli(
        "keys", "create", "ci-linux", "--org", "acme", "--tag", "os=linux", "--provisioner", "echo"
    )
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["name", "ci-linux"]
    assert ["organization", "acme"] in [line.split() for line in lines]
    (secret_line,) = [line for line in lines if line.startswith("secret")]
    secret = secret_line.split()[1]
    assert secret.startswith("provd_key_") and len(secret_line.split()) == 2
    assert "Store the secret now" in shown.stderr

    created = await cli.json("keys", "create", "alice", "--owner", "alice")
    assert created["secret"].startswith(f"provd_key_{created['key']['id']}_")
    assert created["key"]["tags"] == {"scope": "user", "owner": "alice"}

    table = (await cli("keys", "list")).stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "ORGANIZATION", "OWNER", "PROVISIONERS"]
    assert [row.split()[0] for row in table[2:]] == ["ci-linux", "alice"]  # acme < default
    listed = await cli.json("keys", "list", "--organization", "acme")
    (only,) = listed["keys"]
    assert (only["name"], only["provisioners"], only["daemonsConnected"]) == (
        "ci-linux",
        ["echo"],
        0,
    )
    assert "secret" not in only and "secretSha256" not in only

    deleted = await cli("keys", "delete", "ci-linux")
    assert deleted.stdout.startswith("Deleted daemon key ci-linux (")
    missing = await cli("keys", "delete", "ci-linux", expect=1)
    assert "provd: there is no daemon key named ci-linux" in missing.stderr
    await cli("keys", "delete", "ci-linux", "--ignore")
    taken = await cli("keys", "create", "alice", expect=1)
    assert "provd: already_exists: name: a daemon key named 'alice'" in taken.stderr


async def test_the_commands_have_help_and_check_their_usage(cli: Cli) -> None:
    for command in ("create", "list", "delete"):
        shown = (await cli("keys", command, "--help")).stdout
        assert f"Usage: provd keys {command}" in shown and "--json" in shown
    assert "--tag" in (await cli("keys", "create", "--help")).stdout
    assert "Error:" in (await cli("keys", "create", "--tag", "no-equals", "x", expect=2)).stderr
    assert "Missing argument 'NAME'" in (await cli("keys", "delete", expect=2)).stderr


async def test_the_daemon_runs_jobs_with_a_key(cli: Cli, server: Server, tmp_path: Path) -> None:
    """The reference daemon with only a key (no organization, no tags): it takes the
    job of the key's organization and tags and runs it to the end."""
    secret = (await cli.json("keys", "create", "ci", "--org", "acme", "--tag", "os=linux"))[
        "secret"
    ]
    key_file = tmp_path / "daemon.key"
    key_file.write_text(secret + "\n")
    settings = DaemonSettings(
        url=server.url, psk="", key=_resolve_key(key_file), name="ci-1", reporting=FAST
    )
    jobs = Jobs(server)
    job = await jobs.create(organization="acme", tags={"os": "linux"})
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(run_daemon, settings, stop))
        with trio.fail_after(10):
            while (await jobs.get(job.id)).status != pb.JOB_STATUS_SUCCEEDED:
                await trio.sleep(0.02)
        stop.set()
    listing = await cli.json("daemons", "list")
    (daemon,) = listing["daemons"]
    assert (daemon["name"], daemon["keyName"], daemon["organization"]) == ("ci-1", "ci", "acme")
    assert (await cli("daemons", "list")).stdout.splitlines()[0].split()[-1] == "KEY"


def test_the_key_comes_from_the_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROVD_DAEMON_KEY", raising=False)
    assert _resolve_key(None) == ""
    monkeypatch.setenv("PROVD_DAEMON_KEY", " provd_key_abc_secret\n")
    assert _resolve_key(None) == "provd_key_abc_secret"
    key_file = tmp_path / "key"
    key_file.write_text("provd_key_def_other\n")
    assert _resolve_key(key_file) == "provd_key_def_other"  # the file wins


@pytest.mark.parametrize(
    ("content", "env", "message"),
    [
        (None, "", "cannot read"),
        ("", "", "is empty"),
        ("a-psk-not-a-key", "", "does not hold a daemon key"),
        ("skip", "not-a-key", "PROVD_DAEMON_KEY does not hold a daemon key"),
    ],
)
def test_a_bad_key_is_bad_usage(
    tmp_path: Path, content: str | None, env: str, message: str
) -> None:
    key_file = tmp_path / "key"
    args = ["daemon", "--url", "http://127.0.0.1:9"]
    if content != "skip":
        args += ["--key-file", str(key_file)]
        if content is not None:
            key_file.write_text(content)
    environment = {"PROVD_DAEMON_KEY": env or None, "PROVD_DAEMON_PSK": None}
    result = CliRunner().invoke(main, args, env=environment, prog_name="provd")
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_the_psk_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--daemon-psk off` or PROVD_DAEMON_PSK=off: no PSK, and no daemon-psk file is
    made; otherwise PROVD_DAEMON_PSK, else the file (made once)."""
    db = tmp_path / "provd.db"
    psk_file = secret_path(db, DAEMON_PSK_FILE)
    monkeypatch.delenv("PROVD_DAEMON_PSK", raising=False)
    assert daemon_psk(db, off=True) == "" and not psk_file.exists()
    made = daemon_psk(db, off=False)
    assert made and psk_file.read_text().strip() == made
    assert daemon_psk(db, off=False) == made
    monkeypatch.setenv("PROVD_DAEMON_PSK", "from-env")
    assert daemon_psk(db, off=False) == "from-env"
    assert os.environ["PROVD_DAEMON_PSK"] == "from-env"


def test_serve_takes_daemon_psk_off_or_on_only() -> None:
    result = CliRunner().invoke(main, ["serve", "--daemon-psk", "maybe"], prog_name="provd")
    assert result.exit_code == 2 and "'maybe' is not one of 'on', 'off'" in result.output
    shown = CliRunner().invoke(main, ["serve", "--help"], prog_name="provd").output
    assert "--daemon-psk [on|off]" in shown
