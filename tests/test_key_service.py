"""`provd.keys.DaemonKeys` and `provd.key_revocations` on trio's virtual clock over the
in-memory store: secrets are checked against their hash, a key is read from the store
once per process, last-used times reach the store in batches (never per call), and a
deletion, or a key gone from the store, ends waits and refuses the key."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from provd.errors import Unauthenticated
from provd.key_revocations import KeyRevocations
from provd.keys import DaemonKeys, digest, key_tags, make_secret, parse_secret
from provd.model import Daemon, DaemonKey
from provd.store.memory import MemoryStore
from tests.virtual_clock import at, virtual_now

FLUSH_SECONDS = 5


class CountingStore(MemoryStore):
    """The in-memory store, counting the calls that matter here."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.get_key_calls = 0
        self.touches: list[dict[str, int]] = []

    async def get_key(self, key_id: str) -> DaemonKey | None:
        self.get_key_calls += 1
        return await super().get_key(key_id)

    async def touch_keys(self, last_used: Any) -> None:
        if last_used:
            self.touches.append(dict(last_used))
        await super().touch_keys(last_used)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore(now=virtual_now)


@pytest.fixture
def revocations() -> KeyRevocations:
    return KeyRevocations()


@pytest.fixture
def announced() -> list[str]:
    return []


@pytest.fixture
def keys(store: CountingStore, revocations: KeyRevocations, announced: list[str]) -> DaemonKeys:
    def announce(key_id: str) -> None:  # what Wakeups.key_revoked does, minus the relay
        announced.append(key_id)
        revocations.revoke(key_id)

    return DaemonKeys(
        store,
        revocations,
        announce_revoked=announce,
        flush_interval=FLUSH_SECONDS,
        now=virtual_now,
    )


def daemon_of(key: DaemonKey) -> Daemon:
    return Daemon(
        f"d-{key.id}", key.organization, "d", key.owner, ("echo",), key.tags, key_id=key.id
    )


def test_the_secret_format_and_its_hash() -> None:
    secret = make_secret("0123abcd")
    assert secret.startswith("provd_key_0123abcd_") and len(secret) == 19 + 43
    parsed = parse_secret(secret)
    assert parsed is not None and parsed[0] == "0123abcd"
    assert digest(parsed[1]) != digest(parsed[1] + "x") and len(digest(parsed[1])) == 64
    for malformed in ("", "provd_key_", "provd_key_abc", "provd_key__x", "key_abc_x"):
        assert parse_secret(malformed) is None, malformed
    assert key_tags({"os": "linux"}, "") == {"os": "linux", "scope": "organization", "owner": ""}
    assert key_tags({"os": "linux"}, "alice") == {"os": "linux", "scope": "user", "owner": "alice"}


async def test_a_key_is_read_once_and_checked_every_call(
    keys: DaemonKeys, store: CountingStore
) -> None:
    key, secret = await keys.create("ci", "org-a", tags={"os": "linux"}, provisioners=["echo"])
    stored = await store.get_key(key.id)
    assert stored == key and stored.secret_sha256 != secret
    store.get_key_calls = 0
    for _ in range(5):
        assert await keys.authenticate(secret) == key
    assert store.get_key_calls == 1
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    with pytest.raises(Unauthenticated, match="with this secret"):
        await keys.authenticate(wrong)


async def test_last_use_is_written_per_flush_not_per_call(
    keys: DaemonKeys, store: CountingStore, autojump_clock: MockClock
) -> None:
    key, secret = await keys.create("ci", "org-a")
    async with trio.open_nursery() as nursery:
        await nursery.start(keys.run)
        await trio.sleep_until(1)
        for _ in range(10):
            await keys.authenticate(secret)
            await trio.sleep(0.1)
        # Before the flush the store has nothing, but the listing shows the last use.
        assert (await store.get_key(key.id)).last_used_at == 0  # type: ignore[union-attr]
        (listed,) = await keys.list()
        assert listed.last_used_at == at(1.9)
        await trio.sleep_until(FLUSH_SECONDS + 0.5)
        assert store.touches == [{key.id: at(1.9)}]
        await trio.sleep_until(3 * FLUSH_SECONDS)
        assert len(store.touches) == 1  # nothing new: nothing written
        await keys.authenticate(secret)
        nursery.cancel_scope.cancel()
    assert store.touches[-1] == {key.id: at(3 * FLUSH_SECONDS)}  # flushed on the way out


async def test_deleting_announces_ends_waits_and_refuses(
    keys: DaemonKeys, revocations: KeyRevocations, announced: list[str]
) -> None:
    key, secret = await keys.create("ci", "org-a")
    await keys.authenticate(secret)
    stop = trio.Event()
    with keys.watch(daemon_of(key), stop) as watch:
        assert await keys.delete("ci") is not None
        assert stop.is_set() and watch.revoked
        with pytest.raises(Unauthenticated, match="was deleted"):
            watch.check()
    assert announced == [key.id]
    assert await keys.delete("ci") is None and announced == [key.id]
    with pytest.raises(Unauthenticated, match="was deleted"):
        await keys.authenticate(secret)
    # A wait that starts after the revocation is revoked as it starts.
    late = trio.Event()
    with revocations.watch(key.id, late) as watch:
        assert late.is_set() and watch.revoked
    assert revocations.watched_keys() == []


async def test_a_key_gone_from_the_store_is_found_by_a_recheck(
    keys: DaemonKeys, store: CountingStore, announced: list[str]
) -> None:
    """Deleted by another process whose wake-up was lost: the key is still in memory
    here until `recheck` (after a rescan, and every flush interval) finds it gone; a
    job about to be handed over reads the store anyway (`check_current`)."""
    key, secret = await keys.create("ci", "org-a")
    kept, kept_secret = await keys.create("kept", "org-a")
    await keys.authenticate(secret)
    await keys.authenticate(kept_secret)
    await store.delete_key("ci")  # behind this process's back
    assert await keys.authenticate(secret) == key  # in memory: not known yet
    stop, kept_stop = trio.Event(), trio.Event()
    with keys.watch(daemon_of(key), stop) as watch, keys.watch(daemon_of(kept), kept_stop):
        with pytest.raises(Unauthenticated):
            await keys.check_current(watch)
        assert stop.is_set()
    await keys.recheck()
    with pytest.raises(Unauthenticated, match="was deleted"):
        await keys.authenticate(secret)
    assert await keys.authenticate(kept_secret) == kept
    assert not kept_stop.is_set() and announced == []


async def test_the_pre_shared_key_is_never_revoked(keys: DaemonKeys) -> None:
    stop = trio.Event()
    psk_daemon = Daemon("d", "org-a", "d", "", ("echo",), {"scope": "organization", "owner": ""})
    with keys.watch(psk_daemon, stop) as watch:
        await keys.check_current(watch)
        await keys.recheck()
    assert not stop.is_set() and not watch.revoked
