"""`provd` commands run in-process (click's runner, in a worker thread) against a test
server, with the environment of a fresh user."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner, Result

from provd.cli import main
from tests.conftest import ADMIN_TOKEN

# A hang guard, not a timing assertion.
CLI_SECONDS = 30


ENV_NAMES = ("PROVD_URL", "PROVD_ADMIN_TOKEN", "PROVD_DB", "PROVD_LISTEN", "XDG_DATA_HOME")


@dataclass
class Cli:
    """Runs `provd ARGS…` against one server, with a private XDG_DATA_HOME."""

    url: str
    home: Path
    runner: CliRunner = field(default_factory=CliRunner)

    async def __call__(
        self,
        *args: str,
        expect: int = 0,
        token: str | None = ADMIN_TOKEN,
        url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        """The command's result; fails the test unless it exits with `expect`."""
        environment: dict[str, str | None] = dict.fromkeys(ENV_NAMES)
        environment.update(
            PROVD_URL=url or self.url, PROVD_ADMIN_TOKEN=token, XDG_DATA_HOME=str(self.home)
        )
        environment.update(env or {})
        invoke = partial(self.runner.invoke, main, list(args), env=environment, prog_name="provd")
        with trio.fail_after(CLI_SECONDS):
            result = await trio.to_thread.run_sync(invoke, abandon_on_cancel=True)
        if result.exit_code != expect:
            detail = ""
            if result.exc_info and not isinstance(result.exception, SystemExit):
                import traceback

                detail = "".join(traceback.format_exception(*result.exc_info))
            pytest.fail(
                f"provd {' '.join(args)}: exit {result.exit_code}, expected {expect}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{detail}"
            )
        return result

    async def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads((await self(*args, "--json", **kwargs)).stdout)
