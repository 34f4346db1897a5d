"""Errors the service and store raise for a caller's mistake or a missing thing.

They carry no transport detail: the RPC layer maps each class to its Connect/gRPC
code in one place (provd.rpc.errors), so the service never imports connectrpc.
"""

from __future__ import annotations


class ProvdError(Exception):
    """Base of the errors a client can be told about; the message is shown to it."""


class InvalidArgument(ProvdError):
    """The request is malformed; the message names the field."""


class NotFound(ProvdError):
    """The named job, file or daemon does not exist."""


class FailedPrecondition(ProvdError):
    """The request is well formed but the job is in the wrong state for it."""


class PermissionDenied(ProvdError):
    """The caller is authenticated but may not touch this job."""


class ResourceExhausted(ProvdError):
    """A size cap was exceeded."""


class StoreClosed(ProvdError):
    """The store is shutting down and takes no more work."""
