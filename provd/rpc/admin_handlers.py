"""`provd.v1.DaemonService` and `provd.v1.QuotaService`: thin adapters."""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext

from provd import model
from provd.errors import InvalidArgument
from provd.gen.provd.v1 import daemons_pb2 as dpb
from provd.gen.provd.v1 import quota_pb2 as qpb
from provd.keys import DaemonKeys
from provd.registry import DaemonRegistry
from provd.rpc import validate
from provd.rpc.convert import timestamp
from provd.store import Store


class DaemonServiceHandler:
    def __init__(self, registry: DaemonRegistry, keys: DaemonKeys) -> None:
        self._registry = registry
        self._keys = keys

    async def list_daemons(
        self, request: dpb.ListDaemonsRequest, ctx: RequestContext[Any, Any]
    ) -> dpb.ListDaemonsResponse:
        organization = validate.name(request.organization, "organization", required=False)
        views = await self._registry.list()
        key_names = (
            {key.id: key.name for key in await self._keys.list()}
            if any(view.daemon.key_id for view in views)
            else {}
        )
        return dpb.ListDaemonsResponse(
            daemons=[
                dpb.Daemon(
                    id=view.daemon.id,
                    name=view.daemon.name,
                    organization=view.daemon.organization,
                    provisioners=view.daemon.provisioners,
                    tags=view.daemon.tags,
                    version=view.daemon.version,
                    api_version=view.daemon.api_version,
                    last_seen_at=timestamp(view.last_seen_at),
                    created_at=timestamp(view.created_at),
                    current_job_id=view.current_job_id,
                    stale=view.stale,
                    connected=view.connected,
                    key_id=view.daemon.key_id,
                    key_name=key_names.get(view.daemon.key_id, ""),
                )
                for view in views
                if not organization or view.daemon.organization == organization
            ]
        )


def _subject(message: Any, field_prefix: str = "") -> tuple[str, str]:
    kind = message.WhichOneof("subject")
    if kind is None:
        raise InvalidArgument(f"{field_prefix}subject: one of userId or group is required")
    value = validate.text(getattr(message, kind), f"{field_prefix}{kind}", 256)
    if not value:
        raise InvalidArgument(f"{field_prefix}{'userId' if kind == 'user_id' else kind}: is empty")
    return ("user" if kind == "user_id" else "group"), value


def _organization(value: str, field: str = "organization") -> str:
    return validate.name(value, field, required=False) or model.DEFAULT_ORGANIZATION


def _allowance_to_pb(allowance: model.Allowance) -> qpb.Allowance:
    message = qpb.Allowance(organization=allowance.organization, allowance=allowance.allowance)
    if allowance.kind == "user":
        message.user_id = allowance.subject
    else:
        message.group = allowance.subject
    return message


class QuotaServiceHandler:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def set_allowance(
        self, request: qpb.SetAllowanceRequest, ctx: RequestContext[Any, Any]
    ) -> qpb.Allowance:
        if not request.HasField("allowance"):
            raise InvalidArgument("allowance: is required")
        kind, subject = _subject(request.allowance, "allowance.")
        if request.allowance.allowance < 0:
            raise InvalidArgument(
                f"allowance.allowance: must not be negative, got {request.allowance.allowance}"
            )
        allowance = model.Allowance(
            organization=_organization(request.allowance.organization, "allowance.organization"),
            kind=kind,
            subject=subject,
            allowance=request.allowance.allowance,
        )
        await self._store.set_allowance(allowance)
        return _allowance_to_pb(allowance)

    async def delete_allowance(
        self, request: qpb.DeleteAllowanceRequest, ctx: RequestContext[Any, Any]
    ) -> qpb.DeleteAllowanceResponse:
        kind, subject = _subject(request)
        deleted = await self._store.delete_allowance(
            _organization(request.organization), kind, subject
        )
        return qpb.DeleteAllowanceResponse(deleted=deleted)

    async def list_allowances(
        self, request: qpb.ListAllowancesRequest, ctx: RequestContext[Any, Any]
    ) -> qpb.ListAllowancesResponse:
        allowances = await self._store.list_allowances(_organization(request.organization))
        return qpb.ListAllowancesResponse(allowances=[_allowance_to_pb(a) for a in allowances])

    async def get_user_quota(
        self, request: qpb.GetUserQuotaRequest, ctx: RequestContext[Any, Any]
    ) -> qpb.UserQuota:
        if not request.user_id:
            raise InvalidArgument("userId: is required")
        consumed, budget = await self._store.quota_usage(
            _organization(request.organization),
            validate.text(request.user_id, "userId", 256),
            validate.string_list(request.groups, "groups"),
        )
        return qpb.UserQuota(
            credits_consumed=model.saturate_int32(consumed), budget=model.saturate_int32(budget)
        )
