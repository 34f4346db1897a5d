"""Daemon keys against a real server over real sockets (docs/keys.md): a key fixes who
its daemons are, binds the jobs they acquire, and deleting it ends its daemons' streams
and refuses their next calls. The daemon-side tests run over Connect, gRPC and the
WebSocket transport (acquire streams and unary calls alike)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from connectrpc.code import Code
from connectrpc.protocol import ProtocolType
from google.protobuf.message import Message
from trio_websocket import open_websocket_url

from provd.client.connect import call, daemon_service_client, key_client
from provd.client.websocket import websocket_url
from provd.gen.provd.v1 import daemons_pb2 as dpb
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provd.v1 import keys_pb2 as kpb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.keys import parse_secret
from provd.store import Store
from provd.store.sqlite import open_sqlite_store
from provd.wakeups import DatagramRelay, Rescan
from provd.websocket_framing import END_STREAM, envelope, error_from_end_of_stream, parse_envelope
from tests.claim_gate import PATHS, ClaimGate, lock_a_job
from tests.conftest import ADMIN_TOKEN, Server, ServerFactory
from tests.daemon_clients import Jobs, TestDaemon, wait_until
from tests.daemon_keys import Keys, refused, stream_error, waiting


@dataclass(frozen=True)
class Wire:
    """How a test daemon talks to provd: every call over Connect or gRPC, or every call
    over the WebSocket transport."""

    protocol: ProtocolType
    transport: str

    def daemon(self, server: Server, name: str, **identity: Any) -> TestDaemon:
        return TestDaemon(
            server, name, protocol=self.protocol, transport=self.transport, **identity
        )

    async def unary(
        self, daemon: TestDaemon, method: str, request: Message, response_type: type[Message]
    ) -> Message:
        if self.transport != "websocket":
            snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in method).lstrip("_")
            return await call(getattr(daemon.client, snake), request)  # type: ignore[no-any-return]
        headers = [(k.encode(), v.encode()) for k, v in daemon.headers.items()]
        async with open_websocket_url(
            websocket_url(daemon.url, method), extra_headers=headers
        ) as ws:
            await ws.send_message(envelope(request.SerializeToString()))
            messages = []
            while True:
                flags, payload = parse_envelope(await ws.get_message())
                if flags & END_STREAM:
                    break
                messages.append(payload)
        if (error := error_from_end_of_stream(json.loads(payload or b"{}"))) is not None:
            raise error
        (only,) = messages
        return response_type.FromString(only)

    async def update(self, daemon: TestDaemon, job_id: str) -> Message:
        request = pd.UpdateJobRequest(job_id=job_id)
        return await self.unary(daemon, "UpdateJob", request, pd.UpdateJobResponse)

    async def fail(self, daemon: TestDaemon, job_id: str) -> Message:
        return await self.unary(daemon, "FailJob", pd.FailedJob(job_id=job_id), pd.Empty)

    async def complete(self, daemon: TestDaemon, job_id: str) -> Message:
        request = pd.CompletedJob(job_id=job_id, template_import=pd.CompletedJob.TemplateImport())
        return await self.unary(daemon, "CompleteJob", request, pd.Empty)


WIRES = [
    pytest.param(Wire(ProtocolType.CONNECT, "connect"), id="connect"),
    pytest.param(Wire(ProtocolType.GRPC, "connect"), id="grpc"),
    pytest.param(Wire(ProtocolType.CONNECT, "websocket"), id="websocket"),
]


@pytest.fixture(params=WIRES)
def wire(request: pytest.FixtureRequest) -> Wire:
    return request.param  # type: ignore[no-any-return]


ACME_LINUX = {"organization": "acme", "tags": {"os": "linux"}, "provisioners": ["echo"]}


# -- a key fixes who its daemons are ------------------------------------------------


async def test_a_key_cannot_claim_another_organization_wider_tags_or_another_provisioner(
    server: Server, nursery: trio.Nursery, wire: Wire
) -> None:
    key = (await Keys(server).create("ci", **ACME_LINUX)).secret
    cases: list[tuple[dict[str, Any], Sequence[str]]] = [
        ({"organization": "other"}, ["Provd-Daemon-Organization", "'other'", "'acme'"]),
        ({"tags": {"os": "windows"}}, ["Provd-Daemon-Tags", "os=windows", "os=linux"]),
        ({"tags": {"os": "linux", "gpu": "yes"}}, ["Provd-Daemon-Tags", "gpu=yes"]),
        ({"tags": {"scope": "user", "owner": "mallory"}}, ["Provd-Daemon-Tags", "mallory"]),
        ({"provisioners": ("echo", "terraform")}, ["Provd-Daemon-Provisioners", "terraform"]),
    ]
    job = await Jobs(server).create(organization="acme", tags={"os": "linux"})
    for identity, named in cases:
        daemon = wire.daemon(server, "builder", key=key, **identity)
        error = await stream_error(await daemon.acquire(nursery))
        assert error.code == Code.PERMISSION_DENIED, error
        assert all(part in error.message for part in named), (named, error.message)
        # Unary calls are refused alike, before the job is looked at.
        unary = await refused(Code.PERMISSION_DENIED, wire.update(daemon, job.id))
        assert named[0] in unary.message
    # Within what the key allows the daemon takes the key's job; its headers left out
    # the organization and tags, and named a subset of the provisioners.
    allowed = wire.daemon(server, "builder", key=key, tags={"os": "linux"})
    assert (await (await allowed.acquire(nursery)).wait()).job_id == job.id
    listed = await call(
        daemon_service_client(server.url, ADMIN_TOKEN).list_daemons, dpb.ListDaemonsRequest()
    )
    (daemon,) = listed.daemons
    assert (daemon.organization, dict(daemon.tags), daemon.key_name) == (
        "acme",
        {"os": "linux", "scope": "organization", "owner": ""},
        "ci",
    )


async def test_a_users_key_makes_its_daemons_that_users(
    server: Server, nursery: trio.Nursery
) -> None:
    """A key with an owner: its daemons are user-scoped to that owner and take that
    user's jobs, never the organization's."""
    key = (await Keys(server).create("alice-laptop", owner="alice")).secret
    jobs = Jobs(server)
    organizations = await jobs.create()
    alices = await jobs.create(tags={"scope": "user", "owner": "alice"})
    daemon = TestDaemon(server, "laptop", key=key)
    assert (await (await daemon.acquire(nursery)).wait()).job_id == alices.id
    assert (await jobs.get(organizations.id)).status == pb.JOB_STATUS_PENDING


# -- jobs are bound to the key that acquired them -----------------------------------


async def test_a_job_acquired_under_one_key_cannot_be_touched_through_another(
    server: Server, nursery: trio.Nursery, wire: Wire
) -> None:
    """Same organization, same tags, same daemon name: a daemon on key B (or on the
    pre-shared key) cannot report on, fail or complete what the daemon on key A holds."""
    keys = Keys(server)
    key_a = (await keys.create("team-a", organization="acme")).secret
    key_b = (await keys.create("team-b", organization="acme")).secret
    job = await Jobs(server).create(organization="acme")
    holder = wire.daemon(server, "builder", key=key_a)
    assert (await (await holder.acquire(nursery)).wait()).job_id == job.id
    impostors = [
        wire.daemon(server, "builder", key=key_b),
        wire.daemon(server, "builder", organization="acme"),  # the PSK
    ]
    for impostor in impostors:
        for attempt in (wire.update, wire.fail, wire.complete):
            error = await refused(Code.PERMISSION_DENIED, attempt(impostor, job.id))
            assert "not held by this daemon" in error.message
    await wire.update(holder, job.id)
    await wire.complete(holder, job.id)
    assert (await Jobs(server).get(job.id)).status == pb.JOB_STATUS_SUCCEEDED


# -- revocation ---------------------------------------------------------------------


async def test_deleting_a_key_ends_its_waiting_stream_and_refuses_the_next_call(
    server: Server, nursery: trio.Nursery, wire: Wire
) -> None:
    keys = Keys(server)
    key = (await keys.create("ci")).secret
    other = (await keys.create("other")).secret
    daemon = wire.daemon(server, "builder", key=key)
    bystander = wire.daemon(server, "bystander", key=other)
    stream = await waiting(server, daemon, nursery)
    still_waiting = await waiting(server, bystander, nursery)

    deleted = await keys.delete("ci")
    assert deleted.deleted and deleted.key.name == "ci"
    error = await stream_error(stream)  # one answer: the error, no job
    assert error.code == Code.UNAUTHENTICATED and "was deleted" in error.message

    later = wire.update(daemon, "00000000-0000-4000-8000-000000000000")
    assert "Provd-Daemon-Key" in (await refused(Code.UNAUTHENTICATED, later)).message
    again = await stream_error(await daemon.acquire(nursery))
    assert again.code == Code.UNAUTHENTICATED
    # Another key's daemon still waits, and gets the next job.
    job = await Jobs(server).create()
    assert (await still_waiting.wait()).job_id == job.id


@pytest.mark.parametrize("path", PATHS)
async def test_a_job_claimed_as_its_key_is_deleted_goes_back_to_its_queue(
    make_server: ServerFactory, nursery: trio.Nursery, path: str
) -> None:
    """The key is deleted while a claim for its daemon is in flight: the stream ends
    with `unauthenticated`, and the claimed job is pending again, first in its queue,
    for the next daemon."""
    gates: list[ClaimGate] = []

    def wrap(store: Store) -> Store:
        gates.append(ClaimGate(store, only_jobs=True))
        return gates[0]  # type: ignore[return-value]

    server = await make_server(wrap_store=wrap)
    (gate,) = gates
    keys, jobs = Keys(server), Jobs(server)
    daemon = TestDaemon(server, "builder", key=(await keys.create("ci")).secret)
    # The job is locked for the daemon, the claim held.
    stream, job_id = await lock_a_job(
        server, gate, jobs, nursery, path, lambda: waiting(server, daemon, nursery)
    )
    await keys.delete("ci")
    gate.armed = False
    gate.opened.set()
    assert (await stream_error(stream)).code == Code.UNAUTHENTICATED
    await wait_until(lambda: server.scheduler.statistics().released == 1)
    assert (await jobs.get(job_id)).status == pb.JOB_STATUS_PENDING
    other = TestDaemon(server, "next")
    assert (await (await other.acquire(nursery)).wait()).job_id == job_id


async def test_a_key_deleted_behind_the_servers_back_hands_over_no_job(
    server: Server, nursery: trio.Nursery
) -> None:
    """A deletion whose wake-up never came (here: straight in the database, as another
    process whose wake-up was lost): the key is read again before a job is handed
    over, so the waiting daemon gets `unauthenticated` and the job goes back."""
    keys, jobs = Keys(server), Jobs(server)
    daemon = TestDaemon(server, "builder", key=(await keys.create("ci")).secret)
    stream = await waiting(server, daemon, nursery)
    async with open_sqlite_store(server.db_path) as behind:
        assert await behind.delete_key("ci") is not None
    job = await jobs.create()
    error = await stream_error(stream)
    assert error.code == Code.UNAUTHENTICATED and "was deleted" in error.message
    await wait_until(lambda: server.scheduler.statistics().released == 1)
    assert (await jobs.get(job.id)).status == pb.JOB_STATUS_PENDING


async def test_a_rescan_ends_the_streams_of_a_key_deleted_without_a_wake_up(
    make_server: ServerFactory, nursery: trio.Nursery
) -> None:
    """A revocation lost on its way (a relay owes its peer a rescan then): the rescan
    re-reads the keys this process holds, ends the deleted key's streams with no job
    in sight, and refuses its next call."""
    server = await make_server(poll_interval_seconds=3600.0)
    keys = Keys(server)
    daemon = TestDaemon(server, "builder", key=(await keys.create("ci")).secret)
    kept = TestDaemon(server, "kept", key=(await keys.create("kept")).secret)
    stream = await waiting(server, daemon, nursery)
    other = await waiting(server, kept, nursery)
    async with open_sqlite_store(server.db_path) as behind:
        assert await behind.delete_key("ci") is not None
    peer = DatagramRelay(server.db_path)
    async with trio.open_nursery() as relay_nursery:
        await relay_nursery.start(peer.run, lambda wakeups: None)
        peer.send(Rescan())
        with trio.fail_after(3):  # well before the server's own 5 s re-check
            error = await stream_error(stream)
        relay_nursery.cancel_scope.cancel()
    assert error.code == Code.UNAUTHENTICATED and "was deleted" in error.message
    assert not other.ended.is_set()
    # The key this process had in memory is refused from now on; the other still works.
    await refused(Code.UNAUTHENTICATED, daemon.update("00000000-0000-4000-8000-000000000000"))
    job = await Jobs(server).create()
    assert (await other.wait()).job_id == job.id


async def test_two_servers_on_one_file_a_delete_through_one_ends_a_stream_on_the_other(
    make_server: ServerFactory, nursery: trio.Nursery
) -> None:
    """Two provd processes' worth (two `serve()`) on one SQLite file: the key is
    deleted through A while its daemon waits on B. The stream on B ends with
    `unauthenticated` at once (B's polls and re-checks are an hour away: only the
    relayed revocation can do it), and B refuses the daemon's next call."""
    hour = {"poll_interval_seconds": 3600.0, "log_poll_interval_seconds": 3600.0}
    a = await make_server(**hour)
    b = await make_server(db_path=a.db_path, **hour)
    key = (await Keys(a).create("ci")).secret
    daemon = TestDaemon(b, "on-b", key=key)
    stream = await waiting(b, daemon, nursery)
    # Well before B's own re-check of the keys of its streams (every 5 s from its start).
    with trio.fail_after(3):
        await Keys(a).delete("ci")
        error = await stream_error(stream)
    assert error.code == Code.UNAUTHENTICATED and "was deleted" in error.message
    await refused(Code.UNAUTHENTICATED, daemon.update("00000000-0000-4000-8000-000000000000"))
    assert await Keys(b).list() == []


