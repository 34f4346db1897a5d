"""A CycloneDX 1.5 SBOM of what a PyInstaller build of provd carries, generated from
the build itself.

    VENV/bin/python packaging/sbom.py build/pyinstaller/provd/contents.txt > provd.cdx.json

The input is the list the spec writes of every entry in the bundle (`typecode dest`).
Each entry is traced to what it came from:

- a Python module or extension to its distribution (importlib.metadata, in the venv
  that built it: run this with that venv's Python), or to CPython's standard library;
- a shared library vendored inside a wheel (`psycopg_binary.libs/…`) to that wheel;
- any other shared library to the Debian package that installed it (`dpkg -S`), or,
  without dpkg, to an entry that names the file only;
- a data file under a distribution's directory (`certifi/cacert.pem`) to it;
- a `DISTRIBUTION name` line (packaging/portable.sh writes one for staticx, whose
  bootloader and libnssfix the portable executable carries) to that distribution.

Only what is inside counts: a distribution installed in the venv but left out of the
bundle (the dev tools, OpenTelemetry's SDK) is not listed. The output is
deterministic for a given build (sorted, serial number derived from the content, the
timestamp from SOURCE_DATE_EPOCH), so reproducible builds give identical SBOMs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_LIB_DYNLOAD = re.compile(r"^python3\.\d+/lib-dynload/")
_SHARED_LIBRARY = re.compile(r"\.so(\.\d+)*$")
_VENDORED_LIBS = re.compile(r"^([A-Za-z0-9_]+)\.libs/")


def read_contents(path: Path) -> list[tuple[str, str]]:
    """(typecode, dest) for every line of the spec's contents.txt."""
    entries = []
    for line in path.read_text().splitlines():
        typecode, _, dest = line.strip().partition(" ")
        if typecode:
            entries.append((typecode, dest.strip()))
    return entries


def module_name(typecode: str, dest: str) -> str | None:
    """The dotted module an entry is, or None for data and plain libraries."""
    if typecode == "PYMODULE":
        return dest
    if typecode == "EXTENSION":
        return _LIB_DYNLOAD.sub("", dest).split(".")[0].replace("/", ".")
    return None


def module_owners() -> dict[str, str]:
    """Every module an installed distribution's RECORD lists, to that distribution.
    Finer than `packages_distributions()`, which maps a namespace package such as
    `opentelemetry` to every distribution that adds to it."""
    owners: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        for file in dist.files or ():
            path = str(file)
            if path.endswith(".py"):
                dotted = path[: -len(".py")].replace("/", ".").removesuffix(".__init__")
            elif path.endswith(".so"):
                dotted = path.split(".")[0].replace("/", ".")
            else:
                continue
            owners.setdefault(dotted, name)
    return owners


class Origins:
    """Where the bundle's parts come from: distributions, the stdlib, Debian."""

    def __init__(self, owners: Mapping[str, str] | None = None) -> None:
        self._owners = module_owners() if owners is None else owners
        self._by_top_level = {dotted for dotted in self._owners if "." not in dotted}
        self.python: set[str] = set()
        self.distributions: set[str] = set()
        self.libraries: set[str] = set()
        self.unknown: set[str] = set()

    def add(self, typecode: str, dest: str) -> None:
        if typecode == "DISTRIBUTION":  # named outright (staticx, in the portable build)
            self.distributions.add(dest)
            return
        module = module_name(typecode, dest)
        if module is not None:
            self._add_module(module)
            return
        vendored = _VENDORED_LIBS.match(dest)
        if vendored:
            self._add_module(vendored.group(1))
        elif typecode in ("BINARY", "SYMLINK") and _SHARED_LIBRARY.search(dest):
            if dest.startswith("libpython"):
                self.python.add(dest)
            elif typecode == "BINARY":
                self.libraries.add(dest)
        elif typecode == "DATA":
            top = dest.split("/")[0]
            if top in self._by_top_level:
                self._add_module(top)

    def _add_module(self, module: str) -> None:
        top = module.split(".")[0]
        if top == "provd" or top.startswith(("_pyinstaller", "pyimod")):
            return  # provd itself (the SBOM's subject) and PyInstaller's bootstrap
        if (
            top in sys.stdlib_module_names
            or top.startswith("_sysconfigdata")
            or top
            in (
                "_frozen_importlib",
                "__main__",
            )
        ):
            self.python.add(top)
            return
        parts = module.split(".")
        for end in range(len(parts), 0, -1):  # the module, else its nearest package
            owner = self._owners.get(".".join(parts[:end]))
            if owner is not None:
                self.distributions.add(owner)
                return
        if not any(dotted.startswith(module + ".") for dotted in self._owners):
            self.unknown.add(top)  # else a namespace package's root: its parts are owned


