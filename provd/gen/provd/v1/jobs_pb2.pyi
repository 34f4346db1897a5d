import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from provd.gen.provisionerd import provisionerd_pb2 as _provisionerd_pb2
from provd.gen.provisionersdk import provisioner_pb2 as _provisioner_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_TYPE_UNSPECIFIED: _ClassVar[JobType]
    JOB_TYPE_TEMPLATE_IMPORT: _ClassVar[JobType]
    JOB_TYPE_WORKSPACE_BUILD: _ClassVar[JobType]
    JOB_TYPE_TEMPLATE_DRY_RUN: _ClassVar[JobType]

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_PENDING: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_SUCCEEDED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELING: _ClassVar[JobStatus]
    JOB_STATUS_CANCELED: _ClassVar[JobStatus]
JOB_TYPE_UNSPECIFIED: JobType
JOB_TYPE_TEMPLATE_IMPORT: JobType
JOB_TYPE_WORKSPACE_BUILD: JobType
JOB_TYPE_TEMPLATE_DRY_RUN: JobType
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_PENDING: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_SUCCEEDED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_CANCELING: JobStatus
JOB_STATUS_CANCELED: JobStatus

class Initiator(_message.Message):
    __slots__ = ("user_id", "user_name")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    user_name: str
    def __init__(self, user_id: _Optional[str] = ..., user_name: _Optional[str] = ...) -> None: ...

class TemplateImportInput(_message.Message):
    __slots__ = ("user_variable_values", "metadata")
    USER_VARIABLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    user_variable_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.VariableValue]
    metadata: _provisioner_pb2.Metadata
    def __init__(self, user_variable_values: _Optional[_Iterable[_Union[_provisioner_pb2.VariableValue, _Mapping]]] = ..., metadata: _Optional[_Union[_provisioner_pb2.Metadata, _Mapping]] = ...) -> None: ...

class WorkspaceBuildInput(_message.Message):
    __slots__ = ("workspace_build_id", "workspace_name", "state", "log_level", "rich_parameter_values", "variable_values", "external_auth_providers", "metadata")
    WORKSPACE_BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
    RICH_PARAMETER_VALUES_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_AUTH_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    workspace_build_id: str
    workspace_name: str
    state: bytes
    log_level: str
    rich_parameter_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.RichParameterValue]
    variable_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.VariableValue]
    external_auth_providers: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.ExternalAuthProvider]
    metadata: _provisioner_pb2.Metadata
    def __init__(self, workspace_build_id: _Optional[str] = ..., workspace_name: _Optional[str] = ..., state: _Optional[bytes] = ..., log_level: _Optional[str] = ..., rich_parameter_values: _Optional[_Iterable[_Union[_provisioner_pb2.RichParameterValue, _Mapping]]] = ..., variable_values: _Optional[_Iterable[_Union[_provisioner_pb2.VariableValue, _Mapping]]] = ..., external_auth_providers: _Optional[_Iterable[_Union[_provisioner_pb2.ExternalAuthProvider, _Mapping]]] = ..., metadata: _Optional[_Union[_provisioner_pb2.Metadata, _Mapping]] = ...) -> None: ...

class TemplateDryRunInput(_message.Message):
    __slots__ = ("rich_parameter_values", "variable_values", "metadata")
    RICH_PARAMETER_VALUES_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    rich_parameter_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.RichParameterValue]
    variable_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.VariableValue]
    metadata: _provisioner_pb2.Metadata
    def __init__(self, rich_parameter_values: _Optional[_Iterable[_Union[_provisioner_pb2.RichParameterValue, _Mapping]]] = ..., variable_values: _Optional[_Iterable[_Union[_provisioner_pb2.VariableValue, _Mapping]]] = ..., metadata: _Optional[_Union[_provisioner_pb2.Metadata, _Mapping]] = ...) -> None: ...

class UploadFileRequest(_message.Message):
    __slots__ = ("data", "mimetype")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIMETYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mimetype: str
    def __init__(self, data: _Optional[bytes] = ..., mimetype: _Optional[str] = ...) -> None: ...

