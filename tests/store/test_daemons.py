"""upsert_daemon, touch_daemons, list_daemons and daemon_presence: who has
connected, when, and whether some process holds a stream open for it."""

from __future__ import annotations

import dataclasses
import random
from functools import partial
from typing import Any

import pytest
import trio

from provd.model import Daemon, DaemonRecord
from provd.store import DaemonPresence, Store

from .conftest import Clock, StoreFactory

UNTAGGED = {"scope": "organization", "owner": ""}


def daemon(name: str = "alpha", **overrides: Any) -> Daemon:
    fields: dict[str, Any] = {
        "id": f"id-{name}",
        "organization": "org-a",
        "name": name,
        "owner": "",
        "provisioners": ("echo", "terraform"),
        "tags": dict(UNTAGGED),
        "version": "v1.2.3",
        "api_version": "1.1",
    }
    fields.update(overrides)
    return Daemon(**fields)


class TestUpsertDaemon:
    async def test_records_a_new_daemon_seen_now(self, store: Store, clock: Clock) -> None:
        d = daemon(tags={"scope": "user", "owner": "u1", "gpu": "yes"}, owner="u1")
        await store.upsert_daemon(d)
        assert await store.list_daemons() == [DaemonRecord(d, clock(), clock())]

    async def test_again_updates_capabilities_and_last_seen(
        self, store: Store, clock: Clock
    ) -> None:
        """A known daemon gets its new provisioners, tags and versions and is seen now;
        it keeps when it was first recorded."""
        first = daemon()
        await store.upsert_daemon(first)
        created = clock()
        now = clock.advance()
        changed = dataclasses.replace(
            first,
            provisioners=("echo",),
            tags={**UNTAGGED, "region": "eu"},
            version="v2",
            api_version="1.2",
        )
        await store.upsert_daemon(changed)
        assert await store.list_daemons() == [DaemonRecord(changed, created, now)]

    async def test_never_moves_last_seen_back(self, store: Store, clock: Clock) -> None:
        """An upsert by a process whose clock is behind (another machine's) keeps the
        later last-seen time already stored."""
        await store.upsert_daemon(daemon())
        await store.touch_daemons({"id-alpha": clock() + 5000})
        clock.advance(1000)
        await store.upsert_daemon(daemon(version="v2"))
        (record,) = await store.list_daemons()
        assert (record.daemon.version, record.last_seen_at) == ("v2", clock() + 4000)

    async def test_identity_is_fixed_by_id(self, store: Store) -> None:
        """Organization, name and owner are the daemon's identity (its id derives from
        them): an upsert with the same id keeps the recorded ones."""
        first = daemon()
        await store.upsert_daemon(first)
        await store.upsert_daemon(dataclasses.replace(first, name="renamed", version="v9"))
        (record,) = await store.list_daemons()
        assert (record.daemon.name, record.daemon.version) == ("alpha", "v9")

    async def test_a_name_is_unique_within_its_key(self, store: Store) -> None:
        """Daemons of one organization, name and owner but different keys (or the
        pre-shared key) are different daemons, each with its key; the same key and name
        under another id is refused."""
        on_psk = daemon()
        on_key = daemon(id="id-alpha-k1", key_id="k1")
        on_other_key = daemon(id="id-alpha-k2", key_id="k2")
        for each in (on_psk, on_key, on_other_key):
            await store.upsert_daemon(each)
        listed = [r.daemon for r in await store.list_daemons()]
        assert listed == [on_psk, on_key, on_other_key]  # ordered by key last
        with pytest.raises(ValueError):
            await store.upsert_daemon(daemon(id="id-impostor", key_id="k1"))

    async def test_caller_cannot_change_the_record(self, store: Store) -> None:
        tags = dict(UNTAGGED)
        await store.upsert_daemon(daemon(tags=tags))
        tags["region"] = "eu"
        (record,) = await store.list_daemons()
        assert isinstance(record.daemon.tags, dict)
        record.daemon.tags["gpu"] = "yes"
        (again,) = await store.list_daemons()
        assert dict(again.daemon.tags) == UNTAGGED


