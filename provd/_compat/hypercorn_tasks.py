"""hypercorn 0.18 (trio): the queue between a connection and its ASGI app task.

hypercorn hands each request's events (body chunks, the disconnect) to the app
through a bounded memory channel (`max_app_queue_size`, 10). Two ways it could block
a connection forever, and with it the connection's socket:

- After the app returned, nobody reads the channel. Once ten events were left
  unread (a client still sending a body the app no longer wants), the next put
  blocks for good: the connection's reading task, or the app task itself, which
  puts `http.disconnect` into its own queue while it closes its stream.
- A disconnect put into a full queue waits for the app to read; an app that is
  itself waiting on that connection (sending its response) never does.

Here the queue is closed as soon as the app returns (later events are dropped: no
one wants them), and a disconnect never waits: it is delivered after whatever is
queued, and every later `receive()` returns it again, as ASGI servers commonly do,
so an app can never wait forever on a connection that is gone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio.task_group import TaskGroup
from hypercorn.typing import AppWrapper, ASGIReceiveEvent, ASGISendEvent, Scope

_DISCONNECTS = frozenset({"http.disconnect", "websocket.disconnect"})


class AppQueue:
    """One request's events on their way to its app; see the module docstring."""

    def __init__(self, size: int) -> None:
        self._send, self._receive = trio.open_memory_channel[ASGIReceiveEvent](size)
        self._disconnect: ASGIReceiveEvent | None = None

    async def put(self, message: ASGIReceiveEvent) -> None:
        """Queue `message`; never blocks once the app is gone or for a disconnect."""
        if message["type"] in _DISCONNECTS:
            if self._disconnect is None:
                self._disconnect = message
            # A full queue: `receive` hands it out once the queue is empty.
            with suppress(trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._send.send_nowait(message)
            return
        if self._disconnect is not None:
            return  # nothing after a disconnect means anything
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):  # the app returned
            await self._send.send(message)

    async def receive(self) -> ASGIReceiveEvent:
        """The next event; the disconnect again and again once the queue is empty."""
        if self._disconnect is not None:
            try:
                return self._receive.receive_nowait()
            except trio.WouldBlock:
                await trio.lowlevel.checkpoint()
                return self._disconnect
        return await self._receive.receive()

    def close(self) -> None:
        """The app returned: from now on events are dropped, and puts never wait."""
        self._receive.close()


async def _handle(
    app: AppWrapper,
    config: Config,
    scope: Scope,
    queue: AppQueue,
    send: Callable[[ASGISendEvent | None], Awaitable[None]],
) -> None:
    """hypercorn's `_handle`, closing the app's queue before the stream is closed."""
    try:
        await app(scope, queue.receive, send, trio.to_thread.run_sync, trio.from_thread.run)
    except trio.Cancelled:
        raise
    except BaseExceptionGroup as error:
        _, other_errors = error.split(trio.Cancelled)
        if other_errors is None:
            raise
        await config.log.exception("Error in ASGI Framework")
    except Exception:
        await config.log.exception("Error in ASGI Framework")
    finally:
        queue.close()
        await send(None)


async def _spawn_app(
    self: TaskGroup,
    app: AppWrapper,
    config: Config,
    scope: Scope,
    send: Callable[[ASGISendEvent | None], Awaitable[None]],
) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
    queue = AppQueue(config.max_app_queue_size)
    nursery: Any = self._nursery
    nursery.start_soon(_handle, app, config, scope, queue, send)
    return queue.put


def apply() -> None:
    """Install the fix (idempotent)."""
    TaskGroup.spawn_app = _spawn_app  # type: ignore[method-assign]
