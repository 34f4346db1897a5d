"""create_key, get_key, list_keys, delete_key and touch_keys: daemon keys, stored by
their hash, named uniquely, deleted at once, their last use only ever moving forward."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import trio

from provd.errors import AlreadyExists
from provd.model import DaemonKey
from provd.store import Store

from .conftest import Clock, StoreFactory

UNTAGGED = {"scope": "organization", "owner": ""}


def key(name: str = "ci", **overrides: Any) -> DaemonKey:
    fields: dict[str, Any] = {
        "id": f"id-{name}",
        "name": name,
        "organization": "org-a",
        "owner": "",
        "provisioners": ("echo", "terraform"),
        "tags": {**UNTAGGED, "os": "linux"},
        "secret_sha256": "ab" * 32,
        "created_at": 1_700_000_000_000,
    }
    fields.update(overrides)
    return DaemonKey(**fields)


class TestCreateKey:
    async def test_stores_every_field(self, store: Store) -> None:
        made = key(owner="u1", tags={"scope": "user", "owner": "u1"}, provisioners=())
        await store.create_key(made)
        assert await store.get_key(made.id) == made

    async def test_a_name_is_taken_once(self, store: Store) -> None:
        """Another key with the same name (in any organization) is refused and
        changes nothing; the id is new each time, so the name decides."""
        await store.create_key(key())
        with pytest.raises(AlreadyExists, match="name: a daemon key named 'ci'"):
            await store.create_key(key(id="id-other", organization="org-b"))
        assert await store.list_keys() == [key()]

    async def test_two_processes_creating_one_name_at_once(self, open_store: StoreFactory) -> None:
        """Two stores on one database (two processes or replicas) create keys of the
        same name at the same time: exactly one is stored, the other is told."""
        outcomes: list[str] = []

        async def create(store: Store, key_id: str) -> None:
            try:
                await store.create_key(key(id=key_id))
                outcomes.append(key_id)
            except AlreadyExists:
                outcomes.append("refused")

        async with open_store() as one, open_store() as other:
            async with trio.open_nursery() as nursery:
                for n in range(6):
                    nursery.start_soon(create, (one, other)[n % 2], f"id-{n}")
            (stored,) = await one.list_keys()
        assert outcomes.count("refused") == 5
        assert [o for o in outcomes if o != "refused"] == [stored.id]

    async def test_caller_cannot_change_the_stored_key(self, store: Store) -> None:
        tags = {**UNTAGGED}
        await store.create_key(key(tags=tags))
        tags["os"] = "plan9"
        got = await store.get_key("id-ci")
        assert got is not None and dict(got.tags) == UNTAGGED
        assert isinstance(got.tags, dict)
        got.tags["gpu"] = "yes"
        again = await store.get_key("id-ci")
        assert again is not None and dict(again.tags) == UNTAGGED


class TestGetKey:
    async def test_unknown_id_is_none(self, store: Store) -> None:
        await store.create_key(key())
        assert await store.get_key("id-nobody") is None
        assert await store.get_key("") is None

    async def test_survives_reopening(self, open_store: StoreFactory, clock: Clock) -> None:
        async with open_store() as store:
            await store.create_key(key())
            await store.touch_keys({"id-ci": clock() + 5})
        async with open_store() as store:
            assert await store.get_key("id-ci") == key(last_used_at=clock() + 5)


class TestListKeys:
    async def test_none(self, store: Store) -> None:
        assert await store.list_keys() == []

    async def test_by_organization_then_name(self, store: Store) -> None:
        made = [
            key("b", organization="org-b"),
            key("z"),
            key("B"),
            key("a"),
        ]
        for each in made:
            await store.create_key(each)
        listed = await store.list_keys()
        assert [(k.organization, k.name) for k in listed] == [
            ("org-a", "B"),
            ("org-a", "a"),
            ("org-a", "z"),
            ("org-b", "b"),
        ]


class TestDeleteKey:
    async def test_returns_the_key_and_forgets_it(self, store: Store) -> None:
        await store.create_key(key())
        await store.create_key(key("other"))
        assert await store.delete_key("ci") == key()
        assert await store.get_key("id-ci") is None
        assert [k.name for k in await store.list_keys()] == ["other"]

    async def test_unknown_name_is_none(self, store: Store) -> None:
        await store.create_key(key())
        assert await store.delete_key("nobody") is None
        assert await store.delete_key("id-ci") is None  # a name, not an id
        assert await store.list_keys() == [key()]

    async def test_the_name_can_be_used_again(self, store: Store) -> None:
        """A new key of a deleted key's name is another key: its own id and hash."""
        await store.create_key(key())
        await store.delete_key("ci")
        await store.create_key(key(id="id-new", secret_sha256="cd" * 32))
        assert await store.get_key("id-ci") is None
        new = await store.get_key("id-new")
        assert new is not None and new.secret_sha256 == "cd" * 32


class TestTouchKeys:
    async def test_records_last_use(self, store: Store, clock: Clock) -> None:
        await store.create_key(key("a"))
        await store.create_key(key("b"))
        await store.touch_keys({"id-a": clock() + 10, "id-b": clock() + 20})
        assert {k.id: k.last_used_at for k in await store.list_keys()} == {
            "id-a": clock() + 10,
            "id-b": clock() + 20,
        }

    async def test_never_moves_back_and_ignores_unknown_ids(
        self, open_store: StoreFactory, clock: Clock
    ) -> None:
        """Processes flushing the same key in any order, at once, leave the latest
        time; unknown (deleted) keys are skipped; nothing to write is no error."""
        times = [clock() + n * 7 % 50 for n in range(20)]
        async with open_store() as one, open_store() as other:
            await one.create_key(key())
            async with trio.open_nursery() as nursery:
                for n, used in enumerate(times):
                    writer = (one, other)[n % 2]
                    nursery.start_soon(writer.touch_keys, {"id-ci": used, "id-gone": used})
            await one.touch_keys({})
            stored = await other.get_key("id-ci")
        assert stored == dataclasses.replace(key(), last_used_at=max(times))