def _license(dist: metadata.Distribution) -> list[dict[str, Any]]:
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return [{"expression": expression}]
    classifiers = [
        c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")
    ]
    named = classifiers or ([meta["License"]] if meta.get("License") else [])
    return [{"license": {"name": name[:200]}} for name in named if name and name != "UNKNOWN"]


def distribution_component(name: str) -> dict[str, Any]:
    dist = metadata.distribution(name)
    canonical = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    component: dict[str, Any] = {
        "type": "library",
        "bom-ref": f"pkg:pypi/{canonical}@{dist.version}",
        "name": canonical,
        "version": dist.version,
        "purl": f"pkg:pypi/{canonical}@{dist.version}",
    }
    licenses = _license(dist)
    if licenses:
        component["licenses"] = licenses
    return component


def _dpkg_owner(path: str) -> str | None:
    """The package dpkg says installed `path`, trying the /usr-merged twin too."""
    candidates = [path, path.removeprefix("/usr")] if path.startswith("/usr/") else [path]
    if path.startswith("/lib"):
        candidates.append("/usr" + path)
    for candidate in candidates:
        owner = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if owner.returncode == 0:
            return owner.stdout.split(":")[0].strip()
    return None


def debian_component(library: str) -> dict[str, Any]:
    """The Debian package a shared library of this machine belongs to, if dpkg says."""
    path = _find_library(library)
    if path is not None and shutil.which("dpkg"):
        package = _dpkg_owner(path)
        if package is not None:
            query = ["dpkg-query", "-W", "-f", "${Version} ${Architecture}", package]
            version, _, arch = subprocess.run(
                query, capture_output=True, text=True, check=True
            ).stdout.partition(" ")
            purl = f"pkg:deb/debian/{package}@{version}?arch={arch}"
            return {
                "type": "library",
                "bom-ref": purl,
                "name": package,
                "version": version,
                "purl": purl,
                "properties": [{"name": "provd:file", "value": library}],
            }
    return {"type": "file", "bom-ref": f"file:{library}", "name": library}


def _find_library(name: str) -> str | None:
    for directory in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"):
        candidate = Path(directory, name)
        if candidate.exists():
            return str(candidate.resolve())
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return None
    for line in listing.splitlines():
        if line.strip().startswith(name + " "):
            return str(Path(line.rsplit("=>", 1)[1].strip()).resolve())
    return None


def python_component() -> dict[str, Any]:
    version = platform.python_version()
    return {
        "type": "platform",
        "bom-ref": f"pkg:generic/cpython@{version}",
        "name": "cpython",
        "version": version,
        "purl": f"pkg:generic/cpython@{version}",
        "licenses": [{"expression": "PSF-2.0"}],
    }


def sbom(entries: Iterable[tuple[str, str]], *, provd_version: str) -> dict[str, Any]:
    """The CycloneDX document for a bundle whose contents are `entries`."""
    origins = Origins()
    for typecode, dest in entries:
        origins.add(typecode, dest)
    components = [python_component()] if origins.python else []
    components += [distribution_component(name) for name in sorted(origins.distributions)]
    by_ref: dict[str, dict[str, Any]] = {}
    for library in sorted(origins.libraries):  # libssl.so.3 and libcrypto.so.3: one package
        component = debian_component(library)
        known = by_ref.setdefault(component["bom-ref"], component)
        if known is not component:
            known["properties"] += component["properties"]
    components += by_ref.values()
    components += [
        {"type": "library", "bom-ref": f"unknown:{top}", "name": top}
        for top in sorted(origins.unknown)
    ]
    components.sort(key=lambda c: (c["type"], c["name"]))
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    body = json.dumps(components, sort_keys=True).encode()
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.UUID(bytes=hashlib.sha256(body).digest()[:16])}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "packaging/sbom.py"}]},
            "component": {
                "type": "application",
                "bom-ref": f"pkg:pypi/provd@{provd_version}",
                "name": "provd",
                "version": provd_version,
                "purl": f"pkg:pypi/provd@{provd_version}",
                "licenses": [{"expression": "Apache-2.0"}],
            },
        },
        "components": components,
    }


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: sbom.py build/pyinstaller/provd/contents.txt")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from provd import __version__

    document = sbom(read_contents(Path(sys.argv[1])), provd_version=__version__)
    json.dump(document, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
