"""`provd examples list/extract` and `--archive example:NAME`: the echo templates that
come with provd (provd/examples/), so that the executable alone is enough to try it.

The commands run as real subprocesses from a directory with no source tree in it, the
way someone who downloaded only the executable runs them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
import trio

from provd.archive import pack_directory
from provd.cli.examples import bundled_examples, examples_root
from tests.processes import provd_env, start_daemon, start_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "provd" / "examples"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "provd-echo.json").is_file())


def provd(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m provd ARGS` in `cwd`, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "provd", *args],
        cwd=cwd,
        env=env or provd_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_examples_are_the_package_data() -> None:
    """One copy: `examples` at the top of the repository is a link to provd/examples,
    and pyproject.toml's package-data covers every file there."""
    assert (ROOT / "examples").resolve() == EXAMPLES
    assert examples_root() == EXAMPLES
    assert (
        list(bundled_examples())
        == NAMES
        == [
            "broken",
            "hello",
            "needs-variables",
            "slow",
            "workspace",
        ]
    )
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["provd"]
    for name in files_under(EXAMPLES):
        assert any(fnmatch(f"examples/{name}", pattern) for pattern in patterns), name


def test_list_shows_every_example(tmp_path: Path) -> None:
    result = provd("examples", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "description"]
    assert [line.split()[0] for line in lines[2:]] == NAMES
    for line, name in zip(lines[2:], NAMES, strict=True):
        script = json.loads((EXAMPLES / name / "provd-echo.json").read_text())
        assert line.split(None, 1)[1] == script["description"].removeprefix(f"{name}: ")
    as_json = json.loads(provd("examples", "list", "--json", cwd=tmp_path).stdout)
    assert [entry["name"] for entry in as_json] == NAMES
    assert all(entry["description"] for entry in as_json)


def test_extract_one_example(tmp_path: Path) -> None:
    result = provd("examples", "extract", "hello", "my-template", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "my-template") == files_under(EXAMPLES / "hello")
    assert pack_directory(tmp_path / "my-template") == pack_directory(EXAMPLES / "hello")


def test_extract_every_example(tmp_path: Path) -> None:
    result = provd("examples", "extract", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "out") == files_under(EXAMPLES)
    assert sorted(result.stdout.splitlines()) == sorted(
        str(Path("out") / name) for name in files_under(EXAMPLES)
    )


def test_extract_leaves_existing_files_alone(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    (target / "provd-echo.json").write_text("{}")
    result = provd("examples", "extract", "slow", str(target), cwd=tmp_path)
    assert result.returncode == 1
    assert "exists already" in result.stderr
    assert (target / "provd-echo.json").read_text() == "{}"
    assert not (target / "README.md").exists()
    forced = provd("examples", "extract", "slow", str(target), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert files_under(target) == files_under(EXAMPLES / "slow")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["examples", "extract", "nope", "dir"], id="extract"),
        pytest.param(
            ["jobs", "create", "--type", "import", "--archive", "example:nope"], id="jobs"
        ),
        pytest.param(["files", "upload", "example:nope"], id="files"),
    ],
)
def test_an_unknown_example_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    result = provd(*args, cwd=tmp_path, env=provd_env(PROVD_URL="http://127.0.0.1:1"))
    assert result.returncode == 2
    assert "no bundled example 'nope' (there are: broken, hello," in result.stderr
    assert not (tmp_path / "dir").exists()


@pytest.mark.slow
async def test_archive_example_creates_a_job_a_daemon_completes(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = await start_server(nursery, tmp_path / "provd.db")
    daemon = await start_daemon(nursery, server.url)
    env = provd_env(PROVD_URL=server.url)
    work = tmp_path / "elsewhere"  # no examples/ here
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return provd(*args, cwd=work, env=env)

    created = await trio.to_thread.run_sync(
        run, "jobs", "create", "--type", "import", "--archive", "example:hello", "--follow"
    )
    assert created.returncode == 0, created.stdout + created.stderr
    assert "succeeded" in created.stderr
    assert "Hello from the echo provisioner!" in created.stdout
    # The bundled folder is uploaded as the folder itself would be: the same hash.
    uploaded = await trio.to_thread.run_sync(run, "files", "upload", "example:hello", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    listed = await trio.to_thread.run_sync(run, "jobs", "list", "--json")
    job = json.loads(listed.stdout)["jobs"][0]
    assert job["fileHash"] == json.loads(uploaded.stdout)["hash"]
    assert job["status"] == "JOB_STATUS_SUCCEEDED"
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0
