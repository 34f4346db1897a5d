"""`provisionerd.ProvisionerDaemon` over Connect, gRPC and gRPC-web.

The acquire stream is where exactly-once is won or lost. Inside a nursery the
handler waits for a job while a sibling task watches the request stream (a
`CancelAcquire`, its end, or a vanished client all cancel the wait). It leaves
the nursery with a decision, and only then yields, once: a yield inside a nursery
is not allowed in trio, and it also keeps the one send in one obvious place.
If that send does not happen, the job goes back to its queue.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import trio
from connectrpc.request import RequestContext

from provd.dispatch import Dispatcher
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.model import Daemon, Job
from provd.registry import DaemonRegistry
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

    def __init__(self, dispatcher: Dispatcher, registry: DaemonRegistry) -> None:
        self._dispatcher = dispatcher
        self._registry = registry

    async def _caller(self, ctx: RequestContext[Any, Any]) -> Daemon:
        daemon = daemon_from_headers(ctx.request_headers)
        await self._registry.seen(daemon)
        return daemon

    async def acquire_job(self, request: pd.Empty, ctx: RequestContext[Any, Any]) -> pd.AcquiredJob:
        return await self._dispatcher.acquire_unary(await self._caller(ctx))

    async def acquire_job_with_cancel(
        self, requests: AsyncIterator[pd.CancelAcquire], ctx: RequestContext[Any, Any]
    ) -> AsyncGenerator[pd.AcquiredJob]:
        daemon = await self._caller(ctx)
        stream = _RequestWatch()
        job: Job | None = None
        message: pd.AcquiredJob | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.watch, requests)
                job, message = await self._wait_for_sendable_job(daemon, stream)
                nursery.cancel_scope.cancel()
        except BaseException:
            if job is not None:
                await self._dispatcher.release(daemon, job)
            raise
        if job is None or message is None:
            if not stream.broken:
                yield pd.AcquiredJob()  # canceled before a job was taken
            return
        if stream.broken:
            await self._dispatcher.release(daemon, job)
            return
        handed_over = False
        try:
            yield message
            handed_over = True
        finally:
            if not handed_over:
                await self._dispatcher.release(daemon, job)

    async def _wait_for_sendable_job(
        self, daemon: Daemon, stream: _RequestWatch
    ) -> tuple[Job | None, pd.AcquiredJob | None]:
        """Wait until a job is claimed and its payload built, or the wait is canceled.
        A job whose payload cannot be sent is failed, and the wait goes on."""
        while not stream.cancel_requested.is_set():
            job = await self._dispatcher.wait_for_job(daemon, stream.cancel_requested)
            if job is None:
                return None, None
            try:
                message = await self._dispatcher.payload(daemon, job)
            except BaseException:
                await self._dispatcher.release(daemon, job)
                raise
            if message is not None:
                return job, message
        return None, None

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
