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

from collections.abc import Callable, Iterable
from functools import cache
from types import ModuleType
from typing import Any, Final

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

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
V1_PATH: Final = "/grpc.reflection.v1.ServerReflection"
V1ALPHA_PATH: Final = "/grpc.reflection.v1alpha.ServerReflection"


def reflection_apps(modules: Iterable[ModuleType] = SERVED_FILES) -> list[LazyApp]:
    """The v1 and v1alpha reflection apps for the services declared in `modules`.

    Each is built on its first call, not at start-up: connectrpc-grpcreflect's
    generated code imports connectrpc's HTTP client (pyqwest, ~3 MB resident), and the
    descriptors take ~40 ms to read; a server that nobody asks for its schema pays
    for neither."""
    roots = tuple(module.DESCRIPTOR for module in modules)

    @cache
    def files() -> list[Any]:
        from protobuf.wkt import FileDescriptorSet

        registry = FileDescriptorSet.from_binary(_descriptor_set(roots)).to_registry()
        return [registry.file(root.name) for root in roots]

    def v1() -> Any:
        from connectrpc_grpcreflect import ServerReflectionASGIApplication, ServerReflectionService

        return ServerReflectionASGIApplication(ServerReflectionService(*files()))

    def v1alpha() -> Any:
        from connectrpc_grpcreflect import (
            ServerReflectionAlphaASGIApplication,
            ServerReflectionAlphaService,
        )

        return ServerReflectionAlphaASGIApplication(ServerReflectionAlphaService(*files()))

    return [LazyApp(V1_PATH, v1), LazyApp(V1ALPHA_PATH, v1alpha)]


class LazyApp:
    """An ASGI app for the service at `path`, built by `build` on its first request."""

    def __init__(self, path: str, build: Callable[[], Any]) -> None:
        self.path = path
        self._build = build
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            app = self._build()
            if app.path != self.path:
                raise RuntimeError(f"reflection app serves {app.path}, not {self.path}")
            self._app = app
        await self._app(scope, receive, send)


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