class TestTouchDaemons:
    async def test_records_when_daemons_were_last_seen(self, store: Store, clock: Clock) -> None:
        await store.upsert_daemon(daemon("a"))
        await store.upsert_daemon(daemon("b"))
        created = clock()
        await store.touch_daemons({"id-a": created + 500, "id-b": created + 900})
        records = {r.daemon.id: r for r in await store.list_daemons()}
        assert records["id-a"].last_seen_at == created + 500
        assert records["id-b"].last_seen_at == created + 900
        assert records["id-a"].created_at == created

    async def test_never_moves_last_seen_back(self, store: Store, clock: Clock) -> None:
        """A stale report (an older time than recorded) changes nothing."""
        await store.upsert_daemon(daemon("a"))
        await store.touch_daemons({"id-a": clock() + 500})
        await store.touch_daemons({"id-a": clock() + 100})
        (record,) = await store.list_daemons()
        assert record.last_seen_at == clock() + 500

    async def test_unknown_daemons_are_ignored(self, store: Store, clock: Clock) -> None:
        await store.upsert_daemon(daemon("a"))
        before = await store.daemon_presence()
        await store.touch_daemons({"id-nobody": clock() + 500})
        await store.touch_daemons({}, connected_until={"id-nobody": clock() + 500})
        await store.touch_daemons({})
        await store.touch_daemons({}, connected_until={})
        assert await store.daemon_presence() == before

    async def test_records_stream_leases_that_only_move_forward(
        self, store: Store, clock: Clock
    ) -> None:
        """A lease is stored beside last-seen (either may come alone) and, like it, is
        never moved back by an older one."""
        await store.upsert_daemon(daemon("a"))
        await store.upsert_daemon(daemon("b"))
        now = clock()
        await store.touch_daemons({"id-a": now + 100}, connected_until={"id-a": now + 15_000})
        await store.touch_daemons({}, connected_until={"id-a": now + 9_000, "id-b": now + 7_000})
        await store.touch_daemons({"id-a": now + 50, "id-b": now + 200})
        assert await leases(store) == {
            "id-a": (now + 100, now + 15_000),
            "id-b": (now + 200, now + 7_000),
        }

    async def test_processes_reporting_at_once_never_move_times_back(
        self, open_store: StoreFactory, clock: Clock
    ) -> None:
        """Two stores on one database (two processes) each flush their own view of the
        same daemons, many times and all at once, older and newer times mixed: what is
        stored in the end is the latest time anyone reported, for each daemon."""
        pick = random.Random(7)
        now = clock()
        reports = [
            (
                {d: now + pick.randrange(10_000) for d in ("id-a", "id-b")},
                {d: now + pick.randrange(10_000) for d in ("id-a", "id-b")},
            )
            for _ in range(24)
        ]
        async with open_store() as one, open_store() as other:
            await one.upsert_daemon(daemon("a"))
            await one.upsert_daemon(daemon("b"))
            async with trio.open_nursery() as nursery:
                for n, (seen, until) in enumerate(reports):
                    writer = (one, other)[n % 2]
                    nursery.start_soon(partial(writer.touch_daemons, seen, connected_until=until))
            expected = {
                d: (max(r[0][d] for r in reports), max(r[1][d] for r in reports))
                for d in ("id-a", "id-b")
            }
            assert await leases(one) == await leases(other) == expected


class TestDaemonPresence:
    async def test_none_recorded(self, store: Store) -> None:
        assert await store.daemon_presence() == []

    async def test_every_daemon_with_its_lease_in_list_order(
        self, store: Store, clock: Clock
    ) -> None:
        """The records are `list_daemons`' own, in its order; a daemon no process ever
        leased has 0."""
        for name in ("z", "b", "a"):
            await store.upsert_daemon(daemon(name))
        await store.touch_daemons({}, connected_until={"id-b": clock() + 15_000})
        records = await store.list_daemons()
        assert await store.daemon_presence() == [
            DaemonPresence(record, clock() + 15_000 if record.daemon.id == "id-b" else 0)
            for record in records
        ]

    async def test_an_upsert_keeps_the_lease(self, store: Store, clock: Clock) -> None:
        """A daemon calling in again with new capabilities keeps its stream lease."""
        await store.upsert_daemon(daemon())
        await store.touch_daemons({}, connected_until={"id-alpha": clock() + 15_000})
        clock.advance()
        await store.upsert_daemon(daemon(version="v2"))
        (presence,) = await store.daemon_presence()
        assert presence.connected_until == clock() + 14_000
        assert presence.record.daemon.version == "v2"


class TestListDaemons:
    async def test_none_recorded(self, store: Store) -> None:
        assert await store.list_daemons() == []

    async def test_ordered_by_organization_name_and_owner(self, store: Store) -> None:
        recorded = [
            daemon("b", organization="org-b"),
            daemon("z"),
            daemon("a", id="a-u2", owner="u2", tags={"scope": "user", "owner": "u2"}),
            daemon("a"),
            daemon("a", id="a-u1", owner="u1", tags={"scope": "user", "owner": "u1"}),
        ]
        for d in recorded:
            await store.upsert_daemon(d)
        listed = [r.daemon for r in await store.list_daemons()]
        assert [(d.organization, d.name, d.owner) for d in listed] == [
            ("org-a", "a", ""),
            ("org-a", "a", "u1"),
            ("org-a", "a", "u2"),
            ("org-a", "z", ""),
            ("org-b", "b", ""),
        ]
        assert sorted(listed, key=lambda d: d.id) == sorted(recorded, key=lambda d: d.id)


async def leases(store: Store) -> dict[str, tuple[int, int]]:
    """Daemon id -> (last seen, connected until), as stored."""
    return {
        p.record.daemon.id: (p.record.last_seen_at, p.connected_until)
        for p in await store.daemon_presence()
    }
