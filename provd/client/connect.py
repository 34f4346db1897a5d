"""connectrpc clients for provd's services, usable from trio: what daemons and tests
use (the admin commands use the lighter `connect_lite`, which starts faster).

connectrpc's async client runs on asyncio only, so provd uses the library's sync
clients and calls them from trio worker threads (`call`). Credentials are added by
a metadata interceptor, so every call on a client carries them.

Importing this module is cheap: connectrpc, pyqwest, the generated clients and trio
are imported by the functions that use them.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from provd.protocol import (
    API_VERSION_HEADER,
    KEY_HEADER,
    NAME_HEADER,
    ORGANIZATION_HEADER,
    PROVISIONERS_HEADER,
    PSK_HEADER,
    TAGS_HEADER,
    VERSION_HEADER,
)

if TYPE_CHECKING:
    from connectrpc.protocol import ProtocolType
    from connectrpc.request import RequestContext
    from pyqwest import SyncClient, SyncHTTPTransport

    from provd.gen.provd.v1.daemons_connect_client import DaemonServiceClientSync
    from provd.gen.provd.v1.jobs_connect_client import JobServiceClientSync
    from provd.gen.provd.v1.keys_connect_client import KeyServiceClientSync
    from provd.gen.provd.v1.quota_connect_client import QuotaServiceClientSync
    from provd.gen.provisionerd.provisionerd_connect_client import ProvisionerDaemonClientSync
    from provd.gen.provisionerd.provisionerd_pb2 import CancelAcquire

T = TypeVar("T")
C = TypeVar("C")  # a generated sync client class


class StaticHeaders:
    """A client metadata interceptor that adds the same headers to every call."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)

    def on_start_sync(self, ctx: RequestContext[Any, Any]) -> None:
        for name, value in self._headers.items():
            ctx.request_headers[name] = value

    def on_end_sync(
        self, token: None, ctx: RequestContext[Any, Any], error: Exception | None
    ) -> None:
        return None


def http_transport(*, http2: bool = True, urls: Iterable[str] | None = None) -> SyncHTTPTransport:
    """A transport of our own, to close when done (its threads must not outlive the
    program). HTTP/2 is prior knowledge for http:// and ALPN for https://. It trusts
    the system's CAs (with SSL_CERT_FILE and SSL_CERT_DIR), or certifi's when the
    system has none; given `urls` that are all http://, it needs no CAs at all
    (`provd.client.tls_roots`). Every pyqwest transport of provd's is made here."""
    from pyqwest import HTTPVersion

    from provd.client.tls_roots import sync_http_transport

    if http2:
        return sync_http_transport(urls=urls, http_version=HTTPVersion.HTTP2)
    return sync_http_transport(urls=urls)


def http2_client(url: str | None = None) -> SyncClient:
    """An HTTP client that speaks cleartext HTTP/2 (prior knowledge) to http:// URLs,
    and HTTP/2 over TLS to https:// ones, trusting CAs as `http_transport` does (none
    needed if `url` is http://)."""
    from pyqwest import SyncClient

    return SyncClient(http_transport(urls=None if url is None else [url]))


def job_client(
    url: str,
    admin_token: str | None,
    *,
    protocol: ProtocolType | None = None,
    json: bool = False,
    http_client: SyncClient | None = None,
) -> JobServiceClientSync:
    """A `JobService` client that sends `Authorization: Bearer <admin_token>`; Connect
    unless another `protocol` is given."""
    from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
    from connectrpc.protocol import ProtocolType

    from provd.gen.provd.v1.jobs_connect_client import JobServiceClientSync

    return JobServiceClientSync(
        url,
        protocol=ProtocolType.CONNECT if protocol is None else protocol,
        codec=google_protobuf_json_codec() if json else google_protobuf_binary_codec(),
        interceptors=[_bearer(admin_token)],
        http_client=http_client,
    )


def daemon_service_client(
    url: str, admin_token: str | None, *, http_client: SyncClient | None = None
) -> DaemonServiceClientSync:
    """A `DaemonService` client that sends `Authorization: Bearer <admin_token>`."""
    from provd.gen.provd.v1.daemons_connect_client import DaemonServiceClientSync

    return _admin_client(DaemonServiceClientSync, url, admin_token, http_client)


def key_client(
    url: str, admin_token: str | None, *, http_client: SyncClient | None = None
) -> KeyServiceClientSync:
    """A `KeyService` client (daemon keys) that sends `Authorization: Bearer <admin_token>`."""
    from provd.gen.provd.v1.keys_connect_client import KeyServiceClientSync

    return _admin_client(KeyServiceClientSync, url, admin_token, http_client)


