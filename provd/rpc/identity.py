"""Who a daemon is, from the headers it sends on every call (docs/contract/api.md).

Parsing is cached by the raw header values: a daemon sends the same ones on every
call, so the hot path does a dictionary look-up.
"""

from __future__ import annotations

import re
import uuid
from functools import lru_cache

from connectrpc.request import Headers

from provd import model
from provd.errors import FailedPrecondition, InvalidArgument
from provd.protocol import (
    API_VERSION_HEADER,
    NAME_HEADER,
    ORGANIZATION_HEADER,
    PROVISIONERS_HEADER,
    TAGS_HEADER,
    VERSION_HEADER,
)
from provd.rpc import validate

SUPPORTED_MAJOR = 1
SUPPORTED_MINOR = 1
_API_VERSION = re.compile(r"^(\d+)\.(\d+)$")
_DAEMON_NAMESPACE = uuid.UUID("6f1c56d2-5d8e-4d55-9a53-2f0c2a4d7a10")


def daemon_from_headers(headers: Headers) -> model.Daemon:
    return _parse(
        headers.get(NAME_HEADER, ""),
        headers.get(PROVISIONERS_HEADER, ""),
        headers.get(TAGS_HEADER, ""),
        headers.get(ORGANIZATION_HEADER, ""),
        headers.get(API_VERSION_HEADER, ""),
        headers.get(VERSION_HEADER, ""),
    )


@lru_cache(maxsize=4096)
def _parse(
    name: str, provisioners: str, tags: str, organization: str, api_version: str, version: str
) -> model.Daemon:
    name = _header_name(name.strip())
    org = validate.name(organization.strip(), "Provd-Daemon-Organization", required=False)
    org = org or model.DEFAULT_ORGANIZATION
    parsed_provisioners = tuple(
        dict.fromkeys(
            validate.name(p.strip(), "Provd-Daemon-Provisioners")
            for p in provisioners.split(",")
            if p.strip()
        )
    )
    if not parsed_provisioners:
        raise InvalidArgument(
            "Provd-Daemon-Provisioners: is required (comma-separated provisioner types, e.g. echo)"
        )
    normalized = model.normalize_tags(_parse_tags(tags))
    return model.Daemon(
        id=str(uuid.uuid5(_DAEMON_NAMESPACE, f"{org}\x00{name}\x00{normalized['owner']}")),
        organization=org,
        name=name,
        owner=normalized["owner"],
        provisioners=parsed_provisioners,
        tags=normalized,
        version=validate.text(version.strip(), "Provd-Daemon-Version", 128),
        api_version=_check_api_version(api_version.strip() or "1.0"),
    )


def _header_name(name: str) -> str:
    if not name:
        raise InvalidArgument("Provd-Daemon-Name: is required (a stable name for this daemon)")
    if len(name) > 128 or not name.isprintable():
        raise InvalidArgument(
            f"Provd-Daemon-Name: {name[:80]!r} must be 1-128 printable characters"
        )
    return name


def _parse_tags(value: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, tag_value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(f"Provd-Daemon-Tags: {item.strip()[:80]!r} is not key=value")
        tags[key.strip()] = tag_value.strip()
    return validate.string_map(tags, "Provd-Daemon-Tags")


def _check_api_version(value: str) -> str:
    match = _API_VERSION.match(value)
    if match is None:
        raise InvalidArgument(f"Provd-Api-Version: {value[:40]!r} is not MAJOR.MINOR")
    major, minor = int(match.group(1)), int(match.group(2))
    if major != SUPPORTED_MAJOR or minor > SUPPORTED_MINOR:
        raise FailedPrecondition(
            f"Provd-Api-Version: {value} is not supported; this server speaks"
            f" {SUPPORTED_MAJOR}.0 to {SUPPORTED_MAJOR}.{SUPPORTED_MINOR}"
        )
    return f"{major}.{minor}"
