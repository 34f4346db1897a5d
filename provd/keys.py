"""Daemon keys: scoped, revocable credentials for provisioner daemons (docs/keys.md).

A key's secret is `provd_key_<key id>_<random>` and is shown once, when the key is
made; the store keeps the SHA-256 of the random part. A daemon presents the whole
secret (`Provd-Daemon-Key`); `authenticate` finds the key by its id and compares the
digests in constant time.

Each process keeps the keys its daemons used in memory: reading the key from the store
on every call cost about 0.5 ms of an UpdateJob's 3.5 ms on SQLite (a reader-thread
hop under load), and a read takes about 0.8 ms on PostgreSQL. A deletion reaches every
process at once through the wake-up path instead: `delete` announces it
(`Wakeups.key_revoked`, which calls `KeyRevocations.revoke` here and in every other
process), and a revoked id is
refused before any cached key is looked at. Key ids are never reused, so a cached key
can only ever become deleted, never different. What a lost wake-up leaves behind,
`recheck` finds: it runs after every rescan (which a relay owes a peer it could not
reach) and every flush interval, reads the stored keys and revokes the cached and
watched ones that are gone. And right before a job is handed to a key's daemon the
key is read from the store (`check_current`), so no job goes to a key whose deletion
has committed, wherever the wake-up is.

Deleting a key also ends the acquire streams its daemons hold open, on every process,
through the same revocation.

When a key was last used is kept in memory and written every flush interval (a call
never writes), as the registry does with daemons' last-seen times.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import trio

from provd.errors import Unauthenticated, tolerate_store_outage
from provd.key_revocations import KeyRevocations, Watch, revoked_message
from provd.model import SCOPE_USER, Daemon, DaemonKey, normalize_tags, now_ms
from provd.protocol import KEY_PREFIX
from provd.store import Store

logger = logging.getLogger(__name__)

KEY_ID_BYTES = 8  # 16 hex digits
SECRET_BYTES = 32  # secrets.token_urlsafe: 43 characters


def make_secret(key_id: str) -> str:
    """A new secret for key `key_id`: `provd_key_<key id>_<random>`."""
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def parse_secret(presented: str) -> tuple[str, str] | None:
    """(key id, random part) of a presented secret; None if it is not one."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, sep, random_part = presented[len(KEY_PREFIX) :].partition("_")
    if not sep or not key_id or not random_part:
        return None
    return key_id, random_part


def digest(random_part: str) -> str:
    """What the store keeps of a secret: the SHA-256 of its random part, in hex."""
    return hashlib.sha256(random_part.encode()).hexdigest()


def key_tags(tags: Mapping[str, str], owner: str) -> dict[str, str]:
    """The tags a key's daemons have: `tags` with the scope and owner that `owner`
    gives (user scope for an owner, organization scope without one)."""
    if owner:
        return normalize_tags({**tags, "scope": SCOPE_USER, "owner": owner})
    return normalize_tags({k: v for k, v in tags.items() if k not in ("scope", "owner")})


