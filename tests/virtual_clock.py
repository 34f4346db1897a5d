"""Stored times that follow trio's clock, for tests on the virtual (autojump) clock:
the store and the registry take a `now` callable, and these make it trio's."""

from __future__ import annotations

import trio

# Unix milliseconds at virtual time 0: stored times must not be mistaken for trio's.
EPOCH_MS = 1_700_000_000_000


def virtual_now() -> int:
    """Unix milliseconds that follow trio's (virtual) clock."""
    return EPOCH_MS + round(trio.current_time() * 1000)


def at(seconds: float) -> int:
    """The Unix milliseconds that `virtual_now` gives at virtual time `seconds`."""
    return EPOCH_MS + round(seconds * 1000)
