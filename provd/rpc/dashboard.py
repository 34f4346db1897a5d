"""The web dashboard's files (`provd/web/`), served at `/` and `/ui/<name>` on the
main port (docs/dashboard.md).

The dashboard is static: hand-written HTML, CSS and ES modules that talk to provd only
through the public provd.v1 API with the admin token the user types in, so it has no
power an API client lacks, and this module serves files and nothing else.

What a request can reach is fixed here, at import: `ASSETS` maps each URL path to one
file of `provd/web/` and its content type. The request path is only ever looked up in
that table, never joined to a directory, so no path (`/ui/../rpc/auth.py`,
`/ui/%2e%2e/`, a symlink) can reach any other file. Unknown paths under `/ui/` get
404.

Every answer, 404s and 405s included, carries the same strict headers
(`SECURITY_HEADERS`): a Content-Security-Policy that allows scripts, styles and
`fetch` from this origin only, no inline script or style, no framing, no `<base>`,
and Trusted Types enforced with no policy, so the page cannot assign HTML to
`innerHTML` and the like even by mistake; plus `nosniff`, `DENY` framing and no
referrer. Files are sent with `Cache-Control: no-cache` and a strong ETag: browsers
keep them but ask each time, and get a 304 while the file is unchanged, so an upgrade
of provd is seen on the next load without fingerprinted file names (there is no build
step to make them).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

WEB_DIR: Final = Path(__file__).resolve().parent.parent / "web"
# Where the dashboard's own files live in URLs; `/` is its page.
ASSET_PREFIX: Final = "/ui/"

_JS = "text/javascript; charset=utf-8"
# URL path → (file in provd/web/, Content-Type). The only files the dashboard serves.
ASSETS: Final[Mapping[str, tuple[str, str]]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/ui/style.css": ("style.css", "text/css; charset=utf-8"),
    "/ui/app.js": ("app.js", _JS),
    "/ui/api.js": ("api.js", _JS),
    "/ui/dom.js": ("dom.js", _JS),
    "/ui/jobs.js": ("jobs.js", _JS),
    "/ui/job.js": ("job.js", _JS),
    "/ui/daemons.js": ("daemons.js", _JS),
    "/ui/quota.js": ("quota.js", _JS),
    "/ui/queues.js": ("queues.js", _JS),
    "/ui/table_page.js": ("table_page.js", _JS),
    "/ui/create.js": ("create.js", _JS),
    "/ui/activity.js": ("activity.js", _JS),
    "/ui/charts.js": ("charts.js", _JS),
    "/ui/favicon.svg": ("favicon.svg", "image/svg+xml"),
}

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def is_dashboard_path(path: str) -> bool:
    """Whether the dashboard answers `path` (its page, or anything under `/ui/`)."""
    return path == "/" or path.startswith(ASSET_PREFIX)


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: bytes
    etag: bytes


class Dashboard:
    """The ASGI endpoint for `is_dashboard_path` paths: GET and HEAD of `ASSETS`.

    The files are read once, when the server builds its app. A file missing from the
    installation (a package built without provd/web/) is logged and answered with 404,
    rather than stopping the server, which serves its API without the dashboard.
    """

    def __init__(self, web_dir: Path = WEB_DIR) -> None:
        self._files: dict[str, _File] = {}
        missing: list[str] = []
        for path, (name, content_type) in ASSETS.items():
            try:
                body = (web_dir / name).read_bytes()
            except OSError:
                missing.append(name)
                continue
            etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
            self._files[path] = _File(body, content_type.encode(), etag)
        if missing:
            logger.error(
                "the web dashboard is incomplete: %s missing from %s (a build without"
                " provd/web/?); those paths answer 404",
                ", ".join(missing),
                web_dir,
            )

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed\n", extra=[(b"allow", b"GET, HEAD")])
            return
        file = self._files.get(scope["path"])
        if file is None:
            await _answer(send, 404, b"not found\n", head=method == "HEAD")
            return
        if _etag_matches(scope, file.etag):
            await _answer(send, 304, b"", etag=file.etag, content_type=None)
            return
        await _answer(
            send,
            200,
            file.body,
            content_type=file.content_type,
            etag=file.etag,
            head=method == "HEAD",
        )


def _etag_matches(scope: dict[str, Any], etag: bytes) -> bool:
    """Whether the request's If-None-Match names `etag` (or is `*`)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"if-none-match":
            tags = {tag.strip().removeprefix(b"W/") for tag in value.split(b",")}
            return etag in tags or b"*" in tags
    return False


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes | None = b"text/plain; charset=utf-8",
    etag: bytes | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
    head: bool = False,
) -> None:
    """One complete response with the security headers; files are `no-cache` (kept,
    revalidated by ETag), errors `no-store`."""
    headers = [*SECURITY_HEADERS, *(extra or [])]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if etag is not None:
        headers += [(b"etag", etag), (b"cache-control", b"no-cache")]
    else:
        headers.append((b"cache-control", b"no-store"))
    if status != 304:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head or status == 304 else body})