class DaemonKeys:
    """Makes, lists, deletes and checks daemon keys. Run `run` in a nursery to write
    last-used times and re-check the keys held here every flush interval."""

    def __init__(
        self,
        store: Store,
        revocations: KeyRevocations,
        *,
        announce_revoked: Callable[[str], None],
        flush_interval: float = 5.0,
        now: Callable[[], int] = now_ms,
    ) -> None:
        """`announce_revoked(key_id)` ends the key's streams in every process
        (`Wakeups.key_revoked`, which calls `revocations.revoke` here)."""
        self._store = store
        self._revocations = revocations
        self._announce_revoked = announce_revoked
        self._flush_interval = flush_interval
        self._now = now
        self._last_used: dict[str, int] = {}
        self._dirty: dict[str, int] = {}
        # Keys by id, as read from the store when a daemon first presented them.
        self._cached: dict[str, DaemonKey] = {}

    # -- the admin side ----------------------------------------------------------------

    async def create(
        self,
        name: str,
        organization: str,
        *,
        owner: str = "",
        provisioners: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
    ) -> tuple[DaemonKey, str]:
        """Make and store a key; returns it and its secret, which is not kept.
        Raises `AlreadyExists` if a key has this name."""
        key_id = secrets.token_hex(KEY_ID_BYTES)
        secret = make_secret(key_id)
        parsed = parse_secret(secret)
        assert parsed is not None
        key = DaemonKey(
            id=key_id,
            name=name,
            organization=organization,
            owner=owner,
            provisioners=tuple(dict.fromkeys(provisioners)),
            tags=key_tags(tags or {}, owner),
            secret_sha256=digest(parsed[1]),
            created_at=self._now(),
        )
        await self._store.create_key(key)
        return key, secret

    async def list(self) -> list[DaemonKey]:
        """Every key, with the latest use this process saw that is not written yet."""
        keys = await self._store.list_keys()
        return [self._with_last_use(key) for key in keys]

    async def delete(self, name: str) -> DaemonKey | None:
        """Delete the key named `name` (None if there is none): every later call with
        it is refused, and the acquire streams of its daemons end, on every process."""
        deleted = await self._store.delete_key(name)
        if deleted is not None:
            self._forget(deleted.id)
            self._announce_revoked(deleted.id)
        return deleted

    # -- the daemon side ---------------------------------------------------------------

    async def authenticate(self, presented: str) -> DaemonKey:
        """The key whose secret `presented` is; `Unauthenticated` if there is none
        (malformed, unknown, deleted, or a wrong secret)."""
        parsed = parse_secret(presented)
        if parsed is None:
            raise Unauthenticated(
                f"Provd-Daemon-Key: not a daemon key; expected {KEY_PREFIX}<id>_<secret>,"
                " as 'provd keys create' prints it"
            )
        key_id, random_part = parsed
        key = self._cached.get(key_id)
        if key is None and not self._revocations.is_revoked(key_id):
            key = await self._store.get_key(key_id)
            if key is not None:
                self._cached[key_id] = key
        if self._revocations.is_revoked(key_id):  # also while the read above ran
            self._forget(key_id)
            raise Unauthenticated(revoked_message(key_id))
        if key is None or not hmac.compare_digest(key.secret_sha256, digest(random_part)):
            raise Unauthenticated(
                f"Provd-Daemon-Key: no daemon key {key_id[:40]!r} with this secret: it was"
                " deleted, never made, or the secret is wrong"
            )
        now = self._now()
        self._last_used[key.id] = self._dirty[key.id] = now
        return key

    @contextmanager
    def watch(self, daemon: Daemon, stop: trio.Event) -> Iterator[Watch]:
        """While the block runs, deleting `daemon`'s key sets `stop` and marks the
        watch revoked (`KeyRevocations.watch`)."""
        with self._revocations.watch(daemon.key_id, stop) as watch:
            yield watch

    async def check_current(self, watch: Watch) -> None:
        """Raise `Unauthenticated` unless the watched key still exists: read from the
        store, right before a job is handed to one of its daemons, so that a key
        deleted on another process whose wake-up has not arrived yet gets no job."""
        watch.check()
        if not watch.key_id:
            return
        if await self._store.get_key(watch.key_id) is None:
            self._revocations.revoke(watch.key_id)
            self._forget(watch.key_id)
            watch.check()

    async def recheck(self) -> None:
        """Revoke the keys cached or watched here that are no longer stored: what a
        revocation that never arrived (a lost wake-up) leaves behind. One read, and
        only if this process holds any key."""
        held = {*self._cached, *self._revocations.watched_keys()}
        if not held:
            return
        stored = {key.id for key in await self._store.list_keys()}
        for key_id in held - stored:
            if not self._revocations.is_revoked(key_id):
                logger.info("daemon key %s is gone from the store: refusing it here", key_id)
            self._revocations.revoke(key_id)
            self._forget(key_id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every flush interval, write the last-used times gathered since the last
        flush and re-check the keys held here (`recheck`); flush once more on exit."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self._flush_interval)
                with tolerate_store_outage(logger, "the daemon keys"):
                    await self._flush()
                    await self.recheck()
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self._flush()
                except Exception as error:
                    logger.warning("daemon keys' last-used times were not saved at exit: %s", error)

    async def _flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        try:
            await self._store.touch_keys(dirty)
        except BaseException:
            self._dirty = {**dirty, **self._dirty}  # newer uses win
            raise

    def _forget(self, key_id: str) -> None:
        """Drop what this process keeps of a deleted key (its revocation stays)."""
        self._cached.pop(key_id, None)
        self._last_used.pop(key_id, None)
        self._dirty.pop(key_id, None)

    def _with_last_use(self, key: DaemonKey) -> DaemonKey:
        used = self._last_used.get(key.id, 0)
        return dataclasses.replace(key, last_used_at=used) if used > key.last_used_at else key
