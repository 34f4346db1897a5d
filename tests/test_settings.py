"""`provd serve`'s settings: flag, environment, TOML file and default, in that order;
`--print-config`; a settings file that cannot be used; the table of
docs/operations.md. The precedence is checked in-process (click's runner, the
command exits before it starts anything) and through a real `provd serve`."""

from __future__ import annotations

import json
import re
import signal
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from provd.cli.serve import serve_command
from provd.cli.settings import (
    committed_table,
    env_name,
    settings_of,
    settings_table,
    toml_key,
)
from tests.processes import START_SECONDS, provd_env, serve_failure, start_server

OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"

# The environment variables whose names do not follow PROVD_<FLAG>: documented ones
# that predate the rule.
ENV_EXCEPTIONS = {
    # A comma-separated list, one variable for every origin.
    "cors-origin": "PROVD_CORS_ORIGINS",
    # PROVD_DAEMON_PSK is the key itself (or "off").
    "daemon-psk": "PROVD_DAEMON_PSK_MODE",
}


@pytest.fixture(autouse=True)
def no_provd_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No PROVD_* from the outside, and a private data directory."""
    import os

    for name in list(os.environ):
        if name.startswith("PROVD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    yield


def _no_server(*args: object, **kwargs: object) -> None:
    raise AssertionError("provd serve went on to start a server")


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    """`provd serve ARGS` in-process, never starting a server (it fails instead)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trio, "run", _no_server)
        return CliRunner().invoke(serve_command, args, env=env)


