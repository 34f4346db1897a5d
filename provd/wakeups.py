"""One wake-up path for every process that serves the same store.

What the service layer reacts to comes in three kinds: "a job is available in queue Q"
(the schedulers must look), "job J changed" (its log followers must re-read) and
"daemon key K was deleted" (the acquire streams its daemons hold open must end).
`Wakeups` delivers each one in this process first, then hands it to a `Relay`, which
carries it to the other processes sharing the store, where it is delivered locally
(and never relayed again). The service layer sees only `Wakeups.job_available` and a
`JobEvents` whose `notify` relays; it does not know which backend carries them.

Relays:

- `DatagramRelay` (SQLite): every process binds a unix datagram socket in a private
  directory beside the database (`notify_directory`) and sends each batch of
  wake-ups to every other socket there. A wake-up costs one `sendto` per peer and
  nothing while idle.
- `PostgresRelay` (PostgreSQL): LISTEN on one channel on a dedicated connection,
  NOTIFY it from another; the encoding below fits a NOTIFY payload. The store brings
  it (`PostgresStore.wakeup_relay`, see `RelayProvider`), so nothing above the relay
  knows the backend.

A relay may lose a wake-up (a full receive queue): it then owes that peer a
`Rescan`, sent once there is room, and the schedulers' backup poll and the log
followers' poll remain the safety net.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import secrets
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import trio

from provd.events import JobEvents
from provd.model import Queue
from provd.store import Store

if TYPE_CHECKING:
    import psycopg

    _PgConnection: TypeAlias = psycopg.Connection[tuple[Any, ...]]

logger = logging.getLogger(__name__)


# -- what travels ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobAvailable:
    """A job is pending in `queue` (created, or given back)."""

    queue: Queue


@dataclass(frozen=True, slots=True)
class JobChanged:
    """Job `job_id` changed (logs, state): its followers re-read."""

    job_id: str


@dataclass(frozen=True, slots=True)
class KeyRevoked:
    """Daemon key `key_id` was deleted: end the acquire streams of its daemons."""

    key_id: str


@dataclass(frozen=True, slots=True)
class Rescan:
    """Something changed that did not fit a message: re-read everything."""


@dataclass(frozen=True, slots=True)
class _Hello:
    """A relay-level greeting: the sender has just joined (never delivered)."""


Wakeup = JobAvailable | JobChanged | KeyRevoked | Rescan

MAGIC = b"provd-wakeups/1\n"
# Safe on every unix (macOS caps local datagrams at 2048 bytes) and within a
# PostgreSQL NOTIFY payload (8000 bytes).
MAX_MESSAGE_BYTES = 2048


def _item(wakeup: Wakeup | _Hello) -> list[object]:
    if isinstance(wakeup, JobAvailable):
        q = wakeup.queue
        return ["q", q.organization, q.provisioner, dict(q.tags)]
    if isinstance(wakeup, JobChanged):
        return ["j", wakeup.job_id]
    if isinstance(wakeup, KeyRevoked):
        return ["k", wakeup.key_id]
    if isinstance(wakeup, Rescan):
        return ["*"]
    return ["h"]


def _dump(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


RESCAN_MESSAGE = MAGIC + _dump([_item(Rescan())])
_ROOM = MAX_MESSAGE_BYTES - len(MAGIC) - 2  # the brackets


def _part(wakeup: Wakeup | _Hello) -> bytes:
    """One wake-up's encoding; one too long to fit a message alone (a queue with very
    long tags) becomes a `Rescan`."""
    part = _dump(_item(wakeup))
    return part if len(part) <= _ROOM else _dump(_item(Rescan()))


# Kinds added after `provd-wakeups/1` first shipped. A peer older than a kind refuses a
# message holding it whole (`decode`), so these travel in messages of their own: such
# a peer then loses only what it could not act on, never a job's wake-up beside it.
_LATER_KINDS = (b'["k",',)


def _is_later_kind(part: bytes) -> bool:
    return part.startswith(_LATER_KINDS)


def _pack(parts: Sequence[bytes]) -> list[bytes]:
    """Encoded wake-ups as few messages as fit in `MAX_MESSAGE_BYTES` each, in order;
    those of later kinds (`_LATER_KINDS`) in messages apart, after the others."""
    later = [part for part in parts if _is_later_kind(part)]
    if later:
        first = [part for part in parts if not _is_later_kind(part)]
        return _pack_in_order(first) + _pack_in_order(later)
    return _pack_in_order(parts)


def _pack_in_order(parts: Sequence[bytes]) -> list[bytes]:
    messages: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for part in parts:
        if batch and size + 1 + len(part) > _ROOM:
            messages.append(MAGIC + b"[" + b",".join(batch) + b"]")
            batch, size = [], 0
        size += len(part) + (1 if batch else 0)
        batch.append(part)
    if batch:
        messages.append(MAGIC + b"[" + b",".join(batch) + b"]")
    return messages


def encode(wakeups: Sequence[Wakeup | _Hello]) -> list[bytes]:
    """`wakeups` as few messages as fit in `MAX_MESSAGE_BYTES` each, in order."""
    return _pack([_part(wakeup) for wakeup in wakeups])


class Malformed(ValueError):
    """A message that is not a batch of wake-ups."""


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise Malformed(f"expected a string, got {type(value).__name__}")
    return value


def decode(message: bytes) -> list[Wakeup | _Hello]:
    """The wake-ups in `message`; raises `Malformed` (for all of it) if any is not one."""
    if not message.startswith(MAGIC):
        raise Malformed("no provd-wakeups header")
    try:
        items = json.loads(message[len(MAGIC) :])
    except (ValueError, UnicodeDecodeError) as error:
        raise Malformed(f"not JSON: {error}") from None
    if not isinstance(items, list):
        raise Malformed("not a list")
    wakeups: list[Wakeup | _Hello] = []
    for item in items:
        if not isinstance(item, list) or not item:
            raise Malformed(f"not a wake-up: {item!r:.80}")
        match item:
            case ["q", organization, provisioner, dict() as tags]:
                tag_items = {_text(k): _text(v) for k, v in tags.items()}
                wakeups.append(
                    JobAvailable(Queue(_text(organization), _text(provisioner), tag_items))
                )
            case ["j", job_id]:
                wakeups.append(JobChanged(_text(job_id)))
            case ["r", _]:
                # "Job given back", sent by provd before 2026-12 (now a "q" and a "j"):
                # a rescan finds the job in its queue.
                wakeups.append(Rescan())
            case ["k", key_id]:
                wakeups.append(KeyRevoked(_text(key_id)))
            case ["*"]:
                wakeups.append(Rescan())
            case ["h"]:
                wakeups.append(_Hello())
            case _:
                raise Malformed(f"not a wake-up: {item!r:.80}")
    return wakeups


# -- the relay interface -------------------------------------------------------------


Deliver = Callable[[Sequence[Wakeup]], None]


class Relay(Protocol):
    """Carries wake-ups between the processes that share one store."""

    def send(self, wakeup: Wakeup) -> None:
        """Queue `wakeup` for every other process; returns at once, never raises."""
        ...

    async def run(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Join the other processes, then `deliver` what they send until cancelled.
        Sends before `run` started, or after it ended, are dropped."""
        ...


