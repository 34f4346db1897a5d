"""Why a call failed, for programs: a `JobErrorCode` in a google.rpc.ErrorInfo detail.

A failed call's code and message are for people. When a daemon must act on one
particular failure (fail the job with that error code, say), the server attaches a
google.rpc.ErrorInfo detail whose `reason` is the `JobErrorCode` and whose `domain`
is "provd"; the message text stays free to change. Connect carries it in the error's
`details`, gRPC in `grpc-status-details-bin`, so any client can read it.

Both sides use this module (the server in provd.rpc.errors, daemons directly); it
imports nothing of the server. ErrorInfo is built in a descriptor pool of its own,
so it never clashes with another copy of google/rpc/error_details.proto in the
same process.
"""

from __future__ import annotations

from typing import Any as AnyType

from connectrpc.errors import ConnectError, ErrorDetail
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from protobuf.wkt import Any

from provd.protocol import JobErrorCode

ERROR_INFO = "google.rpc.ErrorInfo"
DOMAIN = "provd"


def _error_info_class() -> AnyType:
    """google.rpc.ErrorInfo's `reason` (1) and `domain` (2); its `metadata` map is
    not used, and is skipped when read."""
    file = descriptor_pb2.FileDescriptorProto(
        name="google/rpc/error_details.proto", package="google.rpc", syntax="proto3"
    )
    message = file.message_type.add(name="ErrorInfo")
    for number, name in enumerate(("reason", "domain"), start=1):
        message.field.add(
            name=name,
            number=number,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(file.SerializeToString())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(ERROR_INFO))


_ErrorInfo = _error_info_class()


def reason_detail(reason: JobErrorCode) -> ErrorDetail:
    """The error detail that tells a client the failure's `reason`."""
    info = _ErrorInfo(reason=reason.value, domain=DOMAIN)
    return ErrorDetail(
        Any(type_url=f"type.googleapis.com/{ERROR_INFO}", value=info.SerializeToString())
    )


def reason_of(error: ConnectError) -> JobErrorCode | None:
    """The `JobErrorCode` that provd attached to `error`, or None if it gave none."""
    for detail in error.details:
        if detail.type_name != ERROR_INFO:
            continue
        try:
            info = _ErrorInfo.FromString(detail.message_bytes)
            if info.domain == DOMAIN:
                return JobErrorCode(info.reason)
        except (DecodeError, ValueError):  # garbage, or a reason this client predates
            continue
    return None
