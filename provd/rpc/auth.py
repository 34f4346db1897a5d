"""Credential checks that run before a request body is read (metadata interceptors)."""

from __future__ import annotations

import hmac
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from provd.protocol import PSK_HEADER


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


class DaemonKeyAuth:
    """Admits daemon calls whose `Provd-Daemon-Psk` header matches the pre-shared key."""

    def __init__(self, psk: str) -> None:
        self._psk = psk.encode()

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        presented = ctx.request_headers.get(PSK_HEADER, "").strip()
        if not presented:
            raise ConnectError(
                Code.UNAUTHENTICATED, "missing credentials: send the 'Provd-Daemon-Psk' header"
            )
        if not hmac.compare_digest(presented.encode(), self._psk):
            raise ConnectError(Code.UNAUTHENTICATED, "invalid daemon pre-shared key")

    async def on_end(
        self, token: None, ctx: RequestContext[Any, Any], error: Exception | None
    ) -> None:
        return None
