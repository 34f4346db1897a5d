"""The client side of provd never loads the server, and the CLI loads what it uses.

The entry points: every module under `provd.client`, `provd.cli` itself, and `provd
--help`, `provd jobs --help`, `provd daemon --help` and a few more run in-process
through click. They are imported (or run) in a fresh interpreter, which prints
`sorted(sys.modules)`; no server module may be among them (provd/client/__init__.py
states the rule). This process has imported half of provd already, so it cannot tell.

The boundary check imports every entry point in one interpreter: what they load
together includes what each loads, so if the union holds no server module, none of
them does. When it does hold one, each entry point is run alone to name the culprit.

wsproto and h11 are also the libraries of the client's WebSocket transport
(trio-websocket): `provd.client.websocket` imports them when a stream opens, so here
they must not load at import time. h2 is hypercorn's; no client path needs it.

The admin commands call provd through provd.client.connect_lite, not connectrpc: run
against a real server, they load none of connectrpc's stack (connectrpc, protobuf-py,
asyncio), pyqwest, trio, tabulate or http.client (docs/performance.md, "CLI start-up").

The one-file executable unpacks some libraries only when a module needs them
(packaging/entry.py, LAZY_GROUPS: pyqwest, psycopg, OpenSSL through `_ssl` and
`_hashlib`, SQLite, `unicodedata`): `provd --help` and the admin commands must import
none of those modules, or every run of them pays for unpacking megabytes again.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType

import pytest
import trio

import provd
from tests.conftest import ADMIN_TOKEN, Server

SERVER_MODULES = (
    "provd.store",
    "provd.scheduler",
    "provd.dispatch",
    "provd.registry",
    "provd.reapers",
    "provd.job_service",
    "provd.rpc",
    "provd.app",
    "provd.config",
    "provd.metrics",
    "prometheus_client",
    "hypercorn",
    "sqlite_utils",
    "h2",
    "h11",
    "wsproto",
)
# What `provd --help` must not pay for: it lists commands from a table.
HEAVY_MODULES = (
    "trio",
    "asyncio",
    "connectrpc",
    "protobuf",  # connectrpc's own protobuf runtime (protobuf-py)
    "google.protobuf",
    "provd.gen",
    "pyqwest",
    "opentelemetry",
    "tabulate",
    "tarfile",
    "zipfile",
    "provd.model",
    "provd.client",
    "prometheus_client",
)
PACKAGE = Path(provd.__file__).parent


def frozen_entry() -> ModuleType:
    """packaging/entry.py, what the frozen executable runs (not a package module)."""
    spec = importlib.util.spec_from_file_location(
        "provd_frozen_entry", PACKAGE.parent / "packaging" / "entry.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The modules whose import makes the one-file executable unpack a group of libraries.
LAZY_TRIGGERS = tuple(
    trigger for triggers, _paths in frozen_entry().LAZY_GROUPS.values() for trigger in triggers
)


def client_modules() -> list[str]:
    """Every module under provd/client, found on disk (importing them here would
    load them into this process, which proves nothing)."""
    modules = []
    for path in sorted((PACKAGE / "client").rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def _loaded_after(code: str, env: Mapping[str, str] | None = None) -> list[str]:
    """`sorted(sys.modules)` in a fresh interpreter after running `code`."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.splitlines()[-1]))


def _run_cli(args: Sequence[str], *, exit_code: int | None = None) -> str:
    """Code that runs `provd ARGS` in-process through click, its output swallowed
    (and its exit status checked to be `exit_code`, when given)."""
    code = (
        "import contextlib, io\n"
        "from provd.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(out):\n"
        "    try:\n"
        f"        main({list(args)!r}, prog_name='provd')\n"
        "    except SystemExit as exited:\n"
        "        status = exited.code\n"
    )
    if exit_code is not None:
        code += f"assert status == {exit_code}, (status, out.getvalue())\n"
    return code


def among(loaded: Iterable[str], prefixes: Sequence[str]) -> list[str]:
    """The modules of `loaded` that are one of `prefixes` or inside one."""
    return [m for m in loaded if any(m == p or m.startswith(p + ".") for p in prefixes)]


ENTRY_POINTS = {
    **{module: f"import {module}" for module in client_modules()},
    "provd.cli": "import provd.cli",
    "provd --help": _run_cli(["--help"]),
    "provd --version": _run_cli(["--version"]),
    "provd version": _run_cli(["version"]),
    "provd jobs --help": _run_cli(["jobs", "--help"]),
    "provd jobs list --help": _run_cli(["jobs", "list", "--help"]),
    "provd daemons --help": _run_cli(["daemons", "--help"]),
    "provd quota --help": _run_cli(["quota", "--help"]),
    "provd keys --help": _run_cli(["keys", "--help"]),
    "provd files upload --help": _run_cli(["files", "upload", "--help"]),
    "provd daemon --help": _run_cli(["daemon", "--help"]),
}