@runtime_checkable
class RelayProvider(Protocol):
    """A store that carries its own wake-ups between processes (PostgreSQL); a store
    without one (SQLite) gets a `DatagramRelay` beside its file."""

    def wakeup_relay(self) -> Relay: ...


# -- the SQLite relay: unix datagrams ------------------------------------------------

# sun_path holds 108 bytes with the terminating NUL.
SUN_PATH_MAX = 107
# "<pid>-<8 hex>.sock": a pid has at most 7 digits on Linux (pid_max 4194304).
SOCKET_NAME_MAX = 7 + 1 + 8 + len(".sock")
SOCKET_SUFFIX = ".sock"


def notify_directory(db_path: Path) -> Path:
    """Where the processes serving `db_path` meet: `<db>-notify/` beside the database
    (by its real path, so every spelling of it agrees), or, if a socket's path there
    would not fit in sun_path, `provd-notify-<hash of the real path>` under
    $XDG_RUNTIME_DIR or /tmp."""
    real = os.path.realpath(db_path)
    beside = Path(real + "-notify")
    if len(os.fsencode(beside)) + 1 + SOCKET_NAME_MAX <= SUN_PATH_MAX:
        return beside
    name = "provd-notify-" + hashlib.sha256(os.fsencode(real)).hexdigest()[:32]
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    for base in (runtime, "/tmp"):
        candidate = Path(base) / name
        if base and len(os.fsencode(candidate)) + 1 + SOCKET_NAME_MAX <= SUN_PATH_MAX:
            return candidate
    raise OSError(
        errno.ENAMETOOLONG, f"no short enough directory for the wake-up sockets of {db_path}"
    )


