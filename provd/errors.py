"""Errors the service and store raise for a caller's mistake or a missing thing.

They carry no transport detail: the RPC layer maps each class to its Connect/gRPC
code in one place (provd.rpc.errors), so the service never imports connectrpc.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from provd.protocol import JobErrorCode


class ProvdError(Exception):
    """Base of the errors a client can be told about; the message is shown to it.

    `reason` tells programs which failure this is, so that they never match the
    message (sent as an error detail: provd.error_reasons).
    """

    def __init__(self, message: str, *, reason: JobErrorCode | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidArgument(ProvdError):
    """The request is malformed; the message names the field."""


class NotFound(ProvdError):
    """The named job, file or daemon does not exist."""


class FailedPrecondition(ProvdError):
    """The request is well formed but the job is in the wrong state for it."""


class PermissionDenied(ProvdError):
    """The caller is authenticated but may not do this: touch another daemon's job, or
    claim more than its daemon key allows (the message names the header)."""


class Unauthenticated(ProvdError):
    """The caller's credential is missing, wrong, or was revoked (a deleted daemon key)."""


class AlreadyExists(ProvdError):
    """Something with this name exists already (a daemon key's name)."""


class ResourceExhausted(ProvdError):
    """A size cap was exceeded."""


class StoreClosed(ProvdError):
    """The store is shutting down and takes no more work."""


class StoreBusy(ProvdError):
    """Another program held the database's write lock longer than provd waits (SQLite's
    busy timeout), so the write was not stored. Clients get `unavailable` and may
    retry: nothing is broken."""


class StoreFull(ResourceExhausted):
    """The database's disk had no room for a write, so none of it was stored.

    Nothing is broken: the write can be retried, and writes succeed again, without a
    restart, as soon as there is space. A subclass of `ResourceExhausted`, so clients
    get `resource_exhausted`.
    """


class StoreUnusable(ProvdError):
    """The database cannot be opened as it is; raised by `open_sqlite_store`.

    Its message is one line for the operator: what is wrong, then what to do (a data
    directory that cannot be created, a file that is not provd's database, a schema
    from a newer provd, a lock that is never released, a read-only file).
    """


@contextmanager
def tolerate_store_outage(logger: logging.Logger, task: str) -> Iterator[None]:
    """One pass of a background task (`task` names it) that neither a full disk
    (`StoreFull`) nor a database that cannot be reached (`StoreClosed`, PostgreSQL's
    `StoreUnreachable`) may end: the error is logged and the next pass tries again. A
    store closed at shutdown is no concern: the task is cancelled before it closes."""
    try:
        yield
    except StoreFull as error:
        logger.warning("%s could not write: %s", task, error)
    except StoreClosed as error:
        logger.warning("%s could not reach the database: %s", task, error)
