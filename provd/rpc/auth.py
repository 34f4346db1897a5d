"""Credential checks that run before a request body is read (metadata interceptors)."""

from __future__ import annotations

import hmac
import weakref
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from provd.errors import ProvdError
from provd.keys import DaemonKeys
from provd.model import DaemonKey
from provd.protocol import KEY_HEADER, PSK_HEADER
from provd.rpc.errors import to_connect_error


class BearerTokenAuth:
    """Admits requests whose `Authorization: Bearer <token>` matches the admin token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        header = ctx.request_headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not presented.strip():
            raise ConnectError(
                Code.UNAUTHENTICATED, "missing credentials: send 'Authorization: Bearer <token>'"
            )
        if not hmac.compare_digest(presented.strip().encode(), self._token):
            raise ConnectError(Code.UNAUTHENTICATED, "invalid admin token")

    async def on_end(
        self, token: None, ctx: RequestContext[Any, Any], error: Exception | None
    ) -> None:
        return None


class DaemonAuth:
    """Admits a daemon's call that presents a daemon key (`Provd-Daemon-Key`) or, unless
    it is turned off (empty), the pre-shared key (`Provd-Daemon-Psk`).

    A key is checked by `DaemonKeys.authenticate` (deleted keys are refused on every
    process as soon as the deletion's wake-up arrives). The key a call presented is kept
    for the handler (`key_of`), which takes the daemon's identity from it: a metadata
    interceptor runs before the request body is read, and connectrpc hands the handler
    the same `RequestContext`, so it is remembered by that (weakly: it goes with the
    request). With a key, the PSK header is not looked at.
    """

    def __init__(self, psk: str, keys: DaemonKeys) -> None:
        self._psk = psk.encode()
        self._keys = keys
        self._key_of: weakref.WeakKeyDictionary[RequestContext[Any, Any], DaemonKey] = (
            weakref.WeakKeyDictionary()
        )

    def key_of(self, ctx: RequestContext[Any, Any]) -> DaemonKey | None:
        """The key `ctx`'s call presented; None for the pre-shared key."""
        return self._key_of.get(ctx)

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        presented_key = ctx.request_headers.get(KEY_HEADER, "").strip()
        if presented_key:
            try:
                self._key_of[ctx] = await self._keys.authenticate(presented_key)
            except ProvdError as error:  # Unauthenticated; StoreClosed is unavailable
                raise to_connect_error(error) from None
            return
        presented = ctx.request_headers.get(PSK_HEADER, "").strip()
        if not self._psk:
            raise ConnectError(
                Code.UNAUTHENTICATED,
                "Provd-Daemon-Key: required: this server takes no pre-shared key"
                " (--daemon-psk off); send a daemon key ('provd keys create') in the"
                " 'Provd-Daemon-Key' header",
            )
        if not presented:
            raise ConnectError(
                Code.UNAUTHENTICATED,
                "missing credentials: send a daemon key in the 'Provd-Daemon-Key' header,"
                " or the pre-shared key in 'Provd-Daemon-Psk'",
            )
        if not hmac.compare_digest(presented.encode(), self._psk):
            raise ConnectError(Code.UNAUTHENTICATED, "invalid daemon pre-shared key")

    async def on_end(
        self, token: None, ctx: RequestContext[Any, Any], error: Exception | None
    ) -> None:
        return None
