"""upsert_daemon, touch_daemons and list_daemons: who has connected, and when."""

from __future__ import annotations

import dataclasses
from typing import Any

from provd.model import Daemon, DaemonRecord
from provd.store import Store

from .conftest import Clock

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

    async def test_identity_is_fixed_by_id(self, store: Store) -> None:
        """Organization, name and owner are the daemon's identity (its id derives from
        them): an upsert with the same id keeps the recorded ones."""
        first = daemon()
        await store.upsert_daemon(first)
        await store.upsert_daemon(dataclasses.replace(first, name="renamed", version="v9"))
        (record,) = await store.list_daemons()
        assert (record.daemon.name, record.daemon.version) == ("alpha", "v9")

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
        before = await store.list_daemons()
        await store.touch_daemons({"id-nobody": clock() + 500})
        await store.touch_daemons({})
        assert await store.list_daemons() == before


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
