"""Other people's clients, installed by the tests themselves.

`npm_tools()` installs the exact versions in tests/clients/package.json (the buf CLI,
protoc-gen-es, connect-es) once into `.cache/thirdparty/npm-<hash>/` in the clone; later
runs reuse it. When they cannot be installed (no npm, no registry), the tests that need
them are skipped with the reason, never silently.

`connect_es_dir()` adds what a Node program needs beside them: the code protoc-gen-es
makes from proto/ (via `buf generate`), in a directory whose `node_modules` is the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "tests" / "clients"
CACHE = ROOT / ".cache" / "thirdparty"
INSTALL_SECONDS = 300


def npm_tools() -> Path:
    """The `node_modules` of tests/clients/package.json, installed once; skips the test
    (with npm's own words) if that cannot be done. Blocks: call it from a thread."""
    installed = _install_npm_tools()
    if isinstance(installed, str):
        pytest.skip(installed)
    return installed


@cache
def _install_npm_tools() -> Path | str:
    """The installed node_modules, or why there is none (tried once per run)."""
    manifest = (CLIENTS / "package.json").read_bytes()
    target = CACHE / f"npm-{hashlib.sha256(manifest).hexdigest()[:12]}"
    if (target / "installed").exists():
        return target / "node_modules"
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return "node and npm are not installed: cannot install the buf CLI and connect-es"
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "package.json").write_bytes(manifest)
    command = [
        npm,
        "install",
        "--prefix",
        str(staging),
        "--no-package-lock",
        "--no-audit",
        "--no-fund",
        # Without a registry, fail within seconds rather than retry for minutes.
        "--fetch-retries=1",
        "--fetch-retry-mintimeout=1000",
        "--fetch-retry-maxtimeout=5000",
        # The buf package's postinstall only swaps its Node launcher for the binary.
        "--ignore-scripts",
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        return f"npm install of tests/clients/package.json took over {INSTALL_SECONDS}s"
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        lines = (result.stdout + result.stderr).strip().splitlines()
        reason = [line for line in lines if re.match(r"npm error (code|errno|network) ", line)]
        return "npm install of tests/clients/package.json failed:\n" + "\n".join(
            reason[:4] or lines[-8:]
        )
    (staging / "installed").write_text("")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target / "node_modules"


def buf() -> Path:
    """The buf CLI from npm's `@bufbuild/buf`."""
    return tool_dirs()[0] / "buf"


def tool_dirs() -> list[Path]:
    """Where the npm tools are: buf's own binary first (the package for this platform;
    `.bin/buf` is a Node launcher for it, 0.2 s slower a call), then `.bin`."""
    modules = npm_tools()
    native = [path.parent for path in sorted(modules.glob("@bufbuild/buf-*/bin/buf"))]
    return [*native[:1], modules / ".bin"]


def tools_env(**extra: str) -> dict[str, str]:
    """The environment with the npm tools (buf, protoc-gen-es) first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([*map(str, tool_dirs()), env.get("PATH", "")])
    env.update(extra)
    return env


def connect_es_dir(directory: Path) -> Path:
    """`directory` made ready for a Node program that imports connect-es and the code
    protoc-gen-es generated from proto/ (`./gen/...`): links to the cached node_modules
    and to the generated code, made once per content of proto/ and buf.gen.yaml."""
    modules = npm_tools()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "node_modules").symlink_to(modules, target_is_directory=True)
    (directory / "package.json").write_text('{"type": "module"}\n')
    (directory / "gen").symlink_to(_generated(modules), target_is_directory=True)
    return directory


def _generated(modules: Path) -> Path:
    """protoc-gen-es's output for proto/, beside node_modules (so its imports resolve)."""
    digest = hashlib.sha256((CLIENTS / "buf.gen.yaml").read_bytes())
    for path in sorted((ROOT / "proto").rglob("*.proto")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    target = modules.parent / f"gen-{digest.hexdigest()[:12]}"
    if (target / "gen" / "provd" / "v1" / "jobs_pb.js").exists():
        return target / "gen"
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    result = subprocess.run(
        [str(buf()), "generate", str(ROOT / "proto"), "--template", str(CLIENTS / "buf.gen.yaml")],
        cwd=staging,
        env=tools_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (staging / "gen" / "provd" / "v1" / "jobs_pb.js").exists()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target / "gen"