def test_the_entry_points_include_the_ones_that_matter() -> None:
    for module in (
        "provd.client.connect",
        "provd.client.websocket",
        "provd.client.daemon.command",
        "provd.client.daemon.runner",
        "provd.client.cli.admin",
        "provd.client.cli.keys",
        "provd.client.cli.context",
        "provd.client.cli.jobs",
        "provd.client.cli.output",
    ):
        assert module in ENTRY_POINTS


def test_no_client_entry_point_loads_the_server() -> None:
    if not among(_loaded_after("\n".join(ENTRY_POINTS.values())), SERVER_MODULES):
        return
    culprits = {
        entry_point: found
        for entry_point, code in ENTRY_POINTS.items()
        if (found := among(_loaded_after(code), SERVER_MODULES))
    }
    pytest.fail(f"client entry points that load server modules: {culprits}")


def test_the_check_sees_a_server_module() -> None:
    """A client module that imported the server would be caught: the check is not
    vacuous."""
    loaded = _loaded_after("import provd.client.connect\nimport provd.config")
    assert "provd.config" in among(loaded, SERVER_MODULES)


def test_the_cli_needs_no_lazily_unpacked_library() -> None:
    """`provd --help`, `--version`, `version`, `examples list` and the admin commands'
    help import no module that would make the one-file executable unpack a LAZY_GROUPS
    group (the admin commands are checked against a server below). `provd daemon` and
    `serve` need them when they run; their --help loads `hashlib` through provd.secrets
    today."""
    assert {"pyqwest", "psycopg_binary", "_ssl", "_hashlib"} <= set(LAZY_TRIGGERS)
    for args in (
        ["--help"],
        ["--version"],
        ["version"],
        ["examples", "list"],
        ["jobs", "list", "--help"],
        ["keys", "create", "--help"],
    ):
        assert among(_loaded_after(_run_cli(args)), LAZY_TRIGGERS) == [], args


def test_the_server_loads_no_postgres_driver_for_sqlite() -> None:
    """The server's modules leave psycopg and OpenTelemetry's SDK alone: PostgreSQL is
    imported for a postgresql:// --db only, the SDK only when spans are exported."""
    loaded = _loaded_after("import provd.app, provd.cli.serve, provd.workers")
    assert among(loaded, ("psycopg", "psycopg_binary", "psycopg_pool")) == []
    assert among(loaded, ("provd.store.postgres", "provd._otel", "opentelemetry.sdk")) == []


def test_the_server_loads_no_http_client() -> None:
    """Serving loads neither connectrpc's client nor pyqwest (~3 MB resident and, in
    the one-file executable, a 12 MB unpack): the generated clients live in their own
    `*_connect_client.py` (proto/split_connect.py) and reflection, whose package
    imports a client, is built on its first call (provd/rpc/reflection.py)."""
    client_stack = ("pyqwest", "connectrpc.client", "connectrpc_grpcreflect")
    loaded = _loaded_after("import provd.app, provd.cli.serve, provd.workers")
    assert among(loaded, client_stack) == []
    # The check sees them when a client is imported.
    loaded = _loaded_after("import provd.gen.provd.v1.jobs_connect_client")
    assert among(loaded, ("pyqwest", "connectrpc.client")) != []


def test_the_lazy_unpacker_writes_a_group_once(tmp_path: Path) -> None:
    """packaging/entry.py's finder writes a group's files (and its top-level links) on
    the first import of a trigger, under the unpack directory, then drops the archive
    module; a second trigger of the same group writes nothing."""
    entry_py = str(PACKAGE.parent / "packaging" / "entry.py")
    code = f"""
import importlib.util, os, sys, types
spec = importlib.util.spec_from_file_location("e", {entry_py!r})
entry = importlib.util.module_from_spec(spec); spec.loader.exec_module(entry)
blob = types.ModuleType("_provd_lazy_openssl")
blob.FILES = (("libssl.so.3", b"ssl"), ("sub/libcrypto.so.3", b"crypto"))
blob.SYMLINKS = {{"libcrypto.so.3": "sub/libcrypto.so.3"}}
class Archive:
    def find_spec(self, name, path=None, target=None):
        if name == "_provd_lazy_openssl":
            return importlib.util.spec_from_loader(name, self)
    def create_module(self, spec):
        return blob
    def exec_module(self, module):
        pass
sys.meta_path.append(Archive())
unpacker = entry.LazyUnpacker({str(tmp_path)!r}, entry.LAZY_GROUPS)
assert unpacker.find_spec("_ssl") is None
assert "_provd_lazy_openssl" not in sys.modules
os.remove({str(tmp_path / "libssl.so.3")!r})
unpacker.find_spec("_hashlib")  # the same group: already written
"""
    _loaded_after(code)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "libcrypto.so.3",
        "libcrypto.so.3",
        "sub",
    ]
    assert (tmp_path / "libcrypto.so.3").read_bytes() == b"crypto"
    assert (tmp_path / "libcrypto.so.3").is_symlink()