def quota_client(
    url: str, admin_token: str | None, *, http_client: SyncClient | None = None
) -> QuotaServiceClientSync:
    """A `QuotaService` client that sends `Authorization: Bearer <admin_token>`."""
    from provd.gen.provd.v1.quota_connect_client import QuotaServiceClientSync

    return _admin_client(QuotaServiceClientSync, url, admin_token, http_client)


def _admin_client(
    client_class: Callable[..., C],
    url: str,
    admin_token: str | None,
    http_client: SyncClient | None,
) -> C:
    """A generated sync client of a provd.v1 service: Connect, binary protobuf, and the
    admin token on every call."""
    from connectrpc.compat import google_protobuf_binary_codec

    return client_class(
        url,
        codec=google_protobuf_binary_codec(),
        interceptors=[_bearer(admin_token)],
        http_client=http_client,
    )


def _bearer(admin_token: str | None) -> StaticHeaders:
    return StaticHeaders({"authorization": f"Bearer {admin_token}"} if admin_token else {})


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one blocking client call in a worker thread."""
    import trio

    return await trio.to_thread.run_sync(partial(fn, *args, **kwargs))


def daemon_headers(
    psk: str = "",
    *,
    key: str = "",
    name: str,
    provisioners: Sequence[str] = ("echo",),
    tags: Mapping[str, str] | None = None,
    organization: str = "",
    api_version: str = "1.1",
    version: str = "",
) -> dict[str, str]:
    """The headers a daemon identifies itself with on every call (docs/daemon-protocol.md):
    with a daemon `key` (docs/keys.md) if given, else with the pre-shared key `psk`.
    With a key, empty `provisioners`, `tags` and `organization` are left out: the key
    supplies them."""
    headers = {KEY_HEADER: key} if key else {PSK_HEADER: psk}
    headers[NAME_HEADER] = name
    if provisioners or not key:
        headers[PROVISIONERS_HEADER] = ",".join(provisioners)
    if tags or not key:
        headers[TAGS_HEADER] = ",".join(f"{k}={v}" for k, v in (tags or {}).items())
    headers[API_VERSION_HEADER] = api_version
    if organization:
        headers[ORGANIZATION_HEADER] = organization
    if version:
        headers[VERSION_HEADER] = version
    return headers


def daemon_client(
    url: str,
    psk: str = "",
    *,
    key: str = "",
    name: str,
    provisioners: Sequence[str] = ("echo",),
    tags: Mapping[str, str] | None = None,
    organization: str = "",
    api_version: str = "1.1",
    version: str = "",
    protocol: ProtocolType | None = None,
    http_client: SyncClient | None = None,
) -> ProvisionerDaemonClientSync:
    """A `ProvisionerDaemon` client that identifies itself with provd's daemon headers
    (`daemon_headers`: a daemon `key`, or the pre-shared key `psk`).

    Bidirectional streams need HTTP/2: pass `http2_client()` (the default here)."""
    headers = daemon_headers(
        psk,
        key=key,
        name=name,
        provisioners=provisioners,
        tags=tags,
        organization=organization,
        api_version=api_version,
        version=version,
    )
    return daemon_client_for(url, headers, protocol=protocol, http_client=http_client)


def daemon_client_for(
    url: str,
    headers: Mapping[str, str],
    *,
    protocol: ProtocolType | None = None,
    http_client: SyncClient | None = None,
) -> ProvisionerDaemonClientSync:
    """A `ProvisionerDaemon` client sending `headers` (see `daemon_headers`) on every
    call, over Connect (unless another `protocol` is given) and cleartext HTTP/2
    (unless given another HTTP client)."""
    from connectrpc.compat import google_protobuf_binary_codec
    from connectrpc.protocol import ProtocolType

    from provd.gen.provisionerd.provisionerd_connect_client import ProvisionerDaemonClientSync

    return ProvisionerDaemonClientSync(
        url,
        protocol=ProtocolType.CONNECT if protocol is None else protocol,
        codec=google_protobuf_binary_codec(),
        interceptors=[StaticHeaders(headers)],
        http_client=http_client or http2_client(url),
    )


class AcquireRequests:
    """The client's side of an AcquireJobWithCancel stream, fed from any thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[CancelAcquire | None] = queue.SimpleQueue()
        self._ended = False

    def __iter__(self) -> Iterator[CancelAcquire]:
        return self

    def __next__(self) -> CancelAcquire:
        if self._ended:
            raise StopIteration
        item = self._queue.get()
        if item is None:
            self._ended = True
            raise StopIteration
        return item

    def cancel(self) -> None:
        """Send CancelAcquire."""
        from provd.gen.provisionerd.provisionerd_pb2 import CancelAcquire

        self._queue.put(CancelAcquire())

    def close(self) -> None:
        """Half-close: the client sends nothing more (the server treats it as a cancel)."""
        self._queue.put(None)
