"""One place that turns service errors into Connect/gRPC status codes.

Every handler raises `provd.errors` types; this interceptor maps them, so a
client's mistake can never surface as `unknown` or `internal`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from provd import errors
from provd.error_reasons import reason_detail

CODES: dict[type[errors.ProvdError], Code] = {
    errors.InvalidArgument: Code.INVALID_ARGUMENT,
    errors.NotFound: Code.NOT_FOUND,
    errors.FailedPrecondition: Code.FAILED_PRECONDITION,
    errors.PermissionDenied: Code.PERMISSION_DENIED,
    errors.Unauthenticated: Code.UNAUTHENTICATED,
    errors.AlreadyExists: Code.ALREADY_EXISTS,
    errors.ResourceExhausted: Code.RESOURCE_EXHAUSTED,
    errors.StoreClosed: Code.UNAVAILABLE,
    errors.StoreBusy: Code.UNAVAILABLE,
}


def to_connect_error(error: errors.ProvdError) -> ConnectError:
    """The Connect error for `error`: its class's code, its message, and its reason
    as a google.rpc.ErrorInfo detail when it has one."""
    code = next((CODES[cls] for cls in type(error).__mro__ if cls in CODES), Code.INTERNAL)
    details = () if error.reason is None else (reason_detail(error.reason),)
    return ConnectError(code, str(error), details)


class ErrorMapping:
    """A unary, server-stream and bidi interceptor that maps `ProvdError`."""

    async def intercept_unary(
        self,
        call_next: Callable[[Any, RequestContext[Any, Any]], Awaitable[Any]],
        request: Any,
        ctx: RequestContext[Any, Any],
    ) -> Any:
        try:
            return await call_next(request, ctx)
        except errors.ProvdError as error:
            raise to_connect_error(error) from None

    async def intercept_server_stream(
        self,
        call_next: Callable[[Any, RequestContext[Any, Any]], AsyncGenerator[Any]],
        request: Any,
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[Any]:
        # aclosing: when the transport closes this generator (a failed send), the
        # handler's generator must be closed too, at once, so its cleanup runs.
        try:
            async with aclosing(call_next(request, ctx)) as messages:
                async for message in messages:
                    yield message
        except errors.ProvdError as error:
            raise to_connect_error(error) from None

    async def intercept_bidi_stream(
        self,
        call_next: Callable[[AsyncIterator[Any], RequestContext[Any, Any]], AsyncGenerator[Any]],
        request: AsyncIterator[Any],
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[Any]:
        # aclosing: when the transport closes this generator (a failed send), the
        # handler's generator must be closed too, at once, so its cleanup runs.
        try:
            async with aclosing(call_next(request, ctx)) as messages:
                async for message in messages:
                    yield message
        except errors.ProvdError as error:
            raise to_connect_error(error) from None