def test_top_level_help_loads_no_command() -> None:
    """`provd --help` lists the commands from `provd.cli.COMMANDS`: click and provd's
    version, nothing else of provd's or of its dependencies."""
    loaded = _loaded_after(_run_cli(["--help"]))
    assert among(loaded, HEAVY_MODULES) == []
    assert [m for m in loaded if m.startswith("provd")] == ["provd", "provd.cli"]


def test_command_help_loads_no_transport() -> None:
    """`--help` of the admin and daemon commands imports neither trio nor connectrpc,
    pyqwest, tabulate or the archive code (the admin commands do import the generated
    protobuf messages they are written in)."""
    transport = ("trio", "asyncio", "connectrpc", "protobuf", "pyqwest", "tabulate", "tarfile")
    for args in (
        ["jobs", "--help"],
        ["jobs", "list", "--help"],
        ["quota", "--help"],
        ["keys", "create", "--help"],
    ):
        assert among(_loaded_after(_run_cli(args)), transport) == [], args
    daemon = _loaded_after(_run_cli(["daemon", "--help"]))
    assert among(daemon, (*transport, "google.protobuf", "provd.gen")) == []
    serve = _loaded_after(_run_cli(["serve", "--help"]))
    assert among(serve, ("trio", "hypercorn", "provd.app", "provd.store", *METRICS_MODULES)) == []


# prometheus-client is the server's, loaded when it serves (provd.metrics): not by
# `provd serve --help`, the database commands or the modules the CLI's settings use.
METRICS_MODULES = ("prometheus_client", "provd.metrics")


def test_only_serving_loads_prometheus_client() -> None:
    """The modules every server command shares (settings, the store, the service
    layer) and `provd db --help` leave prometheus-client alone; the app loads it."""
    for code in (
        "import provd.config, provd.store.sqlite, provd.dispatch, provd.job_service",
        "import provd.reapers, provd.registry, provd.workers, provd.cli.serve",
        _run_cli(["db", "--help"]),
        _run_cli(["db", "copy", "--help"]),
    ):
        assert among(_loaded_after(code), METRICS_MODULES) == [], code
    assert "prometheus_client" in _loaded_after("import provd.app")


def test_a_command_loads_only_its_own_module() -> None:
    """`provd version` runs without the daemon, the server or a client."""
    loaded = _loaded_after(_run_cli(["version"]))
    assert "provd.client.cli.admin" in loaded
    assert among(loaded, ("provd.client.daemon", "provd.cli.serve", "trio", "connectrpc")) == []


# What the admin commands must not load: connectrpc's stack, the HTTP/2 client, the
# async runtimes, the old table library, and the standard library's heavy HTTP modules.
NOT_FOR_ADMIN_COMMANDS = (
    "connectrpc",
    "protobuf",  # protobuf-py, connectrpc's runtime
    "asyncio",
    "trio",
    "pyqwest",
    "opentelemetry",
    "tabulate",
    "importlib.metadata",
    "http.client",
    "email",
    "ssl",  # http:// needs no TLS
    "provd.client.connect",
)


async def test_admin_commands_load_no_connect_stack(server: Server) -> None:
    """Each admin command, run against a real provd (a job exists, so `jobs list` prints
    a table), uses provd.client.connect_lite and loads nothing of NOT_FOR_ADMIN_COMMANDS;
    so does a command that cannot reach provd."""
    env = {"PROVD_URL": server.url, "PROVD_ADMIN_TOKEN": ADMIN_TOKEN}
    archive = str(PACKAGE.parent / "examples" / "hello")
    commands: list[tuple[list[str], Mapping[str, str]]] = [
        (["jobs", "create", "--type", "import", "--archive", archive], env),
        (["jobs", "list"], env),
        (["jobs", "list", "--json"], env),
        (["jobs", "logs", "--after", "0", "--json", "00000000-0000-0000-0000-000000000000"], env),
        (["daemons", "list"], env),
        (["quota", "list"], env),
        (["keys", "create", "boundary"], env),
        (["keys", "list"], env),
        (["keys", "delete", "boundary"], env),
    ]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        unreachable = {**env, "PROVD_URL": f"http://127.0.0.1:{probe.getsockname()[1]}"}
    commands.append((["jobs", "list"], unreachable))
    commands.append((["jobs", "logs", "--follow", "x"], unreachable))
    for args, environment in commands:
        failing = environment is unreachable or args[1] == "logs"
        code = _run_cli(args, exit_code=1 if failing else 0)
        loaded = await trio.to_thread.run_sync(_loaded_after, code, environment)
        assert "provd.client.connect_lite" in loaded, args
        assert among(loaded, NOT_FOR_ADMIN_COMMANDS) == [], args
        assert among(loaded, LAZY_TRIGGERS) == [], args
