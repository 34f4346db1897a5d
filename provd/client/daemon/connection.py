"""A daemon's connection to provd, usable from trio.

connectrpc's async client runs on asyncio only, so calls go through the library's
sync client in worker threads. Transport failures (provd down or restarting) are
retried with capped, jittered exponential backoff; application errors (the
server said no) never are.

Given several replicas (`Endpoint`s, in order of preference), a transport failure
also moves the connection to the next one, round-robin: every replica serves the
same store, so a running job keeps reporting to whichever answers, and an acquire
stream that broke is opened again there. A call tries each replica once before it
waits out a backoff delay, so the delays stay as bounded as with one replica.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.client.connect import AcquireRequests
from provd.client.websocket import WebSocketAcquisition
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionerd.provisionerd_connect_client import ProvisionerDaemonClientSync

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What a transport or a restarting server looks like; everything else is an answer.
TRANSIENT = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.UNKNOWN})
# Enough threads for many slots' streams plus their unary calls.
THREADS = trio.CapacityLimiter(256)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delays: `initial_seconds`, times `factor` after each failure, at most
    `maximum_seconds`, each jittered down by up to half."""

    initial_seconds: float = 0.1
    maximum_seconds: float = 5.0
    factor: float = 2.0

    def delays(self) -> Callable[[], float]:
        delay = self.initial_seconds

        def next_delay() -> float:
            nonlocal delay
            current, delay = delay, min(delay * self.factor, self.maximum_seconds)
            return current * random.uniform(0.5, 1.0)

        return next_delay


