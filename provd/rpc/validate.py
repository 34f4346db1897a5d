"""Field checks for incoming messages. Each error names the field by its JSON name,
so a client sees exactly what to fix."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from provd.errors import InvalidArgument

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_TAGS = 64
MAX_TAG_LENGTH = 256
MAX_TEXT = 1024
# A user's groups (quota): each is one SQL parameter, so the count stays well inside
# SQLite's limit on the parameters of one statement.
MAX_GROUPS = 1024


def name(value: str, field: str, *, required: bool = True) -> str:
    if not value:
        if required:
            raise InvalidArgument(f"{field}: is required")
        return value
    if not _NAME.match(value):
        raise InvalidArgument(
            f"{field}: {value[:80]!r} must be 1-64 letters, digits, '_', '-' or '.'"
        )
    return value


def sha256(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field}: is required (the hash UploadFile returned)")
    if not _SHA256.match(value):
        raise InvalidArgument(f"{field}: {value[:80]!r} is not a SHA-256 hex digest")
    return value


def text(value: str, field: str, limit: int = MAX_TEXT) -> str:
    if len(value) > limit:
        raise InvalidArgument(f"{field}: is {len(value)} characters; the limit is {limit}")
    return value


def string_map(values: Mapping[str, str], field: str) -> dict[str, str]:
    if len(values) > MAX_TAGS:
        raise InvalidArgument(f"{field}: has {len(values)} entries; the limit is {MAX_TAGS}")
    for key, value in values.items():
        if not key:
            raise InvalidArgument(f"{field}: keys must not be empty")
        if len(key) > MAX_TAG_LENGTH or len(value) > MAX_TAG_LENGTH:
            raise InvalidArgument(
                f"{field}: {key[:40]!r} is too long (keys and values: {MAX_TAG_LENGTH} at most)"
            )
    return dict(values)


def string_list(
    values: Sequence[str], field: str, limit: int = MAX_GROUPS, length: int = MAX_TAG_LENGTH
) -> list[str]:
    if len(values) > limit:
        raise InvalidArgument(f"{field}: has {len(values)} entries; the limit is {limit}")
    for index, value in enumerate(values):
        if len(value) > length:
            raise InvalidArgument(
                f"{field}[{index}]: is {len(value)} characters; the limit is {length}"
            )
    return list(values)