# -- the pre-shared key -----------------------------------------------------------


async def test_with_the_psk_off_only_keys_get_in(
    make_server: ServerFactory, nursery: trio.Nursery, wire: Wire
) -> None:
    server = await make_server(daemon_psk="")
    on_psk = wire.daemon(server, "laptop")
    error = await stream_error(await on_psk.acquire(nursery))
    assert error.code == Code.UNAUTHENTICATED and "--daemon-psk off" in error.message
    await refused(Code.UNAUTHENTICATED, wire.update(on_psk, "x"))
    key = (await Keys(server).create("ci")).secret
    job = await Jobs(server).create()
    on_key = wire.daemon(server, "laptop", key=key)
    assert (await (await on_key.acquire(nursery)).wait()).job_id == job.id


async def test_the_psk_still_works_beside_keys(server: Server, nursery: trio.Nursery) -> None:
    await Keys(server).create("ci")
    job = await Jobs(server).create()
    assert (await (await TestDaemon(server, "laptop").acquire(nursery)).wait()).job_id == job.id


# -- the admin API --------------------------------------------------------------------


async def test_create_list_and_delete(server: Server, nursery: trio.Nursery) -> None:
    keys = Keys(server)
    created = await keys.create("ci", organization="acme", tags={"os": "linux"})
    secret, key = created.secret, created.key
    assert secret.startswith(f"provd_key_{key.id}_") and len(secret) > len(key.id) + 40
    assert (key.name, key.organization, list(key.provisioners), key.owner) == (
        "ci",
        "acme",
        [],
        "",
    )
    assert dict(key.tags) == {"os": "linux", "scope": "organization", "owner": ""}
    assert not key.HasField("last_used_at") and key.daemons_connected == 0

    daemon = TestDaemon(server, "builder", key=secret)
    await daemon.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)
    (listed,) = await keys.list()
    assert listed.HasField("last_used_at") and listed.daemons_connected == 1
    assert listed.id == key.id and await keys.list("other") == []

    assert (await keys.delete("ci")).deleted
    assert not (await keys.delete("ci")).deleted
    assert await keys.list() == []
    # ListDaemons still says which key the daemon used, by id: the name is gone.
    listed_daemons = await call(
        daemon_service_client(server.url, ADMIN_TOKEN).list_daemons, dpb.ListDaemonsRequest()
    )
    (builder,) = listed_daemons.daemons
    assert (builder.name, builder.key_id, builder.key_name) == ("builder", key.id, "")


