"""Who a daemon is, from the headers it sends on every call (docs/contract/api.md)
and, for a daemon that presented a daemon key, from the key (docs/keys.md).

On the pre-shared key the headers say everything, and the daemon's id derives from
(organization, name, owner). A key fixes the organization, the owner, the tags and
the provisioners allowed: headers may leave them out or narrow them (a subset of the
key's provisioners; the tags must be the key's exactly, as routing needs), and one
that contradicts the key is `permission_denied`, naming the header and what the key
allows. A key's daemon's id derives from (key id, name), in a namespace of its own:
names are unique within a key, and since a job's holder is a daemon id, a job
acquired under one key can be touched through that key only.

Parsing is cached by the raw header values (and the key): a daemon sends the same
ones on every call, so the hot path does a dictionary look-up.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from connectrpc.request import Headers

from provd import model
from provd.errors import FailedPrecondition, InvalidArgument, PermissionDenied
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
# Ids of keys' daemons: another namespace, so no header can spell a PSK daemon's id
# that equals a key's daemon's.
_KEY_DAEMON_NAMESPACE = uuid.UUID("b7d3e0a4-1c55-4f0e-8c61-6a2d93f4e8b2")


def daemon_from_headers(headers: Headers, key: model.DaemonKey | None = None) -> model.Daemon:
    """The daemon calling with `headers`, on the pre-shared key (`key` None) or on
    `key`. Raises `InvalidArgument` for a malformed header, `FailedPrecondition` for an
    API version provd does not speak, `PermissionDenied` for a header that asks for
    more than the key allows."""
    raw = (
        headers.get(NAME_HEADER, ""),
        headers.get(PROVISIONERS_HEADER, ""),
        headers.get(TAGS_HEADER, ""),
        headers.get(ORGANIZATION_HEADER, ""),
        headers.get(API_VERSION_HEADER, ""),
        headers.get(VERSION_HEADER, ""),
    )
    if key is None:
        return _parse(*raw)
    return _parse_for_key(_Scope.of(key), *raw)


@lru_cache(maxsize=4096)
def _parse(
    name: str, provisioners: str, tags: str, organization: str, api_version: str, version: str
) -> model.Daemon:
    name = _header_name(name.strip())
    org = validate.name(organization.strip(), "Provd-Daemon-Organization", required=False)
    org = org or model.DEFAULT_ORGANIZATION
    parsed_provisioners = _provisioners(provisioners)
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


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a key fixes, hashable (the cache's key)."""

    key_id: str
    key_name: str
    organization: str
    owner: str
    provisioners: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, key: model.DaemonKey) -> _Scope:
        return cls(
            key.id,
            key.name,
            key.organization,
            key.owner,
            tuple(key.provisioners),
            tuple(sorted(key.tags.items())),
        )


@lru_cache(maxsize=4096)
def _parse_for_key(
    scope: _Scope,
    name: str,
    provisioners: str,
    tags: str,
    organization: str,
    api_version: str,
    version: str,
) -> model.Daemon:
    name = _header_name(name.strip())
    key = f"key {scope.key_name!r}"
    org = validate.name(organization.strip(), "Provd-Daemon-Organization", required=False)
    if org and org != scope.organization:
        raise PermissionDenied(
            f"Provd-Daemon-Organization: {org!r} is not the organization of {key}, which"
            f" allows {scope.organization!r} only (leave the header out to get it)"
        )
    offered = _provisioners(provisioners)
    if scope.provisioners:
        if not_allowed := [p for p in offered if p not in scope.provisioners]:
            raise PermissionDenied(
                f"Provd-Daemon-Provisioners: {', '.join(not_allowed)} not allowed by {key},"
                f" which allows {', '.join(scope.provisioners)} (a subset of them, or leave"
                " the header out to offer them all)"
            )
        offered = offered or scope.provisioners
    elif not offered:
        raise InvalidArgument(
            f"Provd-Daemon-Provisioners: is required ({key} allows any provisioner: name the"
            " ones this daemon runs, comma-separated, e.g. echo)"
        )
    key_tags = dict(scope.tags)
    if tags.strip():
        sent = model.normalize_tags(_parse_tags(tags))
        if sent != key_tags:
            raise PermissionDenied(
                f"Provd-Daemon-Tags: {_pairs(sent)} are not the tags of {key}: its daemons"
                f" have exactly {_pairs(key_tags)} (leave the header out to get them)"
            )
    return model.Daemon(
        id=str(uuid.uuid5(_KEY_DAEMON_NAMESPACE, f"{scope.key_id}\x00{name}")),
        organization=scope.organization,
        name=name,
        owner=scope.owner,
        provisioners=offered,
        tags=key_tags,
        version=validate.text(version.strip(), "Provd-Daemon-Version", 128),
        api_version=_check_api_version(api_version.strip() or "1.0"),
        key_id=scope.key_id,
    )


def _provisioners(value: str) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(
            validate.name(p.strip(), "Provd-Daemon-Provisioners")
            for p in value.split(",")
            if p.strip()
        )
    )


def _pairs(tags: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) + "}"


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
