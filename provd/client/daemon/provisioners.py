"""What a provisioner is to the daemon: an async function that runs one job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from provd.client.daemon.reporting import JobReporter
from provd.gen.provisionerd import provisionerd_pb2 as pd


@dataclass
class JobFailed(Exception):
    """Raised by a provisioner to fail its job with this error (and, for a
    workspace build, the state to keep)."""

    error: str
    error_code: str = ""
    state: bytes = b""

    def __str__(self) -> str:
        return self.error


# Runs the job, reporting through the reporter, and returns the CompletedJob to
# send; raises JobFailed to fail it. Cancellation (the job was canceled) arrives as
# trio cancellation of the call.
Provisioner = Callable[[pd.AcquiredJob, JobReporter], Awaitable[pd.CompletedJob]]
