"""One place that turns service errors into Connect/gRPC status codes.

Every handler raises `provd.errors` types; this interceptor maps them, so a
client's mistake can never surface as `unknown` or `internal`. A failure inside provd
(an unexpected exception, or a store that cannot write or be reached) logs one line
with the RPC method, the code and the job id when the request names one; a client's
mistake logs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from provd import errors
from provd.error_reasons import reason_detail

logger = logging.getLogger(__name__)

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


# Codes that say the failure was provd's, not the client's: logged.
_SERVER_SIDE = frozenset({Code.INTERNAL, Code.UNKNOWN, Code.UNAVAILABLE, Code.DATA_LOSS})


def _job_id(request: Any) -> str:
    """The job a request names (`job_id` in the daemon protocol, `id` in JobService's
    job calls), or ""."""
    for field in ("job_id", "id"):
        value = getattr(request, field, None)
        if isinstance(value, str) and value:
            return value
    return ""


def log_failure(
    error: BaseException, code: Code, ctx: RequestContext[Any, Any], request: Any
) -> None:
    """One line for a request that failed inside provd: method, code, job id; the
    traceback of an unexpected exception only at debug level."""
    method = ctx.method
    fields = {
        "rpc_method": f"{method.service_name}/{method.name}",
        "code": code.value,
        "job_id": _job_id(request),
    }
    described = str(error) or type(error).__name__
    if not isinstance(error, errors.ProvdError):
        described = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    logger.error(
        "%s failed (%s)%s: %s",
        fields["rpc_method"],
        code.value,
        f" for job {fields['job_id']}" if fields["job_id"] else "",
        described,
        extra=fields,
    )
    if not isinstance(error, errors.ProvdError):
        logger.debug("the traceback of that failure", exc_info=error, extra=fields)


def _map(error: Exception, ctx: RequestContext[Any, Any], request: Any) -> ConnectError:
    """The ConnectError to send for `error`; logs it when the failure was provd's."""
    if isinstance(error, errors.ProvdError):
        mapped = to_connect_error(error)
        if mapped.code in _SERVER_SIDE or isinstance(error, errors.StoreFull):
            log_failure(error, mapped.code, ctx, request)
        return mapped
    log_failure(error, Code.INTERNAL, ctx, request)
    return ConnectError(Code.INTERNAL, "internal error")


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
        except ConnectError:
            raise
        except Exception as error:
            raise _map(error, ctx, request) from None

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
        except ConnectError:
            raise
        except Exception as error:
            raise _map(error, ctx, request) from None

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
        except ConnectError:
            raise
        except Exception as error:
            raise _map(error, ctx, request) from None