def print_config(*args: str, env: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Run `provd serve ARGS --print-config` in-process; return each setting's TOML
    value text and its source."""
    result = invoke([*args, "--print-config"], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return parse_print_config(result.stdout)


_ROW = re.compile(r"^(?:# )?([a-z][a-z0-9-]*)(?: = (.*?)| \(not set.*?\))\s+# (.+)$")


def parse_print_config(text: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in text.splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group(1)] = (match.group(2) or "", match.group(3))
    return rows


def refused(args: list[str], env: dict[str, str] | None = None) -> str:
    """Run `provd serve ARGS` in-process; assert exit 2 with one `provd: ` line on
    stderr and nothing started; return the line."""
    result = invoke(args, env=env)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("provd: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# -- every setting -----------------------------------------------------------------------


def test_every_option_is_a_setting_with_an_env_var_and_a_toml_key() -> None:
    keys = [toml_key(option) for option in settings_of(serve_command)]
    for wanted in (
        "hang-timeout",
        "pending-timeout",
        "heartbeat-interval",
        "poll-interval",
        "log-poll-interval",
        "log-budget-mib",
        "payload-max-mib",
        "upload-max-mib",
        "shutdown-grace",
        "max-connections-per-peer",
        "durability",
        "log-format",
        "log-level",
    ):
        assert wanted in keys
    for option in settings_of(serve_command):
        key = toml_key(option)
        expected = ENV_EXCEPTIONS.get(key, "PROVD_" + key.upper().replace("-", "_"))
        assert env_name(option) == expected, key


def test_each_setting_is_read_from_its_env_var() -> None:
    """Every option reads its variable, the ones added by the auto prefix included."""
    env = {
        "PROVD_DURABILITY": "normal",
        "PROVD_UPLOAD_MAX_MIB": "7",
        "PROVD_PAYLOAD_MAX_MIB": "8",
        "PROVD_LOG_BUDGET_MIB": "9",
        "PROVD_SHUTDOWN_GRACE": "3.5",
        "PROVD_CORS_ORIGINS": "https://a.example, https://b.example",
        "PROVD_DAEMON_PSK_MODE": "off",
        "PROVD_LOG_FORMAT": "json",
        "PROVD_LOG_LEVEL": "debug",
    }
    rows = print_config(env=env)
    assert rows["durability"] == ('"normal"', "env PROVD_DURABILITY")
    assert rows["upload-max-mib"] == ("7", "env PROVD_UPLOAD_MAX_MIB")
    assert rows["payload-max-mib"] == ("8", "env PROVD_PAYLOAD_MAX_MIB")
    assert rows["log-budget-mib"] == ("9", "env PROVD_LOG_BUDGET_MIB")
    assert rows["shutdown-grace"] == ("3.5", "env PROVD_SHUTDOWN_GRACE")
    assert rows["cors-origin"] == (
        '["https://a.example", "https://b.example"]',
        "env PROVD_CORS_ORIGINS",
    )
    assert rows["daemon-psk"] == ('"off"', "env PROVD_DAEMON_PSK_MODE")
    assert rows["log-format"] == ('"json"', "env PROVD_LOG_FORMAT")
    assert rows["log-level"] == ('"debug"', "env PROVD_LOG_LEVEL")


# A value other than the default for every setting, as the command line gives it and as
# TOML writes it, and how --print-config shows it. A new option must be added here: the
# test below fails until it is, so no setting can miss its flag, variable or file key.
NON_DEFAULT: dict[str, tuple[str, str, str]] = {
    "listen": ("127.0.0.1:9999", '"127.0.0.1:9999"', '"127.0.0.1:9999"'),
    "db": ("{tmp}/other.db", '"{tmp}/other.db"', '"{tmp}/other.db"'),
    "durability": ("normal", '"normal"', '"normal"'),
    "upload-max-mib": ("7", "7", "7"),
    "payload-max-mib": ("8", "8", "8"),
    "log-budget-mib": ("9", "9", "9"),
    "shutdown-grace": ("3.5", "3.5", "3.5"),
    "tls-cert": ("{tmp}/cert.pem", '"{tmp}/cert.pem"', '"{tmp}/cert.pem"'),
    "tls-key": ("{tmp}/key.pem", '"{tmp}/key.pem"', '"{tmp}/key.pem"'),
    "cors-origin": ("https://a.example", '["https://a.example"]', '["https://a.example"]'),
    "max-connections-per-peer": ("5", "5", "5"),
    "hang-timeout": ("41", "41", "41.0"),
    "pending-timeout": ("off", '"off"', '"off"'),
    "heartbeat-interval": ("4", "4", "4.0"),
    "poll-interval": ("6", "6", "6.0"),
    "log-poll-interval": ("0.5", "0.5", "0.5"),
    "daemon-psk": ("off", '"off"', '"off"'),
    "retain": ("12h", '"12h"', "43200.0"),
    "metrics-listen": ("127.0.0.1:9100", '"127.0.0.1:9100"', '"127.0.0.1:9100"'),
    "workers": ("3", "3", "3"),
    "log-format": ("json", '"json"', '"json"'),
    "log-level": ("debug", '"debug"', '"debug"'),
}


def test_non_default_values_cover_every_setting() -> None:
    assert sorted(NON_DEFAULT) == sorted(toml_key(o) for o in settings_of(serve_command))


@pytest.mark.parametrize("key", sorted(NON_DEFAULT))
def test_each_setting_from_its_flag_its_env_var_and_the_file(tmp_path: Path, key: str) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("not read before the server starts")
    given, in_toml, shown = (text.format(tmp=tmp_path) for text in NON_DEFAULT[key])
    (option,) = [o for o in settings_of(serve_command) if toml_key(o) == key]
    flag = max(option.opts, key=len)
    variable = env_name(option)
    config = write_config(tmp_path, f"{key} = {in_toml}\n")
    assert print_config(flag, given)[key] == (shown, "flag")
    assert print_config(env={variable: given})[key] == (shown, f"env {variable}")
    assert print_config("--config", str(config))[key] == (shown, f"file {config}")
    assert print_config()[key][1] == "default"


# -- precedence ----------------------------------------------------------------------------


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "provd.toml"
    path.write_text(text)
    return path


def test_file_beats_default(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        'hang-timeout = 42\ncors-origin = ["https://a.example"]\nlog-format = "json"\n'
        'pending-timeout = "off"\nworkers = 3\n',
    )
    rows = print_config("--config", str(config))
    assert rows["hang-timeout"] == ("42.0", f"file {config}")
    assert rows["cors-origin"] == ('["https://a.example"]', f"file {config}")
    assert rows["log-format"] == ('"json"', f"file {config}")
    assert rows["pending-timeout"][1] == f"file {config}"
    assert rows["workers"] == ("3", f"file {config}")
    assert rows["poll-interval"] == ("30.0", "default")


def test_env_beats_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'hang-timeout = 42\ncors-origin = ["https://a.example"]\n')
    env = {"PROVD_HANG_TIMEOUT": "43", "PROVD_CORS_ORIGINS": "https://b.example"}
    rows = print_config("--config", str(config), env=env)
    assert rows["hang-timeout"] == ("43.0", "env PROVD_HANG_TIMEOUT")
    assert rows["cors-origin"] == ('["https://b.example"]', "env PROVD_CORS_ORIGINS")


def test_flag_beats_env(tmp_path: Path) -> None:
    config = write_config(tmp_path, "hang-timeout = 42\n")
    env = {"PROVD_HANG_TIMEOUT": "43", "PROVD_LOG_LEVEL": "error"}
    rows = print_config(
        "--config", str(config), "--hang-timeout", "44", "--log-level", "warning", env=env
    )
    assert rows["hang-timeout"] == ("44.0", "flag")
    assert rows["log-level"] == ('"warning"', "flag")


def test_the_file_can_come_from_provd_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, "poll-interval = 5\n")
    rows = print_config(env={"PROVD_CONFIG": str(config)})
    assert rows["poll-interval"] == ("5.0", f"file {config}")


def test_print_config_is_a_settings_file(tmp_path: Path) -> None:
    """Its output parses as TOML and, read back with --config, gives the same values."""
    first = invoke(["--hang-timeout", "77", "--cors-origin", "*", "--print-config"])
    assert first.exit_code == 0, first.output
    parsed = tomllib.loads(first.stdout)
    assert parsed["hang-timeout"] == 77.0 and parsed["cors-origin"] == ["*"]
    config = write_config(tmp_path, first.stdout)
    again = print_config("--config", str(config))
    assert again["hang-timeout"] == ("77.0", f"file {config}")
    assert {key: value for key, (value, _) in again.items()} == {
        key: value for key, (value, _) in parse_print_config(first.stdout).items()
    }


def test_print_config_masks_secrets(tmp_path: Path) -> None:
    env = {"PROVD_ADMIN_TOKEN": "admin-secret-1", "PROVD_DAEMON_PSK": "psk-secret-2"}
    result = invoke(
        ["--db", "postgresql://provd:pw-secret-3@db.example/provd", "--print-config"], env=env
    )
    assert result.exit_code == 0, result.output
    for secret in ("admin-secret-1", "psk-secret-2", "pw-secret-3"):
        assert secret not in result.output
    assert 'db = "postgresql://provd:***@db.example/provd"  # flag' in result.stdout
    assert "# admin token: ***  # env PROVD_ADMIN_TOKEN" in result.stdout
    assert "# daemon PSK: ***  # env PROVD_DAEMON_PSK" in result.stdout
    # Nothing was started or written: no data directory, no credentials.
    assert not (tmp_path / "xdg").exists()


# -- a file that cannot be used ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hang-timout = 5\n", "unknown setting 'hang-timout'; did you mean 'hang-timeout'?"),
        ("help = true\n", "unknown setting 'help'"),
        ("print-config = true\n", "unknown setting 'print-config'"),
        ('hang-timeout = "soon"\n', "hang-timeout: expected a positive number of seconds"),
        ("hang-timeout = 0\n", "hang-timeout: expected a positive number of seconds"),
        ("hang-timeout = -5.0\n", "hang-timeout: expected a positive number of seconds"),
        ("poll-interval = nan\n", "poll-interval: expected a positive number of seconds"),
        (
            'pending-timeout = "never"\n',
            "pending-timeout: expected a positive number of seconds or 'off'",
        ),
        ("hang-timeout = true\n", "hang-timeout: expected a string or a number, got true"),
        ("upload-max-mib = 1.5\n", "upload-max-mib: expected a whole number, got 1.5"),
        ("upload-max-mib = 0\n", "upload-max-mib: 0 is not in the range x>=1"),
        ('upload-max-mib = "10"\n', 'upload-max-mib: expected a whole number, got "10"'),
        ("shutdown-grace = [1]\n", "shutdown-grace: expected a single value, got [1]"),
        ('cors-origin = "https://a.example"\n', "cors-origin: expected a list"),
        ("cors-origin = [1]\n", "cors-origin: expected a string, got 1"),
        ("listen = 8420\n", "listen: expected a string, got 8420"),
        ('durability = "fast"\n', "durability: 'fast' is not one of 'full', 'normal'"),
        ('log-format = "xml"\n', "log-format: 'xml' is not one of 'text', 'json'"),
        ("workers = 0\n", "workers: expected at least 1 worker, got 0"),
        ("retain = -1.0\n", "retain: expected a duration of zero or more, got '-1.0'"),
        ('retain = "soon"\n', "retain: expected a duration such as 30d, 12h, 90m or 3600"),
        ("[server]\nlisten = '127.0.0.1:1'\n", "unknown setting 'server'"),
    ],
)
def test_a_bad_setting_in_the_file_is_refused_naming_it(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = write_config(tmp_path, text)
    line = refused(["--config", str(config)])
    assert line.startswith(f"provd: {config}: "), line
    assert expected in line, line


def test_a_file_that_is_missing_or_not_toml_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert refused(["--config", str(missing)]) == (
        f"provd: cannot read the settings file {missing}: No such file or directory"
    )
    assert "cannot read the settings file" in refused([], env={"PROVD_CONFIG": str(missing)})
    broken = write_config(tmp_path, "hang-timeout = \n")
    line = refused(["--config", str(broken)])
    assert line.startswith(f"provd: the settings file {broken} is not valid TOML: "), line
    assert refused(["--config", str(tmp_path)]).startswith(
        f"provd: cannot read the settings file {tmp_path}: "
    )


# -- the documentation ---------------------------------------------------------------------


def test_the_settings_table_in_the_docs_is_what_the_command_has() -> None:
    """If this fails, run `just settings-doc` and commit docs/operations.md."""
    document = OPERATIONS.read_text()
    assert committed_table(document) == settings_table(serve_command)


def test_the_table_lists_every_option_with_its_env_var_and_default() -> None:
    table = committed_table(OPERATIONS.read_text())
    for option in settings_of(serve_command):
        key = toml_key(option)
        row = next(line for line in table.splitlines() if f"| `{key}` |" in line)
        assert f"`{env_name(option)}`" in row, key
        if isinstance(option.default, (int, float)) and not isinstance(option.default, bool):
            assert f"| `{option.default}` |" in row, key


def _example_toml() -> str:
    section = OPERATIONS.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    return section.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_example_settings_file_loads(tmp_path: Path) -> None:
    example = _example_toml()
    config = write_config(tmp_path, example)
    rows = print_config("--config", str(config))
    for key in tomllib.loads(example):
        assert rows[key][1] == f"file {config}", key
    assert rows["pending-timeout"][0] == '"off"'
    assert rows["cors-origin"][0] == '["https://app.example.com", "https://admin.example.com"]'


# -- a real `provd serve` ------------------------------------------------------------------


FLAG_OVER_ALL = ("--hang-timeout", "44", "--print-config")


@pytest.mark.slow
async def test_precedence_through_a_real_provd_serve(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, "hang-timeout = 42\npoll-interval = 7\nheartbeat-interval = 5\n"
    )
    env = provd_env(PROVD_HANG_TIMEOUT="43", PROVD_POLL_INTERVAL="8", XDG_DATA_HOME=str(tmp_path))
    with trio.fail_after(START_SECONDS):
        result = await trio.run_process(
            [sys.executable, "-m", "provd", "serve", "--config", str(config), *FLAG_OVER_ALL],
            capture_stdout=True,
            capture_stderr=True,
            env=env,
        )
    rows = parse_print_config(result.stdout.decode())
    assert rows["hang-timeout"] == ("44.0", "flag")
    assert rows["poll-interval"] == ("8.0", "env PROVD_POLL_INTERVAL")
    assert rows["heartbeat-interval"] == ("5.0", f"file {config}")
    assert rows["log-poll-interval"] == ("1.0", "default")


@pytest.mark.slow
async def test_a_bad_settings_file_stops_a_real_provd_serve(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'heartbeat-interval = "often"\n')
    line = await serve_failure("--config", str(config), "--db", str(tmp_path / "p.db"))
    assert line.startswith(f"provd: {config}: heartbeat-interval: "), line
    assert not (tmp_path / "p.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_real_server_runs_with_the_file_settings(
    tmp_path: Path, nursery: trio.Nursery, workers: str
) -> None:
    """The file's settings reach the server, and with --workers each worker (which
    gets the supervisor's pickled settings) too: they log in the file's format."""
    config = write_config(
        tmp_path, f'log-format = "json"\nlog-level = "debug"\nworkers = {workers}\n'
    )
    server = await start_server(nursery, tmp_path / "provd.db", "--config", str(config))
    server.signal(signal.SIGINT)
    assert await server.wait() == 0
    lines = server.output.decode().splitlines()
    # Only the two lines for people are not JSON.
    for_people = [line for line in lines if not line.startswith("{")]
    assert len(for_people) == 2, lines
    assert "listening on" in for_people[0] and for_people[1].startswith("database: ")
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(entry["message"].startswith("SIGINT, ") for entry in logged), lines
    # hypercorn's banner, at debug, from each worker: in provd's JSON.
    banners = [entry for entry in logged if entry["logger"] == "provd.http"]
    assert len(banners) == int(workers), lines
    if workers == "2":
        assert {entry["worker"] for entry in banners} == {0, 1}