def _private_directory(directory: Path) -> None:
    """Create `directory` 0700, or check that an existing one is ours and private.
    Raises OSError (PermissionError if it is someone else's or open to others)."""
    try:
        os.mkdir(directory, 0o700)
        os.chmod(directory, 0o700)  # exactly, whatever the umask
        return
    except FileExistsError:
        pass
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{directory} is not a directory")
    if info.st_uid != os.geteuid():
        raise PermissionError(f"{directory} belongs to another user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise PermissionError(
            f"{directory} is open to others (mode {stat.S_IMODE(info.st_mode):o}); make it 0700"
        )


@dataclass(frozen=True, slots=True)
class RelayStatistics:
    peers: int
    messages_sent: int
    # Messages a full receive queue refused (each leaves that peer owed a Rescan).
    messages_dropped: int
    # Sockets of processes that had gone away, removed.
    dead_peers_removed: int
    messages_received: int
    messages_malformed: int


class DatagramRelay:
    """Wake-ups among the processes serving one SQLite file, over unix datagrams.

    Each process binds `<directory>/<pid>-<random>.sock`. Sends are batched by one task
    (everything queued since its last turn goes out together, deduplicated), with a
    non-blocking `sendto` to each peer: a peer whose queue is full misses the batch and
    is sent a `Rescan` as soon as it has room (retried every `retry_seconds`). A send
    refused because nobody listens any more removes that socket file. The peer list is
    the directory, re-read at most every `peer_refresh_seconds` when sending, and a
    process that joins greets the others so they know it at once.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        retry_seconds: float = 0.01,
        peer_refresh_seconds: float = 1.0,
    ) -> None:
        self._db_path = db_path
        self.directory: Path | None = None  # known once `run` has started
        self._retry_seconds = retry_seconds
        self._peer_refresh_seconds = peer_refresh_seconds
        self._sock: socket.socket | None = None
        self.path: str = ""
        self._peers: set[str] = set()
        self._peers_read_at = -math.inf
        self._owed: set[str] = set()  # peers that missed a batch: they get a Rescan
        # Encoded wake-ups to send: ordered, and each one once.
        self._pending: dict[bytes, None] = {}
        self._ready = trio.Event()
        self._sent = self._dropped = self._removed = self._received = self._malformed = 0

    def send(self, wakeup: Wakeup) -> None:
        if self._sock is None or self._alone():
            return
        self._pending[_part(wakeup)] = None
        self._ready.set()

    def _alone(self) -> bool:
        """No other process to tell, by a peer list read within `peer_refresh_seconds`
        (a process that joins greets this one at once): a single `provd serve` then
        pays nothing per wake-up. A stale list is refreshed by the next flush."""
        return (
            not self._peers
            and not self._owed
            and time.monotonic() - self._peers_read_at < self._peer_refresh_seconds
        )

    def statistics(self) -> RelayStatistics:
        return RelayStatistics(
            peers=len(self._peers),
            messages_sent=self._sent,
            messages_dropped=self._dropped,
            dead_peers_removed=self._removed,
            messages_received=self._received,
            messages_malformed=self._malformed,
        )

    async def run(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        directory = self.directory = notify_directory(self._db_path)
        _private_directory(directory)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = str(directory / f"{os.getpid()}-{secrets.token_hex(4)}{SOCKET_SUFFIX}")
        try:
            sock.setblocking(False)
            sock.bind(path)
            self._sock, self.path = sock, path
            self._read_peers()
            if self._peers:
                logger.info(
                    "%d other provd process(es) serve this database; wake-ups reach them"
                    " through %s",
                    len(self._peers),
                    directory,
                )
            self._pending[_part(_Hello())] = None
            self._ready.set()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flush_forever)
                task_status.started()
                await self._receive_forever(sock, deliver)
        finally:
            self._sock = None
            self._pending.clear()
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)

    # -- receiving ---------------------------------------------------------------

    async def _receive_forever(self, sock: socket.socket, deliver: Deliver) -> None:
        while True:
            await trio.lowlevel.wait_readable(sock)
            for _ in range(64):  # then let others run
                try:
                    message, sender = sock.recvfrom(MAX_MESSAGE_BYTES + 1)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as error:
                    logger.debug("reading a wake-up failed: %s", error)
                    break
                self._received += 1
                try:
                    if len(message) > MAX_MESSAGE_BYTES:
                        raise Malformed(f"over {MAX_MESSAGE_BYTES} bytes")
                    items = decode(message)
                except Malformed as error:
                    self._malformed += 1
                    logger.debug("ignored a malformed wake-up from %r: %s", sender, error)
                    continue
                if isinstance(sender, str) and sender and sender != self.path:
                    self._peers.add(sender)
                wakeups = [w for w in items if not isinstance(w, _Hello)]
                if wakeups:
                    deliver(wakeups)

    # -- sending -----------------------------------------------------------------

    async def _flush_forever(self) -> None:
        while True:
            with trio.move_on_after(self._retry_seconds if self._owed else math.inf):
                await self._ready.wait()
            self._ready = trio.Event()
            batch, self._pending = list(self._pending), {}
            self._broadcast(_pack(batch))

    def _broadcast(self, messages: list[bytes]) -> None:
        if time.monotonic() - self._peers_read_at > self._peer_refresh_seconds:
            self._read_peers()
        for peer in list(self._peers):
            owed = peer in self._owed
            for message in [RESCAN_MESSAGE] if owed else messages:
                if not self._send_one(peer, message):
                    break
            else:
                self._owed.discard(peer)

    def _send_one(self, peer: str, message: bytes) -> bool:
        """Send `message` to `peer`; False if it did not go (and why is dealt with)."""
        sock = self._sock
        if sock is None:
            return False
        try:
            sock.sendto(message, peer)
        except (BlockingIOError, InterruptedError) as error:
            # A full queue: the peer is owed a Rescan once it has room.
            self._dropped += 1
            self._owed.add(peer)
            logger.debug("wake-up to %s dropped: %s", peer, error)
            return False
        except (ConnectionRefusedError, FileNotFoundError):
            self._forget(peer, remove=True)
            return False
        except OSError as error:
            if error.errno in (getattr(os, "ENOBUFS", -1),):
                self._dropped += 1
                self._owed.add(peer)
            else:
                logger.warning("cannot send wake-ups to %s: %s", peer, error)
                self._forget(peer, remove=False)
            return False
        self._sent += 1
        return True

    def _forget(self, peer: str, *, remove: bool) -> None:
        """Stop sending to `peer`; remove its socket file if nobody listens on it."""
        self._peers.discard(peer)
        self._owed.discard(peer)
        if remove:
            try:
                os.unlink(peer)
            except FileNotFoundError:
                return
            except OSError as error:
                logger.debug("could not remove the dead wake-up socket %s: %s", peer, error)
                return
            self._removed += 1
            logger.debug("removed the wake-up socket of a process that is gone: %s", peer)

    def _read_peers(self) -> None:
        self._peers_read_at = time.monotonic()
        directory = self.directory
        if directory is None:
            return
        try:
            names = os.listdir(directory)
        except OSError as error:
            logger.warning("cannot list %s: %s", directory, error)
            return
        listed = {
            str(directory / name)
            for name in names
            if name.endswith(SOCKET_SUFFIX) and str(directory / name) != self.path
        }
        self._peers = listed
        self._owed &= listed


# -- the PostgreSQL relay: LISTEN/NOTIFY ---------------------------------------------

POSTGRES_CHANNEL = "provd_wakeups"
# How long a lost LISTEN connection waits before it connects again.
RELISTEN_SECONDS = 1.0


def postgres_channel(schema: str) -> str:
    """The NOTIFY channel of the provd data in `schema`: NOTIFY reaches a whole
    database, so replicas of provd on other schemas of it listen elsewhere."""
    if schema == "public":
        return POSTGRES_CHANNEL
    return f"{POSTGRES_CHANNEL}_{hashlib.sha256(schema.encode()).hexdigest()[:16]}"


class PostgresRelay:
    """Wake-ups among the processes serving one PostgreSQL database (schema), over
    LISTEN/NOTIFY on one channel (`postgres_channel`).

    psycopg's async API does not run under trio, so each direction has a connection of
    its own used from threads: a dedicated thread blocks (in `select`, nothing spent
    while idle) on the LISTEN connection and a self-pipe, and hands what arrives to
    trio; sends are batched by one task, as `DatagramRelay`'s are, and go out as
    `pg_notify` calls in one transaction in a worker thread. A notification carries
    its sender's random id, so a process skips its own. Closing the pipe's write end
    ends the thread at once when `run` is cancelled.

    A lost LISTEN connection is reopened (every `RELISTEN_SECONDS`) and followed by a
    local `Rescan`, since notifications sent meanwhile are gone; a failed send drops
    the connection and owes everyone a `Rescan`, sent with the next batch.
    """

    def __init__(self, dsn: str, *, relisten_seconds: float = RELISTEN_SECONDS) -> None:
        self._dsn = dsn
        self._id = secrets.token_hex(8)
        self._relisten_seconds = relisten_seconds
        self.channel: str = ""  # known once `run` has started
        self._running = False
        self._pending: dict[bytes, None] = {}
        self._ready = trio.Event()
        self._owed = False
        self._send_conn: _PgConnection | None = None
        self._sent = self._dropped = self._received = self._malformed = 0

    def send(self, wakeup: Wakeup) -> None:
        if not self._running:
            return
        self._pending[_part(wakeup)] = None
        self._ready.set()

    def statistics(self) -> RelayStatistics:
        return RelayStatistics(
            peers=0,  # LISTEN/NOTIFY does not say who listens
            messages_sent=self._sent,
            messages_dropped=self._dropped,
            dead_peers_removed=0,
            messages_received=self._received,
            messages_malformed=self._malformed,
        )

    async def run(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        conn = await trio.to_thread.run_sync(self._listen_connection)  # OSError if not
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flush_forever)
                task_status.started()
                while True:
                    error = await self._listen_until_cancelled(conn, deliver)
                    logger.warning(
                        "lost the LISTEN connection for wake-ups (reconnecting): %s",
                        _redact(error, self._dsn),
                    )
                    conn = await self._reconnect()
                    deliver([Rescan()])  # what was sent meanwhile is gone
        finally:
            self._running = False
            self._pending.clear()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._close_connections, conn)

    # -- receiving ---------------------------------------------------------------

    def _connect(self) -> _PgConnection:
        import psycopg

        from provd.store.postgres import CONNECT_TIMEOUT_SECONDS, describe, redact

        try:
            return psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
        except psycopg.Error as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise OSError(
                f"cannot connect to the PostgreSQL database at {describe(self._dsn)}:"
                f" {redact(first, self._dsn)}"
            ) from None

    def _listen_connection(self) -> _PgConnection:
        """A new connection that LISTENs on the channel (found from its schema)."""
        import psycopg
        from psycopg import sql

        from provd.store.postgres import redact

        conn = self._connect()
        try:
            row = conn.execute("SELECT current_schema()").fetchone()
            schema = str(row[0]) if row and row[0] is not None else "public"
            self.channel = postgres_channel(schema)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except psycopg.Error as error:
            conn.close()
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise OSError(f"cannot LISTEN for wake-ups: {redact(first, self._dsn)}") from None
        return conn

    async def _reconnect(self) -> _PgConnection:
        while True:
            await trio.sleep(self._relisten_seconds)
            try:
                return await trio.to_thread.run_sync(self._listen_connection)
            except OSError as error:
                logger.debug("listening for wake-ups again failed: %s", error)

    async def _listen_until_cancelled(self, conn: _PgConnection, deliver: Deliver) -> str:
        """Deliver what arrives on `conn` until cancelled (then the thread has ended);
        returns why the connection failed if it did."""
        wake_r, wake_w = os.pipe()
        token = trio.lowlevel.current_trio_token()

        def deliver_in_trio(wakeups: list[Wakeup]) -> None:
            deliver(wakeups)

        def on_message(payload: str) -> None:
            wakeups = self._receive(payload)
            if wakeups:
                trio.from_thread.run_sync(deliver_in_trio, wakeups, trio_token=token)

        async def stop_on_cancel() -> None:
            try:
                await trio.sleep_forever()
            finally:
                os.close(wake_w)  # the thread's select wakes up and it returns

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop_on_cancel)
                # Never abandoned: cancellation closes the pipe, the thread returns.
                error = await trio.to_thread.run_sync(_listen_thread, conn, wake_r, on_message)
                nursery.cancel_scope.cancel()
            return error
        finally:
            os.close(wake_r)

    def _receive(self, payload: str) -> list[Wakeup]:
        sender, _, text = payload.partition(" ")
        if sender == self._id:
            return []
        self._received += 1
        try:
            message = text.encode()
            if len(message) > MAX_MESSAGE_BYTES:
                raise Malformed(f"over {MAX_MESSAGE_BYTES} bytes")
            items = decode(message)
        except Malformed as error:
            self._malformed += 1
            logger.debug("ignored a malformed wake-up notification: %s", error)
            return []
        return [w for w in items if not isinstance(w, _Hello)]

    # -- sending -----------------------------------------------------------------

    async def _flush_forever(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = trio.Event()
            batch, self._pending = list(self._pending), {}
            if self._owed:
                batch.insert(0, _part(Rescan()))
            messages = [f"{self._id} {m.decode()}" for m in _pack(batch)]
            # Not abandoned: a NOTIFY under way finishes before the relay stops.
            sent = await trio.to_thread.run_sync(self._notify, messages)
            if sent:
                self._sent += len(messages)
                self._owed = False
            else:
                self._dropped += len(messages)
                self._owed = True
                await trio.sleep(self._relisten_seconds)
                self._ready.set()  # try again, with the Rescan owed

    def _notify(self, payloads: list[str]) -> bool:
        import psycopg

        from provd.store.postgres import redact

        try:
            if self._send_conn is None:
                self._send_conn = self._connect()
            conn = self._send_conn
            with conn.transaction():
                for payload in payloads:
                    conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
        except (OSError, psycopg.Error) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            logger.warning(
                "cannot send wake-ups to the other provd processes: %s", redact(first, self._dsn)
            )
            if self._send_conn is not None:
                self._send_conn.close()
                self._send_conn = None
            return False
        return True

    def _close_connections(self, listen_conn: _PgConnection) -> None:
        listen_conn.close()
        if self._send_conn is not None:
            self._send_conn.close()
            self._send_conn = None


def _redact(text: str, dsn: str) -> str:
    from provd.store.postgres import redact

    return redact(text, dsn)


def _listen_thread(conn: _PgConnection, wake_fd: int, on_message: Callable[[str], None]) -> str:
    """In a worker thread: hand each notification's payload to `on_message` until the
    other end of `wake_fd` is closed (returns "") or the connection fails (returns
    why)."""
    import select

    import psycopg

    try:
        while True:
            readable, _, _ = select.select([conn.fileno(), wake_fd], [], [])
            if wake_fd in readable:
                return ""
            for notify in conn.notifies(timeout=0):
                on_message(notify.payload)
    except (psycopg.Error, OSError, ValueError) as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    except trio.RunFinishedError:
        return ""


# -- the one wake-up path ------------------------------------------------------------


def _nobody_waits(queue: Queue) -> None:
    return None


def _no_streams(key_id: str) -> None:
    return None


async def _nothing_to_recheck() -> None:
    return None


class Wakeups:
    """Deliver wake-ups here first, then relay them to the other processes.

    Wire it before serving: `events` goes to the services (its `notify` relays), the
    scheduler announces through `job_available` and `job_changed` and is handed wake-ups
    back through `deliver_jobs_to`, and `job_available` replaces the scheduler's own
    for the services; the daemon keys announce deletions through `key_revoked` and are
    handed them through `deliver_key_revocations_to`. Run `run` in the server's
    nursery.
    """

    def __init__(self, store: Store, relay: Relay | None = None) -> None:
        self._store = store
        self._relay = relay
        self.events = JobEvents(relay=self._relay_job_changed)
        self._local_job_available: Callable[[Queue], None] = _nobody_waits
        self._local_key_revoked: Callable[[str], None] = _no_streams
        self._recheck_keys: Callable[[], Awaitable[None]] = _nothing_to_recheck
        self._nursery: trio.Nursery | None = None
        self._rescanning = self._rescan_again = False

    def deliver_jobs_to(self, job_available: Callable[[Queue], None]) -> None:
        """Where "a job is available in this queue" goes in this process (the scheduler)."""
        self._local_job_available = job_available

    def deliver_key_revocations_to(
        self, key_revoked: Callable[[str], None], recheck: Callable[[], Awaitable[None]]
    ) -> None:
        """Where "daemon key K was deleted" goes in this process (`key_revoked`, which
        ends its daemons' acquire streams), and what a rescan runs, since a lost
        revocation is part of what it makes up for (`recheck`: read the keys of the
        streams open here)."""
        self._local_key_revoked = key_revoked
        self._recheck_keys = recheck

    def key_revoked(self, key_id: str) -> None:
        """Daemon key `key_id` was deleted: end its daemons' streams here, then elsewhere."""
        self._local_key_revoked(key_id)
        if self._relay is not None:
            self._relay.send(KeyRevoked(key_id))

    def job_available(self, queue: Queue) -> None:
        """A job is pending in `queue`: wake a scheduler group here, then elsewhere."""
        self._local_job_available(queue)
        if self._relay is not None:
            self._relay.send(JobAvailable(queue))

    def job_changed(self, job_id: str) -> None:
        """Job `job_id` changed: wake its followers here, then elsewhere."""
        self.events.notify(job_id)

    def _relay_job_changed(self, job_id: str) -> None:
        if self._relay is not None:
            self._relay.send(JobChanged(job_id))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver what the other processes relay, until cancelled."""
        if self._relay is None:
            task_status.started()
            return
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await nursery.start(self._relay.run, self._deliver)
            except OSError as error:
                # Serving alone still works: the backup polls find the others' changes.
                logger.warning(
                    "wake-ups will not reach other provd processes on this database"
                    " (they find changes by polling): %s",
                    error,
                )
                self._relay = None
                task_status.started()
                return
            task_status.started()

    def _deliver(self, wakeups: Sequence[Wakeup]) -> None:
        """What another process relayed: deliver it here only. Each kind but a key's
        deletion also reaches the watchers of every job (`JobEvents.subscribe`): a
        job available is one created or given back there, by an id it does not carry."""
        for wakeup in wakeups:
            if isinstance(wakeup, JobAvailable):
                self._local_job_available(wakeup.queue)
                self.events.some_job_changed()
            elif isinstance(wakeup, JobChanged):
                self.events.wake(wakeup.job_id)
            elif isinstance(wakeup, KeyRevoked):
                self._local_key_revoked(wakeup.key_id)
            else:
                self.events.wake_all()
                if self._nursery is not None:
                    self._nursery.start_soon(self._rescan)
                    self._nursery.start_soon(self._recheck)

    async def _recheck(self) -> None:
        try:
            await self._recheck_keys()
        except Exception:
            logger.exception("re-reading the daemon keys of open streams for a rescan failed")

    async def _rescan(self) -> None:
        """Wake a group for every queue with pending jobs (coalesced: one at a time)."""
        if self._rescanning:
            self._rescan_again = True
            return
        self._rescanning = True
        try:
            while True:
                self._rescan_again = False
                try:
                    summaries = await self._store.pending_summary()
                except Exception:
                    logger.exception("reading the pending queues for a rescan failed")
                    return
                for summary in summaries:
                    self._local_job_available(summary.queue)
                if not self._rescan_again:
                    return
        finally:
            self._rescanning = False
