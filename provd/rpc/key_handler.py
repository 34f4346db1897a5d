"""`provd.v1.KeyService`: daemon keys for the API, the CLI and later the dashboard.

A thin adapter over `provd.keys.DaemonKeys`: field checks that name the field, and
protobuf in and out. How many daemons are connected with each key comes from the
registry, as ListDaemons reports them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from connectrpc.request import RequestContext

from provd import model
from provd.errors import InvalidArgument
from provd.gen.provd.v1 import keys_pb2 as kpb
from provd.keys import DaemonKeys
from provd.registry import DaemonRegistry
from provd.rpc import validate
from provd.rpc.convert import timestamp

# Tags a key sets from its owner; a request may not set them itself.
_FROM_OWNER = ("scope", "owner")


def key_to_pb(key: model.DaemonKey, daemons_connected: int = 0) -> kpb.Key:
    message = kpb.Key(
        id=key.id,
        name=key.name,
        organization=key.organization,
        owner=key.owner,
        provisioners=key.provisioners,
        tags=key.tags,
        created_at=timestamp(key.created_at),
        daemons_connected=daemons_connected,
    )
    if key.last_used_at:
        message.last_used_at.CopyFrom(timestamp(key.last_used_at))
    return message


class KeyServiceHandler:
    def __init__(self, keys: DaemonKeys, registry: DaemonRegistry) -> None:
        self._keys = keys
        self._registry = registry

    async def create_key(
        self, request: kpb.CreateKeyRequest, ctx: RequestContext[Any, Any]
    ) -> kpb.CreateKeyResponse:
        name = validate.name(request.name, "name")
        organization = (
            validate.name(request.organization, "organization", required=False)
            or model.DEFAULT_ORGANIZATION
        )
        tags = validate.string_map(request.tags, "tags")
        if reserved := [tag for tag in _FROM_OWNER if tag in tags]:
            raise InvalidArgument(
                f"tags: {', '.join(reserved)} come from owner (a user's key has scope=user"
                " and owner=that user; set owner instead)"
            )
        provisioners = [
            validate.name(p, f"provisioners[{i}]") for i, p in enumerate(request.provisioners)
        ]
        owner = validate.text(request.owner, "owner", validate.MAX_TAG_LENGTH)
        if owner != owner.strip() or not owner.isprintable():
            raise InvalidArgument(f"owner: {owner[:80]!r} must be printable, without edge spaces")
        key, secret = await self._keys.create(
            name, organization, owner=owner, provisioners=provisioners, tags=tags
        )
        return kpb.CreateKeyResponse(key=key_to_pb(key), secret=secret)

    async def list_keys(
        self, request: kpb.ListKeysRequest, ctx: RequestContext[Any, Any]
    ) -> kpb.ListKeysResponse:
        organization = validate.name(request.organization, "organization", required=False)
        keys = await self._keys.list()
        connected = Counter(
            view.daemon.key_id
            for view in await self._registry.list()
            if view.connected and view.daemon.key_id
        )
        return kpb.ListKeysResponse(
            keys=[
                key_to_pb(key, connected[key.id])
                for key in keys
                if not organization or key.organization == organization
            ]
        )

    async def delete_key(
        self, request: kpb.DeleteKeyRequest, ctx: RequestContext[Any, Any]
    ) -> kpb.DeleteKeyResponse:
        deleted = await self._keys.delete(validate.name(request.name, "name"))
        if deleted is None:
            return kpb.DeleteKeyResponse(deleted=False)
        return kpb.DeleteKeyResponse(deleted=True, key=key_to_pb(deleted))
