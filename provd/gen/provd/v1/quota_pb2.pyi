from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Allowance(_message.Message):
    __slots__ = ("organization", "user_id", "group", "allowance")
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_FIELD_NUMBER: _ClassVar[int]
    organization: str
    user_id: str
    group: str
    allowance: int
    def __init__(self, organization: _Optional[str] = ..., user_id: _Optional[str] = ..., group: _Optional[str] = ..., allowance: _Optional[int] = ...) -> None: ...

class SetAllowanceRequest(_message.Message):
    __slots__ = ("allowance",)
    ALLOWANCE_FIELD_NUMBER: _ClassVar[int]
    allowance: Allowance
    def __init__(self, allowance: _Optional[_Union[Allowance, _Mapping]] = ...) -> None: ...

class DeleteAllowanceRequest(_message.Message):
    __slots__ = ("organization", "user_id", "group")
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    organization: str
    user_id: str
    group: str
    def __init__(self, organization: _Optional[str] = ..., user_id: _Optional[str] = ..., group: _Optional[str] = ...) -> None: ...

class DeleteAllowanceResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class ListAllowancesRequest(_message.Message):
    __slots__ = ("organization",)
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    organization: str
    def __init__(self, organization: _Optional[str] = ...) -> None: ...

class ListAllowancesResponse(_message.Message):
    __slots__ = ("allowances",)
    ALLOWANCES_FIELD_NUMBER: _ClassVar[int]
    allowances: _containers.RepeatedCompositeFieldContainer[Allowance]
    def __init__(self, allowances: _Optional[_Iterable[_Union[Allowance, _Mapping]]] = ...) -> None: ...

class GetUserQuotaRequest(_message.Message):
    __slots__ = ("organization", "user_id", "groups")
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    organization: str
    user_id: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, organization: _Optional[str] = ..., user_id: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ...) -> None: ...

class UserQuota(_message.Message):
    __slots__ = ("credits_consumed", "budget")
    CREDITS_CONSUMED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    credits_consumed: int
    budget: int
    def __init__(self, credits_consumed: _Optional[int] = ..., budget: _Optional[int] = ...) -> None: ...
