"""provd's version, the platform it runs on, and the commit and date a release binary
was built from.

A release build (packaging/provd.spec) freezes a generated module `provd._build_info`
with two strings:

    COMMIT = "0123abc..."
    BUILD_DATE = "2025-01-31T12:00:00Z"

A source checkout has no such module (`provd/_build_info.py` is git-ignored; the
build writes its copy outside the tree) and reports the version only. The module is
imported by name, so the spec adds it to the frozen archive itself.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field

from provd import __version__

BUILD_INFO_MODULE = "provd._build_info"


def running_platform() -> str:
    """The OS and machine this provd runs on, as release files name them:
    `linux-x86_64`, `linux-aarch64`."""
    return f"{sys.platform}-{os.uname().machine}"


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str
    commit: str = ""
    build_date: str = ""
    platform: str = field(default_factory=running_platform)


def build_info() -> BuildInfo:
    try:
        module = importlib.import_module(BUILD_INFO_MODULE)
    except ModuleNotFoundError as error:
        if error.name != BUILD_INFO_MODULE:
            raise
        return BuildInfo(__version__)
    return BuildInfo(
        __version__,
        commit=str(getattr(module, "COMMIT", "")),
        build_date=str(getattr(module, "BUILD_DATE", "")),
    )