class UploadFileResponse(_message.Message):
    __slots__ = ("hash", "size")
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    hash: str
    size: int
    def __init__(self, hash: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("provisioner", "organization", "tags", "file_hash", "initiator", "priority", "trace_metadata", "template_import", "workspace_build", "template_dry_run")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TraceMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROVISIONER_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    FILE_HASH_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TRACE_METADATA_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IMPORT_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_BUILD_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    provisioner: str
    organization: str
    tags: _containers.ScalarMap[str, str]
    file_hash: str
    initiator: Initiator
    priority: int
    trace_metadata: _containers.ScalarMap[str, str]
    template_import: TemplateImportInput
    workspace_build: WorkspaceBuildInput
    template_dry_run: TemplateDryRunInput
    def __init__(self, provisioner: _Optional[str] = ..., organization: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., file_hash: _Optional[str] = ..., initiator: _Optional[_Union[Initiator, _Mapping]] = ..., priority: _Optional[int] = ..., trace_metadata: _Optional[_Mapping[str, str]] = ..., template_import: _Optional[_Union[TemplateImportInput, _Mapping]] = ..., workspace_build: _Optional[_Union[WorkspaceBuildInput, _Mapping]] = ..., template_dry_run: _Optional[_Union[TemplateDryRunInput, _Mapping]] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("workspace_build", "template_import", "template_dry_run", "readme", "template_variables", "failed_state")
    WORKSPACE_BUILD_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IMPORT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    README_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    FAILED_STATE_FIELD_NUMBER: _ClassVar[int]
    workspace_build: _provisionerd_pb2.CompletedJob.WorkspaceBuild
    template_import: _provisionerd_pb2.CompletedJob.TemplateImport
    template_dry_run: _provisionerd_pb2.CompletedJob.TemplateDryRun
    readme: bytes
    template_variables: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.TemplateVariable]
    failed_state: bytes
    def __init__(self, workspace_build: _Optional[_Union[_provisionerd_pb2.CompletedJob.WorkspaceBuild, _Mapping]] = ..., template_import: _Optional[_Union[_provisionerd_pb2.CompletedJob.TemplateImport, _Mapping]] = ..., template_dry_run: _Optional[_Union[_provisionerd_pb2.CompletedJob.TemplateDryRun, _Mapping]] = ..., readme: _Optional[bytes] = ..., template_variables: _Optional[_Iterable[_Union[_provisioner_pb2.TemplateVariable, _Mapping]]] = ..., failed_state: _Optional[bytes] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "type", "provisioner", "organization", "tags", "status", "created_at", "updated_at", "started_at", "canceled_at", "completed_at", "worker_id", "error", "error_code", "queue_position", "queue_size", "pending_reason", "result", "file_hash", "initiator", "priority", "trace_metadata", "template_import", "workspace_build", "template_dry_run")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TraceMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVISIONER_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    CANCELED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PENDING_REASON_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FILE_HASH_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TRACE_METADATA_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IMPORT_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_BUILD_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: JobType
    provisioner: str
    organization: str
    tags: _containers.ScalarMap[str, str]
    status: JobStatus
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    canceled_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    worker_id: str
    error: str
    error_code: str
    queue_position: int
    queue_size: int
    pending_reason: str
    result: JobResult
    file_hash: str
    initiator: Initiator
    priority: int
    trace_metadata: _containers.ScalarMap[str, str]
    template_import: TemplateImportInput
    workspace_build: WorkspaceBuildInput
    template_dry_run: TemplateDryRunInput
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[JobType, str]] = ..., provisioner: _Optional[str] = ..., organization: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., canceled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., worker_id: _Optional[str] = ..., error: _Optional[str] = ..., error_code: _Optional[str] = ..., queue_position: _Optional[int] = ..., queue_size: _Optional[int] = ..., pending_reason: _Optional[str] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., file_hash: _Optional[str] = ..., initiator: _Optional[_Union[Initiator, _Mapping]] = ..., priority: _Optional[int] = ..., trace_metadata: _Optional[_Mapping[str, str]] = ..., template_import: _Optional[_Union[TemplateImportInput, _Mapping]] = ..., workspace_build: _Optional[_Union[WorkspaceBuildInput, _Mapping]] = ..., template_dry_run: _Optional[_Union[TemplateDryRunInput, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("status", "organization", "provisioner", "tags", "limit", "page_token", "type")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROVISIONER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    status: JobStatus
    organization: str
    provisioner: str
    tags: _containers.ScalarMap[str, str]
    limit: int
    page_token: str
    type: JobType
    def __init__(self, status: _Optional[_Union[JobStatus, str]] = ..., organization: _Optional[str] = ..., provisioner: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., type: _Optional[_Union[JobType, str]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class StreamJobLogsRequest(_message.Message):
    __slots__ = ("id", "after", "follow")
    ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    id: str
    after: int
    follow: bool
    def __init__(self, id: _Optional[str] = ..., after: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class JobLog(_message.Message):
    __slots__ = ("id", "created_at", "source", "level", "stage", "output")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    id: int
    created_at: _timestamp_pb2.Timestamp
    source: _provisionerd_pb2.LogSource
    level: _provisioner_pb2.LogLevel
    stage: str
    output: str
    def __init__(self, id: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[_Union[_provisionerd_pb2.LogSource, str]] = ..., level: _Optional[_Union[_provisioner_pb2.LogLevel, str]] = ..., stage: _Optional[str] = ..., output: _Optional[str] = ...) -> None: ...

class ListQueuesRequest(_message.Message):
    __slots__ = ("organization",)
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    organization: str
    def __init__(self, organization: _Optional[str] = ...) -> None: ...

class QueueDaemon(_message.Message):
    __slots__ = ("id", "name", "current_job_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    current_job_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., current_job_id: _Optional[str] = ...) -> None: ...

class JobQueue(_message.Message):
    __slots__ = ("organization", "provisioner", "tags", "pending", "oldest_created_at", "daemons", "unroutable_reason")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROVISIONER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    OLDEST_CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DAEMONS_FIELD_NUMBER: _ClassVar[int]
    UNROUTABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    organization: str
    provisioner: str
    tags: _containers.ScalarMap[str, str]
    pending: int
    oldest_created_at: _timestamp_pb2.Timestamp
    daemons: _containers.RepeatedCompositeFieldContainer[QueueDaemon]
    unroutable_reason: str
    def __init__(self, organization: _Optional[str] = ..., provisioner: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., pending: _Optional[int] = ..., oldest_created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., daemons: _Optional[_Iterable[_Union[QueueDaemon, _Mapping]]] = ..., unroutable_reason: _Optional[str] = ...) -> None: ...

class ListQueuesResponse(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[JobQueue]
    def __init__(self, queues: _Optional[_Iterable[_Union[JobQueue, _Mapping]]] = ...) -> None: ...

class GetJobHistoryRequest(_message.Message):
    __slots__ = ("organization", "window_seconds", "bucket_seconds")
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    organization: str
    window_seconds: int
    bucket_seconds: int
    def __init__(self, organization: _Optional[str] = ..., window_seconds: _Optional[int] = ..., bucket_seconds: _Optional[int] = ...) -> None: ...

class JobHistoryBucket(_message.Message):
    __slots__ = ("start", "succeeded", "failed", "canceled", "pending")
    START_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    succeeded: int
    failed: int
    canceled: int
    pending: int
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., canceled: _Optional[int] = ..., pending: _Optional[int] = ...) -> None: ...

class JobHistory(_message.Message):
    __slots__ = ("buckets", "bucket_seconds", "pending", "read_at")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    READ_AT_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[JobHistoryBucket]
    bucket_seconds: int
    pending: int
    read_at: _timestamp_pb2.Timestamp
    def __init__(self, buckets: _Optional[_Iterable[_Union[JobHistoryBucket, _Mapping]]] = ..., bucket_seconds: _Optional[int] = ..., pending: _Optional[int] = ..., read_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobsChanged(_message.Message):
    __slots__ = ("read_at", "job_ids", "many", "keep_alive")
    READ_AT_FIELD_NUMBER: _ClassVar[int]
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    MANY_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    read_at: _timestamp_pb2.Timestamp
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    many: bool
    keep_alive: bool
    def __init__(self, read_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., job_ids: _Optional[_Iterable[str]] = ..., many: _Optional[bool] = ..., keep_alive: _Optional[bool] = ...) -> None: ...
