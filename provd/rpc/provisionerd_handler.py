"""`provisionerd.ProvisionerDaemon` over Connect, gRPC and gRPC-web.

The acquire stream answers exactly once. Inside a nursery the handler waits for a
job (`Dispatcher.acquire`, the same wait as the unary `AcquireJob`) while a sibling
task watches the request stream (a `CancelAcquire`, its end, or a vanished client
all ask the wait to stop). It leaves the nursery with a decision, and only then
yields, once: a yield inside a nursery is not allowed in trio, and it also keeps
the one send in one obvious place. The handler keeps only the transport's rule: a
job whose message was not handed over goes back to its queue. (A stream whose daemon
key is deleted meanwhile ends with `unauthenticated`, raised by the dispatcher, which
gives back a job it claimed: nothing was handed over.)
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import trio
from connectrpc.request import RequestContext

from provd.dispatch import Acquired, Dispatcher
from provd.errors import ProvdError
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.model import Daemon
from provd.registry import DaemonRegistry
from provd.rpc.auth import DaemonAuth
from provd.rpc.identity import daemon_from_headers


class _RequestWatch:
    """Reads the client's side of an acquire stream: any message or its end asks to
    cancel; an error means the client is gone."""

    def __init__(self) -> None:
        self.cancel_requested = trio.Event()
        self.broken = False

    async def watch(self, requests: AsyncIterator[pd.CancelAcquire]) -> None:
        try:
            async for _ in requests:
                break
        except Exception:  # the transport's "client disconnected", or garbage
            self.broken = True
        self.cancel_requested.set()


class ProvisionerDaemonHandler:
    """Implements the generated `ProvisionerDaemon` protocol."""

    def __init__(self, dispatcher: Dispatcher, registry: DaemonRegistry, auth: DaemonAuth) -> None:
        """`auth` is the interceptor that admitted the call: it knows which daemon key
        (if any) the call presented, and so who the daemon is."""
        self._dispatcher = dispatcher
        self._registry = registry
        self._auth = auth

    async def _caller(self, ctx: RequestContext[Any, Any]) -> Daemon:
        daemon = daemon_from_headers(ctx.request_headers, self._auth.key_of(ctx))
        await self._registry.seen(daemon)
        return daemon

    async def acquire_job(self, request: pd.Empty, ctx: RequestContext[Any, Any]) -> pd.AcquiredJob:
        return await self._dispatcher.acquire_unary(await self._caller(ctx))

    async def acquire_job_with_cancel(
        self, requests: AsyncIterator[pd.CancelAcquire], ctx: RequestContext[Any, Any]
    ) -> AsyncGenerator[pd.AcquiredJob]:
        daemon = await self._caller(ctx)
        stream = _RequestWatch()
        acquired: Acquired | None = None
        refused: ProvdError | None = None
        handed_over = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.watch, requests)
                try:
                    acquired = await self._dispatcher.acquire(daemon, stream.cancel_requested)
                except ProvdError as error:  # its key was deleted: the one answer
                    refused = error
                nursery.cancel_scope.cancel()
            if stream.broken:
                return  # nobody to answer
            if refused is not None:
                raise refused  # outside the nursery, so not in an exception group
            yield pd.AcquiredJob() if acquired is None else acquired.message
            handed_over = True
        finally:
            if acquired is not None and not handed_over:
                await self._dispatcher.release(daemon, acquired.job)

    async def update_job(
        self, request: pd.UpdateJobRequest, ctx: RequestContext[Any, Any]
    ) -> pd.UpdateJobResponse:
        return await self._dispatcher.update_job(await self._caller(ctx), request)

    async def fail_job(self, request: pd.FailedJob, ctx: RequestContext[Any, Any]) -> pd.Empty:
        await self._dispatcher.fail_job(await self._caller(ctx), request)
        return pd.Empty()

    async def complete_job(
        self, request: pd.CompletedJob, ctx: RequestContext[Any, Any]
    ) -> pd.Empty:
        await self._dispatcher.complete_job(await self._caller(ctx), request)
        return pd.Empty()

    async def commit_quota(
        self, request: pd.CommitQuotaRequest, ctx: RequestContext[Any, Any]
    ) -> pd.CommitQuotaResponse:
        return await self._dispatcher.commit_quota(await self._caller(ctx), request)
