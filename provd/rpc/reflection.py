"""gRPC server reflection (v1 and v1alpha), so `buf curl` and `grpcurl` need no .proto files.

The services come from `connectrpc-grpcreflect`, connect-python's own reflection
package. It describes services with protobuf-py descriptors, while provd's generated
code uses google.protobuf; the bridge is the schema itself: each served file's
descriptor, as generated (`serialized_pb`), in dependency order, read back with
protobuf-py's `FileDescriptorSet.to_registry()`.

Reflection takes no credentials: it exposes the schema (which is public, in `proto/`),
never data. Every call it describes still needs its own credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from functools import cache
from types import ModuleType
from typing import Any

from connectrpc.server import ConnectASGIApplication
from connectrpc_grpcreflect import (
    ServerReflectionAlphaASGIApplication,
    ServerReflectionAlphaService,
    ServerReflectionASGIApplication,
    ServerReflectionService,
)
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from protobuf.wkt import FileDescriptorSet

from provd.gen.provd.v1 import backup_pb2, daemons_pb2, jobs_pb2, keys_pb2, quota_pb2
from provd.gen.provisionerd import provisionerd_pb2

# The files whose services reflection lists (their imports are served too).
SERVED_FILES: tuple[ModuleType, ...] = (
    provisionerd_pb2,
    jobs_pb2,
    daemons_pb2,
    quota_pb2,
    keys_pb2,
    backup_pb2,
)


def reflection_apps(
    modules: Iterable[ModuleType] = SERVED_FILES,
) -> list[ConnectASGIApplication[Any]]:
    """The v1 and v1alpha reflection apps for the services declared in `modules`.

    The descriptors are read on the first reflection call, not at start-up (~40 ms)."""
    roots = tuple(module.DESCRIPTOR for module in modules)

    @cache
    def files() -> list[Any]:
        registry = FileDescriptorSet.from_binary(_descriptor_set(roots)).to_registry()
        return [registry.file(root.name) for root in roots]

    return [
        ServerReflectionASGIApplication(_Lazy(lambda: ServerReflectionService(*files()))),
        ServerReflectionAlphaASGIApplication(_Lazy(lambda: ServerReflectionAlphaService(*files()))),
    ]


class _Lazy:
    """A reflection service made on its first call."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = cache(make)

    async def server_reflection_info(self, request: Any, ctx: Any) -> AsyncIterator[Any]:
        async for response in self._make().server_reflection_info(request, ctx):
            yield response


def _descriptor_set(roots: Iterable[FileDescriptor]) -> bytes:
    """A serialized FileDescriptorSet of `roots` and their imports, imports first."""
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
    seen: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        ordered.append(descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb))

    for root in roots:
        add(root)
    serialized: bytes = descriptor_pb2.FileDescriptorSet(file=ordered).SerializeToString()
    return serialized
