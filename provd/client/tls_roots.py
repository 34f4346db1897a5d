"""The CA certificates provd's clients trust for https:// (and wss://): the system's
store when there is one, and certifi's bundle when there is none.

Why: the executable runs on systems with no CA store at all (a container image without
`ca-certificates`, a minimal VM). pyqwest, under `provd daemon`, refuses to build a
transport that asks for the system's roots when it finds none ("No CA certificates were
loaded from the system"), even for http://; the standard library's `ssl`, under the
admin commands and the WebSocket transport, loads nothing and fails every handshake.
So http:// asks for no roots at all, and https:// falls back to the bundle. The system's
store includes `SSL_CERT_FILE` and `SSL_CERT_DIR`, the documented way to trust a
private CA; when they are set but name nothing, that counts as no store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

    from pyqwest import SyncHTTPTransport

# The start of pyqwest's error (from rustls-native-certs) when the system has no roots.
_NO_SYSTEM_ROOTS = "No CA certificates were loaded"


def needs_tls(urls: Iterable[str]) -> bool:
    """Whether any of `urls` is https:// or wss://, the only ones that need CA roots."""
    return any(url.lower().startswith(("https://", "wss://")) for url in urls)


def bundled_ca_file() -> str:
    """The path of certifi's CA bundle (Mozilla's roots), which the wheel and the
    executable both carry."""
    import certifi

    return str(certifi.where())


def sync_http_transport(*, urls: Iterable[str] | None = None, **options: Any) -> SyncHTTPTransport:
    """A pyqwest transport with `options` (http_version, timeouts, ...) that trusts the
    system's CAs, or the bundled ones when the system has none. With `urls` and none of
    them https://, it trusts no CA at all and so needs no store."""
    from pyqwest import SyncHTTPTransport

    if urls is not None and not needs_tls(urls):
        return SyncHTTPTransport(**options)
    try:
        return SyncHTTPTransport(tls_include_system_certs=True, **options)
    except RuntimeError as error:
        if _NO_SYSTEM_ROOTS not in str(error):
            raise
    return SyncHTTPTransport(tls_ca_cert=Path(bundled_ca_file()).read_bytes(), **options)


def client_ssl_context() -> ssl.SSLContext:
    """The standard library's default client context (the system's CAs,
    `SSL_CERT_FILE`, `SSL_CERT_DIR`), with the bundled CAs instead when those hold none."""
    import ssl

    context = ssl.create_default_context()
    if not _has_default_roots(context):
        context.load_verify_locations(cafile=bundled_ca_file())
    return context


def _has_default_roots(context: ssl.SSLContext) -> bool:
    """Whether OpenSSL's default locations gave `context` any CA: the file's are loaded
    already; the directory's are looked up per handshake, so a non-empty directory
    counts."""
    import ssl

    if context.cert_store_stats()["x509_ca"]:
        return True
    paths = ssl.get_default_verify_paths()
    capath = os.environ.get(paths.openssl_capath_env) or paths.openssl_capath
    for directory in capath.split(os.pathsep):
        try:
            with os.scandir(directory) as entries:
                if any(entries):
                    return True
        except OSError:
            continue
    return False