async def test_only_the_secrets_hash_is_stored(server: Server) -> None:
    created = await Keys(server).create("ci")
    # The whole random part (it may hold "_" itself: token_urlsafe), as provd parses it.
    parsed = parse_secret(created.secret)
    assert parsed is not None
    random_part = parsed[1]
    assert len(random_part) == 43
    with sqlite3.connect(server.db_path) as conn:
        rows = conn.execute("SELECT * FROM keys").fetchall()
    assert len(rows) == 1
    assert not any(random_part in str(value) for value in rows[0])


@pytest.mark.parametrize(
    ("fields", "code", "named"),
    [
        ({"name": ""}, Code.INVALID_ARGUMENT, "name: is required"),
        ({"name": "no spaces"}, Code.INVALID_ARGUMENT, "name:"),
        ({"name": "ci", "organization": "a b"}, Code.INVALID_ARGUMENT, "organization:"),
        ({"name": "ci", "tags": {"scope": "user"}}, Code.INVALID_ARGUMENT, "tags: scope"),
        ({"name": "ci", "tags": {"owner": "x"}}, Code.INVALID_ARGUMENT, "tags: owner"),
        ({"name": "ci", "provisioners": ["a b"]}, Code.INVALID_ARGUMENT, "provisioners[0]"),
        ({"name": "ci", "owner": " alice"}, Code.INVALID_ARGUMENT, "owner:"),
        ({"name": "taken"}, Code.ALREADY_EXISTS, "name: a daemon key named 'taken'"),
    ],
)
async def test_bad_requests_name_the_field(
    server: Server, fields: dict[str, Any], code: Code, named: str
) -> None:
    keys = Keys(server)
    await keys.create("taken")
    name = fields.pop("name")
    assert named in (await refused(code, keys.create(name, **fields))).message


async def test_the_admin_api_needs_the_admin_token(server: Server) -> None:
    key = (await Keys(server).create("ci")).secret
    for token in (None, key):
        client = key_client(server.url, token)
        await refused(Code.UNAUTHENTICATED, call(client.list_keys, kpb.ListKeysRequest()))


async def test_malformed_and_wrong_keys_are_unauthenticated(
    server: Server, nursery: trio.Nursery
) -> None:
    secret = (await Keys(server).create("ci")).secret
    key_id = secret.split("_")[2]
    for presented, named in [
        ("not-a-key", "not a daemon key"),
        ("provd_key_", "not a daemon key"),
        (f"provd_key_{key_id}_wrong", f"no daemon key '{key_id}' with this secret"),
        ("provd_key_0123456789abcdef_x", "no daemon key"),
    ]:
        error = await stream_error(await TestDaemon(server, "d", key=presented).acquire(nursery))
        assert error.code == Code.UNAUTHENTICATED and named in error.message, error
