"""hypercorn 0.18: DATA for an HTTP/2 stream whose response already ended raises
KeyError in `H2Protocol._handle_events`, which kills the connection task and, under
trio, the whole server (pgjones/hypercorn#329, PRs #312/#334/#365, unreleased).

It happens in normal use: a bidi stream's server side ends (AcquireJobWithCancel
sends its one answer), then the client half-closes with an empty DATA frame. The
fix is hypercorn's own for StreamEnded: ignore the event, but still give the
connection's flow-control window back.
"""

from __future__ import annotations

from typing import Any

import h2.events
from hypercorn.protocol.h2 import H2Protocol

_original = H2Protocol._handle_events


async def _handle_events(self: Any, events: list[h2.events.Event]) -> None:
    if not any(isinstance(event, h2.events.DataReceived) for event in events):
        await _original(self, events)
        return
    # Events are handled one by one: an earlier event of the batch may create or
    # close the stream that a later DATA frame belongs to.
    for event in events:
        if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
            self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            continue
        await _original(self, [event])


def apply() -> None:
    """Install the fix (idempotent)."""
    H2Protocol._handle_events = _handle_events  # type: ignore[method-assign]
