import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListDaemonsRequest(_message.Message):
    __slots__ = ("organization",)
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    organization: str
    def __init__(self, organization: _Optional[str] = ...) -> None: ...

class Daemon(_message.Message):
    __slots__ = ("id", "name", "organization", "provisioners", "tags", "version", "api_version", "last_seen_at", "current_job_id", "stale", "connected", "created_at", "key_id", "key_name")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROVISIONERS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    organization: str
    provisioners: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.ScalarMap[str, str]
    version: str
    api_version: str
    last_seen_at: _timestamp_pb2.Timestamp
    current_job_id: str
    stale: bool
    connected: bool
    created_at: _timestamp_pb2.Timestamp
    key_id: str
    key_name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., organization: _Optional[str] = ..., provisioners: _Optional[_Iterable[str]] = ..., tags: _Optional[_Mapping[str, str]] = ..., version: _Optional[str] = ..., api_version: _Optional[str] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_job_id: _Optional[str] = ..., stale: _Optional[bool] = ..., connected: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_id: _Optional[str] = ..., key_name: _Optional[str] = ...) -> None: ...

class ListDaemonsResponse(_message.Message):
    __slots__ = ("daemons",)
    DAEMONS_FIELD_NUMBER: _ClassVar[int]
    daemons: _containers.RepeatedCompositeFieldContainer[Daemon]
    def __init__(self, daemons: _Optional[_Iterable[_Union[Daemon, _Mapping]]] = ...) -> None: ...
