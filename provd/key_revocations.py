"""Ending, in this process, the acquire waits of the daemons of a deleted daemon key.

A key is deleted through one process; every process serving the database hears of it
(`Wakeups.key_revoked`, relayed to the others) and calls `KeyRevocations.revoke`,
which ends each wait that the key's daemons hold open here: the wait's stop event is
set and its `Watch` marked revoked, so that the dispatcher answers the stream with
`unauthenticated` instead of a job (giving back a job it claimed meanwhile).

Key ids are random and never reused, so a revoked id is remembered for the life of the
process: a wait that starts after the revocation arrived (its call was authenticated
just before the delete) is revoked as it starts. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from provd.errors import Unauthenticated


@dataclass(eq=False)
class Watch:
    """One wait of one key's daemon: `stop` is set, and `revoked` true, once the key is
    deleted. A daemon on the pre-shared key (no key id) is never revoked."""

    key_id: str
    stop: trio.Event
    revoked: bool = False

    def check(self) -> None:
        """Raise `Unauthenticated` if the key was deleted."""
        if self.revoked:
            raise Unauthenticated(revoked_message(self.key_id))


def revoked_message(key_id: str) -> str:
    return (
        f"Provd-Daemon-Key: daemon key {key_id} was deleted; provd refuses every call made with it"
    )


class KeyRevocations:
    """The deleted keys this process knows of, and the waits to end when one is."""

    def __init__(self) -> None:
        self._revoked: set[str] = set()
        self._watches: dict[str, set[Watch]] = {}

    def revoke(self, key_id: str) -> None:
        """Key `key_id` was deleted: end every wait of its daemons here, now and later."""
        self._revoked.add(key_id)
        for watch in self._watches.get(key_id, ()):
            watch.revoked = True
            watch.stop.set()

    def is_revoked(self, key_id: str) -> bool:
        return key_id in self._revoked

    def watched_keys(self) -> list[str]:
        """The keys whose daemons wait here (what a re-check must read)."""
        return list(self._watches)

    @contextmanager
    def watch(self, key_id: str, stop: trio.Event) -> Iterator[Watch]:
        """While the block runs, a deletion of key `key_id` sets `stop` and marks the
        yielded `Watch` revoked (at once if the key is known to be deleted already).
        An empty `key_id` (the pre-shared key) is watched for nothing."""
        watch = Watch(key_id, stop)
        if not key_id:
            yield watch
            return
        watches = self._watches.setdefault(key_id, set())
        watches.add(watch)
        if key_id in self._revoked:
            watch.revoked = True
            stop.set()
        try:
            yield watch
        finally:
            watches.discard(watch)
            if not watches and self._watches.get(key_id) is watches:
                del self._watches[key_id]