def is_transient(error: ConnectError) -> bool:
    return error.code in TRANSIENT


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One provd replica: its URL and a client for it. With `websocket` (the URL and
    the daemon headers), acquire streams go over provd's WebSocket transport instead
    of an HTTP/2 stream."""

    url: str
    client: ProvisionerDaemonClientSync
    websocket: tuple[str, Mapping[str, str]] | None = None


class DaemonConnection:
    """The six RPCs as trio calls, with retries (and, given several replicas, a move
    to the next one) for transport errors."""

    def __init__(
        self,
        client: ProvisionerDaemonClientSync | Sequence[Endpoint],
        backoff: Backoff = Backoff(),
        *,
        websocket: tuple[str, Mapping[str, str]] | None = None,
    ) -> None:
        """`client` is one provd, or several replicas in order of preference. With
        `websocket` (one provd's URL and the daemon headers), acquire streams go over
        provd's WebSocket transport instead of an HTTP/2 stream."""
        if isinstance(client, Sequence):
            if not client:
                raise ValueError("a daemon connection needs at least one endpoint")
            self._endpoints = tuple(client)
        else:
            url = websocket[0] if websocket is not None else ""
            self._endpoints = (Endpoint(url, client, websocket),)
        self._current = 0
        self._backoff = backoff

    @property
    def url(self) -> str:
        """The URL of the replica calls go to now."""
        return self._endpoints[self._current].url

    def _move_on(self, failed: int) -> None:
        """The replica at `failed` did not answer: the next one is current, unless
        another call has moved on already."""
        if len(self._endpoints) > 1 and self._current == failed:
            self._current = (failed + 1) % len(self._endpoints)
            logger.info(
                "provd at %s is not answering; moving to %s", self._endpoints[failed].url, self.url
            )

    def _retry_delay(self, failures: int, next_delay: Callable[[], float]) -> float:
        """No wait until every replica has failed once since the last wait."""
        return next_delay() if failures % len(self._endpoints) == 0 else 0.0

    async def _unary(self, fn: Callable[[ProvisionerDaemonClientSync], T], what: str) -> T:
        next_delay = self._backoff.delays()
        failures = 0
        while True:
            index = self._current
            try:
                return await trio.to_thread.run_sync(
                    partial(fn, self._endpoints[index].client),
                    limiter=THREADS,
                    abandon_on_cancel=True,
                )
            except ConnectError as error:
                if not is_transient(error):
                    raise
                failures += 1
                self._move_on(index)
                delay = self._retry_delay(failures, next_delay)
                logger.warning("%s failed (%s); retrying in %.1fs", what, error.message, delay)
                if delay:
                    await trio.sleep(delay)

    async def update_job(self, request: pd.UpdateJobRequest) -> pd.UpdateJobResponse:
        return await self._unary(lambda client: client.update_job(request), "UpdateJob")

    async def fail_job(self, request: pd.FailedJob) -> None:
        await self._unary(lambda client: client.fail_job(request), "FailJob")

    async def complete_job(self, request: pd.CompletedJob) -> None:
        await self._unary(lambda client: client.complete_job(request), "CompleteJob")

    async def commit_quota(self, request: pd.CommitQuotaRequest) -> pd.CommitQuotaResponse:
        return await self._unary(lambda client: client.commit_quota(request), "CommitQuota")

    async def acquire(self, stop: trio.Event) -> pd.AcquiredJob | None:
        """Wait for a job until `stop` is set; None when none came.

        Setting `stop` sends CancelAcquire and still waits for provd's one answer: a
        job that raced in is returned, and must be run. Being cancelled half-closes
        the stream, so the worker thread always ends.
        """
        next_delay = self._backoff.delays()
        failures = 0
        while not stop.is_set():
            index = self._current
            try:
                return await self._acquire_once(self._endpoints[index], stop)
            except ConnectError as error:
                if not is_transient(error):
                    raise
                failures += 1
                self._move_on(index)
                delay = self._retry_delay(failures, next_delay)
                logger.warning(
                    "waiting for a job failed (%s); retrying in %.1fs", error.message, delay
                )
                if delay:
                    with trio.move_on_after(delay):
                        await stop.wait()
        return None

    async def _acquire_once(self, endpoint: Endpoint, stop: trio.Event) -> pd.AcquiredJob | None:
        if endpoint.websocket is not None:
            return await self._acquire_over_websocket(stop, *endpoint.websocket)
        client = endpoint.client
        requests = AcquireRequests()
        answers: list[pd.AcquiredJob] = []
        failure: list[ConnectError] = []

        def stream() -> None:
            try:
                for answer in client.acquire_job_with_cancel(requests):
                    answers.append(answer)
                    # provd answers once: end our side now, so the HTTP client is
                    # not left reading a request body that can no longer matter.
                    requests.close()
            except ConnectError as error:  # raised below, outside the nursery
                failure.append(error)
            finally:
                requests.close()

        async def cancel_on_stop() -> None:
            await stop.wait()
            requests.cancel()
            requests.close()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_on_stop)
                await trio.to_thread.run_sync(stream, limiter=THREADS, abandon_on_cancel=True)
                nursery.cancel_scope.cancel()
        except BaseException:
            requests.close()  # the abandoned thread's stream ends; provd answers nobody
            raise
        if failure:
            _raise_unless_handed_a_job(failure[0], answers)
        return _one_answer(answers)

    async def _acquire_over_websocket(
        self, stop: trio.Event, url: str, headers: Mapping[str, str]
    ) -> pd.AcquiredJob | None:
        acquisition = WebSocketAcquisition(url, headers)
        answers: list[pd.AcquiredJob] = []
        failure: ConnectError | None = None

        async def cancel_on_stop() -> None:
            await stop.wait()
            acquisition.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_on_stop)
            try:
                answers = await acquisition.run()
            except ConnectError as error:  # raised below, outside the nursery
                failure = error
            nursery.cancel_scope.cancel()
        if failure is not None:
            _raise_unless_handed_a_job(failure, acquisition.answers)
            answers = acquisition.answers
        return _one_answer(answers)


def _raise_unless_handed_a_job(failure: ConnectError, answers: list[pd.AcquiredJob]) -> None:
    """A stream that broke after provd's answer carried a job still handed that job
    over: provd counts it as this daemon's, so it must run (semantics: a job handed
    over is never re-delivered). Only a stream that broke before it is an error."""
    jobs = [answer for answer in answers if answer.job_id]
    if not jobs:
        raise failure
    logger.warning(
        "the acquire stream broke after provd sent job %s (%s); running it",
        jobs[0].job_id,
        failure.message,
    )


def _one_answer(answers: list[pd.AcquiredJob]) -> pd.AcquiredJob | None:
    """The job in provd's one answer, or None for an empty (canceled) answer."""
    if len(answers) != 1:
        raise ConnectError(Code.INTERNAL, f"provd sent {len(answers)} answers to one acquire")
    return answers[0] if answers[0].job_id else None
