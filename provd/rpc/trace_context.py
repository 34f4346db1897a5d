"""W3C trace context (https://www.w3.org/TR/trace-context/) carried from a CreateJob
call to the daemon that runs the job.

A caller that traces its requests sends `traceparent` (and maybe `tracestate`)
headers; provd keeps them as the job's `trace_metadata` when the request brought
none of its own, and `AcquiredJob.trace_metadata` hands them to the daemon, which
continues the caller's trace. A malformed header is ignored, as the specification
asks, rather than refused: tracing must never break job creation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# version "00" is exact; a later version may append fields after a dash (§3.2.4).
_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<parent_id>[0-9a-f]{16})"
    r"-[0-9a-f]{2}(?P<rest>-.*)?"
)
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
# The specification's limit is 32 list members; 512 characters bounds what is stored.
TRACESTATE_MAX_CHARS = 512


def valid_traceparent(value: str) -> bool:
    """Whether `value` is a traceparent this version of the specification accepts."""
    match = _TRACEPARENT.fullmatch(value)
    if match is None or match["version"] == "ff":
        return False
    if match["version"] == "00" and match["rest"] is not None:
        return False
    return match["trace_id"] != _ZERO_TRACE_ID and match["parent_id"] != _ZERO_PARENT_ID


def trace_metadata_from_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The trace context in `headers` (lower-case names), or {} when there is none or
    its traceparent is malformed; a tracestate goes with a valid traceparent only."""
    traceparent = headers.get(TRACEPARENT, "").strip()
    if not valid_traceparent(traceparent):
        return {}
    metadata = {TRACEPARENT: traceparent}
    tracestate = headers.get(TRACESTATE, "").strip()
    if tracestate and len(tracestate) <= TRACESTATE_MAX_CHARS:
        metadata[TRACESTATE] = tracestate
    return metadata
