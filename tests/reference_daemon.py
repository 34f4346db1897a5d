"""Pieces for running provd's reference daemon (provd.client.daemon) inside a test:
fast reporting timers and a provisioner the test steers."""

from __future__ import annotations

import trio

from provd.client.daemon.provisioners import JobFailed
from provd.client.daemon.reporting import JobReporter, ReportingSettings
from provd.gen.provisionerd import provisionerd_pb2 as pd

FAST = ReportingSettings(heartbeat_interval_seconds=0.1, debounce_seconds=0.05)


class Scripted:
    """A provisioner the test steers: logs, then waits for `release` (or forever)."""

    def __init__(self, lines: int = 3) -> None:
        self.lines = lines
        self.started = trio.Event()
        self.release = trio.Event()
        self.cancelled = False
        self.fail_with: JobFailed | None = None

    async def __call__(self, job: pd.AcquiredJob, reporter: JobReporter) -> pd.CompletedJob:
        for i in range(self.lines):
            reporter.log(f"line {i}", stage="Working")
        self.started.set()
        try:
            await self.release.wait()
        except trio.Cancelled:
            self.cancelled = True
            raise
        if self.fail_with is not None:
            raise self.fail_with
        return pd.CompletedJob(template_import=pd.CompletedJob.TemplateImport())
