"""Daemon keys in tests: a KeyService client for the admin side, and short-hands for
the errors a refused daemon sees."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.client.connect import call, key_client
from provd.gen.provd.v1 import keys_pb2 as kpb
from tests.conftest import ADMIN_TOKEN, Server
from tests.daemon_clients import Acquisition, TestDaemon, wait_until


class Keys:
    """`provd.v1.KeyService` as tests use it."""

    def __init__(self, server: Server) -> None:
        self.client = key_client(server.url, ADMIN_TOKEN)

    async def create(self, name: str, **fields: Any) -> kpb.CreateKeyResponse:
        return await call(self.client.create_key, kpb.CreateKeyRequest(name=name, **fields))

    async def list(self, organization: str = "") -> list[kpb.Key]:
        listing = await call(self.client.list_keys, kpb.ListKeysRequest(organization=organization))
        return list(listing.keys)

    async def delete(self, name: str) -> kpb.DeleteKeyResponse:
        return await call(self.client.delete_key, kpb.DeleteKeyRequest(name=name))


async def refused(code: Code, coroutine: Any) -> ConnectError:
    """The error `coroutine` fails with, which must have `code`."""
    with pytest.raises(ConnectError) as caught:
        await coroutine
    assert caught.value.code == code, caught.value
    return caught.value


async def stream_error(acquisition: Acquisition) -> ConnectError:
    """How a stream ended that must end with an error and no answer."""
    with trio.fail_after(10):
        await acquisition.ended.wait()
    assert acquisition.responses == [], acquisition.responses
    assert isinstance(acquisition.error, ConnectError), acquisition.error
    return acquisition.error


async def waiting(server: Server, daemon: TestDaemon, nursery: trio.Nursery) -> Acquisition:
    """An acquire stream of `daemon` that provd has queued."""
    before = server.scheduler.statistics().waiters
    acquisition = await daemon.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters > before)
    return acquisition
