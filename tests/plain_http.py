"""A plain HTTP GET from trio, for the server's non-RPC pages (/metrics, /healthz)."""

from __future__ import annotations

import urllib.error
import urllib.request

import trio


async def http_get(url: str) -> tuple[int, str]:
    """GET `url`: its status and body (errors included)."""

    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    return await trio.to_thread.run_sync(get)
