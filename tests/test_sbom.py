"""packaging/sbom.py: the SBOM lists what a build carries, each part traced to the
distribution, CPython or Debian package it came from, and nothing else."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "packaging"))

import sbom  # noqa: E402

# A few lines as packaging/provd.spec writes them into contents.txt.
CONTENTS = [
    ("PYMODULE", "trio._core._run"),
    ("PYMODULE", "google"),  # a namespace package's root
    ("PYMODULE", "google.protobuf.message"),
    ("PYMODULE", "opentelemetry.propagate"),  # opentelemetry-api, not the SDK
    ("PYMODULE", "provd.app"),
    ("PYMODULE", "json.decoder"),
    ("EXTENSION", "python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so"),
    ("EXTENSION", "pyqwest/_pyqwest.abi3.so"),
    ("BINARY", "psycopg_binary.libs/libpq-e9b5c9ac.so.5.18"),
    ("DATA", "certifi/cacert.pem"),
    ("BINARY", "libsqlite3.so.0"),
    ("SYMLINK", "libssl-6a9b88ec.so.3"),
]


def _document() -> dict:  # type: ignore[type-arg]
    return sbom.sbom(CONTENTS, provd_version="9.9.9")


def test_each_part_is_traced_to_what_it_came_from() -> None:
    components = {c["name"]: c for c in _document()["components"]}
    for distribution in ("trio", "protobuf", "opentelemetry-api", "pyqwest", "certifi"):
        assert components[distribution]["version"] == metadata.version(distribution)
        purl = f"pkg:pypi/{distribution}@{metadata.version(distribution)}"
        assert components[distribution]["purl"] == purl
    assert components["psycopg-binary"]["version"] == metadata.version("psycopg-binary")
    assert components["cpython"]["version"] == ".".join(map(str, sys.version_info[:3]))
    # Installed here but not in these contents: left out.
    for absent in ("opentelemetry-sdk", "pytest", "provd", "google", "opentelemetry"):
        assert absent not in components, absent
    assert not [c for c in components.values() if c["bom-ref"].startswith("unknown:")]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs a Debian machine's dpkg")
def test_a_system_library_is_named_by_its_debian_package() -> None:
    components = {c["name"]: c for c in _document()["components"]}
    sqlite = components["libsqlite3-0"]
    assert sqlite["purl"].startswith("pkg:deb/debian/libsqlite3-0@")
    assert {"name": "provd:file", "value": "libsqlite3.so.0"} in sqlite["properties"]


def test_the_document_is_cyclonedx_and_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764633600")
    document = _document()
    assert (document["bomFormat"], document["specVersion"]) == ("CycloneDX", "1.5")
    assert document["metadata"]["timestamp"] == "2025-12-02T00:00:00Z"
    assert document["metadata"]["component"]["purl"] == "pkg:pypi/provd@9.9.9"
    refs = [c["bom-ref"] for c in document["components"]]
    assert len(refs) == len(set(refs))
    assert json.dumps(_document(), sort_keys=True) == json.dumps(document, sort_keys=True)


def test_the_command_reads_a_contents_file(tmp_path: Path) -> None:
    contents = tmp_path / "contents.txt"
    contents.write_text("".join(f"{code:10} {dest}\n" for code, dest in CONTENTS))
    printed = subprocess.run(
        [sys.executable, str(REPO / "packaging" / "sbom.py"), str(contents)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {c["name"] for c in json.loads(printed)["components"]}
    assert {"trio", "certifi", "cpython"} <= names
