"""ListJobs page tokens: opaque to clients, and checked, so a token the server did not
issue is `invalid_argument` rather than a number handed to the store.

A token carries the position to continue from (the `seq` of the last job listed) and
an HMAC over that position and the query's filters. The key is derived from the admin
token, which is what every provd process serving one database shares: the credentials
beside the database, or the `PROVD_ADMIN_TOKEN` they were all given. So a token stays
valid across a restart and from one process to another on the same database, and
stops being valid when the admin token changes (the client then lists from the start).
The filters are in the HMAC so that a token is only good for the query it came from.
A filter added later (the job type) joins the HMAC only when it is set, so a token
issued before it existed, or by a process that does not know it yet, still holds for
the same query without it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import struct

from provd.errors import InvalidArgument
from provd.model import JobQuery

_VERSION = b"\x02"
_SEQ = struct.Struct(">Q")
_MAC_BYTES = 16
_MAX_SEQ = 2**63 - 1  # SQLite's INTEGER
_INVALID = "pageToken: not a token this server issued for this query"


class PageTokens:
    """Issues and checks the page tokens of one server."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_admin_token(cls, admin_token: str) -> PageTokens:
        """Tokens keyed by a key derived from (never equal to) the admin token."""
        key = hmac.new(admin_token.encode(), b"provd page tokens v2", hashlib.sha256).digest()
        return cls(key)

    def issue(self, before_seq: int, query: JobQuery) -> str:
        """The token that continues `query` before `before_seq`."""
        body = _VERSION + _SEQ.pack(before_seq)
        token = body + self._mac(body, query)
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def check(self, token: str, query: JobQuery) -> int:
        """The position `token` continues from; `invalid_argument` unless this server
        issued it for the same filters as `query`."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, binascii.Error):
            raise InvalidArgument(_INVALID) from None
        if len(raw) != len(_VERSION) + _SEQ.size + _MAC_BYTES or not raw.startswith(_VERSION):
            raise InvalidArgument(_INVALID)
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body, query)):
            raise InvalidArgument(_INVALID)
        before_seq: int = _SEQ.unpack(body[len(_VERSION) :])[0]
        if not 0 < before_seq <= _MAX_SEQ:  # never issued so; checked all the same
            raise InvalidArgument(_INVALID)
        return before_seq

    def _mac(self, body: bytes, query: JobQuery) -> bytes:
        fields: list[object] = [
            query.status.name if query.status is not None else None,
            query.organization,
            query.provisioner,
            sorted(query.tags.items()),
        ]
        if query.type is not None:  # a fifth item: never equal to a query without one
            fields.append(query.type.name)
        filters = json.dumps(fields, separators=(",", ":")).encode()
        return hmac.new(self._key, body + filters, hashlib.sha256).digest()[:_MAC_BYTES]
