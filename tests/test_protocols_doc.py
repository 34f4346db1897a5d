"""docs/protocols.md, run as written: each group of its examples against a real
`provd serve` and `provd daemon`, with the tools the examples name.

In the doc, `<!-- run: GROUP/NAME -->` before an ```sh block marks a command to run, and
`<!-- file: NAME -->` before a block marks a file the commands use (written as is). Per
group, one bash (`set -euo pipefail`) runs the `setup` block and then the group's
blocks in order, from a directory that holds links to provd's `proto/` and `examples/`
(and, for Node, `node_modules`), with HOME pointing at a fresh home whose default data
directory the server uses, so `~/.local/share/provd/admin-token` is its token. The one
change made to the text: the server's address replaces `127.0.0.1:8420`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.processes import provd_env, start_daemon, start_server
from tests.thirdparty import CLIENTS, ROOT, npm_tools, tool_dirs

pytestmark = pytest.mark.slow

DOC = ROOT / "docs" / "protocols.md"
BLOCK = re.compile(r"<!-- (run|file): (\S+) -->\n```(\w+)\n(.*?)```", re.DOTALL)
ADDRESS = "127.0.0.1:8420"
MARK = "=== doc block "


def doc_blocks() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(files by name, [(run block name, commands)]) in the doc's order."""
    files: dict[str, str] = {}
    runs: list[tuple[str, str]] = []
    for kind, name, _language, body in BLOCK.findall(DOC.read_text()):
        if kind == "file":
            files[name] = body
        else:
            runs.append((name, body))
    return files, runs


def check_curl(out: dict[str, str]) -> None:
    created = json.loads(out["curl/create"])
    assert created["type"] == "JOB_TYPE_TEMPLATE_IMPORT" and created["provisioner"] == "echo"
    listed = json.loads(out["curl/get"])
    assert created["id"] in [job["id"] for job in listed["jobs"]]
    assert json.loads(out["curl/error"]) == {
        "code": "unauthenticated",
        "message": "invalid admin token",
    }


def check_buf(out: dict[str, str]) -> None:
    for service in (
        "provisionerd.ProvisionerDaemon",
        "provd.v1.JobService",
        "provd.v1.DaemonService",
        "provd.v1.QuotaService",
        "provd.v1.KeyService",
    ):
        assert service in out["buf/list"].splitlines()
    # Three ListJobs answers; nothing was created yet.
    assert out["buf/list"].count("{}") == 3
    logs = [json.loads(line) for line in out["buf/create-and-follow"].splitlines()]
    assert {"stage": "Saying hello", "output": "Hello from the echo provisioner!"} in logs
    assert logs[-1]["output"] == "three" or any(log["output"] == "three" for log in logs)
    assert '"code": "not_found"' in out["buf/daemon"]
    assert out["buf/daemon"].rstrip().endswith("exit status 40")


def check_grpcio(out: dict[str, str]) -> None:
    assert out["grpcio/generate"] == ""
    assert out["grpcio/run"].startswith("INVALID_ARGUMENT id:"), out["grpcio/run"]


def check_connect(out: dict[str, str]) -> None:
    follow = out["connect/follow"].splitlines()
    assert follow[0].startswith("created ") and follow[0].endswith("jobs listed")
    assert "[Saying hello] Hello from the echo provisioner!" in follow
    assert "[Counting] three" in follow
    assert follow[-1] == "status: SUCCEEDED"
    assert json.loads(out["connect/browser"]) == []  # the daemon took the job


GROUPS = {
    "curl": (("curl", "jq"), False, check_curl),
    "buf": (("jq",), True, check_buf),
    "grpcio": ((), False, check_grpcio),
    "connect": ((), True, check_connect),
}


def test_doc_has_the_tested_blocks() -> None:
    files, runs = doc_blocks()
    names = [name for name, _ in runs]
    assert names[0] == "setup"
    assert {name.split("/")[0] for name in names[1:]} == set(GROUPS)
    assert set(files) == {"list_jobs.py", "buf.gen.yaml", "follow.mjs", "browser.mjs"}
    # The generation config is the one tests/thirdparty.py uses.
    assert files["buf.gen.yaml"] == (CLIENTS / "buf.gen.yaml").read_text()
    # The doc's npm install names every package the tests install.
    text = DOC.read_text()
    installs = " ".join(re.findall(r"^npm install .*$", text, flags=re.MULTILINE))
    manifest = json.loads((CLIENTS / "package.json").read_text())
    for package in manifest["dependencies"]:
        assert package in installs.split(), package


@pytest.mark.parametrize("group", list(GROUPS))
async def test_doc_examples(group: str, tmp_path: Path, nursery: trio.Nursery) -> None:
    commands, needs_npm, check = GROUPS[group]
    for command in commands:
        if shutil.which(command) is None:
            pytest.skip(f"the {command} command is not installed")
    path = [str(Path(sys.executable).parent)]
    work = tmp_path / "work"
    work.mkdir()
    if needs_npm:
        modules = await trio.to_thread.run_sync(npm_tools)
        path[:0] = map(str, tool_dirs())
        (work / "node_modules").symlink_to(modules, target_is_directory=True)
        (work / "package.json").write_text('{"type": "module"}\n')
    for name in ("proto", "examples"):
        (work / name).symlink_to(ROOT / name, target_is_directory=True)

    home = tmp_path / "home"
    env = {
        k: v
        for k, v in provd_env().items()
        if k not in ("PROVD_ADMIN_TOKEN", "PROVD_DAEMON_PSK", "XDG_DATA_HOME", "PROVD_DB")
    }
    env["HOME"] = str(home)
    server = await start_server(nursery, home / ".local/share/provd/provd.db", env=env)
    address = server.url.removeprefix("http://")
    env["PROVD_URL"] = server.url
    env["PATH"] = os.pathsep.join([*path, env.get("PATH", "")])
    await start_daemon(nursery, server.url, env=env)

    files, runs = doc_blocks()
    for name, body in files.items():
        (work / name).write_text(body.replace(ADDRESS, address))
    script = ["set -euo pipefail", "exec 2>&1"]
    for name, body in runs:
        if name == "setup" or name.startswith(f"{group}/"):
            script += [f"echo '{MARK}{name}'", body.replace(ADDRESS, address)]
    with trio.fail_after(180):
        result = await trio.run_process(
            ["bash", "-c", "\n".join(script)],
            cwd=work,
            env=env,
            capture_stdout=True,
            stderr=subprocess.STDOUT,
            check=False,
        )
    output = result.stdout.decode()
    assert result.returncode == 0, output
    outputs: dict[str, str] = {}
    for chunk in output.split(MARK)[1:]:
        name, _, text = chunk.partition("\n")
        outputs[name] = text.strip()
    check(outputs)
    # The daemon is killed with the test's nursery: its own exit is tested elsewhere.
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0
