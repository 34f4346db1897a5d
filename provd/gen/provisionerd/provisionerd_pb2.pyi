from provd.gen.provisionersdk import provisioner_pb2 as _provisioner_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROVISIONER_DAEMON: _ClassVar[LogSource]
    PROVISIONER: _ClassVar[LogSource]
PROVISIONER_DAEMON: LogSource
PROVISIONER: LogSource

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AcquiredJob(_message.Message):
    __slots__ = ("job_id", "created_at", "provisioner", "user_name", "template_source_archive", "workspace_build", "template_import", "template_dry_run", "trace_metadata")
    class WorkspaceBuild(_message.Message):
        __slots__ = ("workspace_build_id", "workspace_name", "rich_parameter_values", "variable_values", "external_auth_providers", "metadata", "state", "log_level")
        WORKSPACE_BUILD_ID_FIELD_NUMBER: _ClassVar[int]
        WORKSPACE_NAME_FIELD_NUMBER: _ClassVar[int]
        RICH_PARAMETER_VALUES_FIELD_NUMBER: _ClassVar[int]
        VARIABLE_VALUES_FIELD_NUMBER: _ClassVar[int]
        EXTERNAL_AUTH_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
        METADATA_FIELD_NUMBER: _ClassVar[int]
        STATE_FIELD_NUMBER: _ClassVar[int]
        LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
        workspace_build_id: str
        workspace_name: str
        rich_parameter_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.RichParameterValue]
        variable_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.VariableValue]
        external_auth_providers: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.ExternalAuthProvider]
        metadata: _provisioner_pb2.Metadata
        state: bytes
        log_level: str
        def __init__(self, workspace_build_id: _Optional[str] = ..., workspace_name: _Optional[str] = ..., rich_parameter_values: _Optional[_Iterable[_Union[_provisioner_pb2.RichParameterValue, _Mapping]]] = ..., variable_values: _Optional[_Iterable[_Union[_provisioner_pb2.VariableValue, _Mapping]]] = ..., external_auth_providers: _Optional[_Iterable[_Union[_provisioner_pb2.ExternalAuthProvider, _Mapping]]] = ..., metadata: _Optional[_Union[_provisioner_pb2.Metadata, _Mapping]] = ..., state: _Optional[bytes] = ..., log_level: _Optional[str] = ...) -> None: ...
    class TemplateImport(_message.Message):
        __slots__ = ("metadata", "user_variable_values")
        METADATA_FIELD_NUMBER: _ClassVar[int]
        USER_VARIABLE_VALUES_FIELD_NUMBER: _ClassVar[int]
        metadata: _provisioner_pb2.Metadata
        user_variable_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.VariableValue]
        def __init__(self, metadata: _Optional[_Union[_provisioner_pb2.Metadata, _Mapping]] = ..., user_variable_values: _Optional[_Iterable[_Union[_provisioner_pb2.VariableValue, _Mapping]]] = ...) -> None: ...
    class TemplateDryRun(_message.Message):
        __slots__ = ("rich_parameter_values", "variable_values", "metadata")
        RICH_PARAMETER_VALUES_FIELD_NUMBER: _ClassVar[int]
        VARIABLE_VALUES_FIELD_NUMBER: _ClassVar[int]
        METADATA_FIELD_NUMBER: _ClassVar[int]
        rich_parameter_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.RichParameterValue]
        variable_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.VariableValue]
        metadata: _provisioner_pb2.Metadata
        def __init__(self, rich_parameter_values: _Optional[_Iterable[_Union[_provisioner_pb2.RichParameterValue, _Mapping]]] = ..., variable_values: _Optional[_Iterable[_Union[_provisioner_pb2.VariableValue, _Mapping]]] = ..., metadata: _Optional[_Union[_provisioner_pb2.Metadata, _Mapping]] = ...) -> None: ...
    class TraceMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROVISIONER_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_SOURCE_ARCHIVE_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_BUILD_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IMPORT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    TRACE_METADATA_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    created_at: int
    provisioner: str
    user_name: str
    template_source_archive: bytes
    workspace_build: AcquiredJob.WorkspaceBuild
    template_import: AcquiredJob.TemplateImport
    template_dry_run: AcquiredJob.TemplateDryRun
    trace_metadata: _containers.ScalarMap[str, str]
    def __init__(self, job_id: _Optional[str] = ..., created_at: _Optional[int] = ..., provisioner: _Optional[str] = ..., user_name: _Optional[str] = ..., template_source_archive: _Optional[bytes] = ..., workspace_build: _Optional[_Union[AcquiredJob.WorkspaceBuild, _Mapping]] = ..., template_import: _Optional[_Union[AcquiredJob.TemplateImport, _Mapping]] = ..., template_dry_run: _Optional[_Union[AcquiredJob.TemplateDryRun, _Mapping]] = ..., trace_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FailedJob(_message.Message):
    __slots__ = ("job_id", "error", "workspace_build", "template_import", "template_dry_run", "error_code")
    class WorkspaceBuild(_message.Message):
        __slots__ = ("state",)
        STATE_FIELD_NUMBER: _ClassVar[int]
        state: bytes
        def __init__(self, state: _Optional[bytes] = ...) -> None: ...
    class TemplateImport(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    class TemplateDryRun(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_BUILD_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IMPORT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    error: str
    workspace_build: FailedJob.WorkspaceBuild
    template_import: FailedJob.TemplateImport
    template_dry_run: FailedJob.TemplateDryRun
    error_code: str
    def __init__(self, job_id: _Optional[str] = ..., error: _Optional[str] = ..., workspace_build: _Optional[_Union[FailedJob.WorkspaceBuild, _Mapping]] = ..., template_import: _Optional[_Union[FailedJob.TemplateImport, _Mapping]] = ..., template_dry_run: _Optional[_Union[FailedJob.TemplateDryRun, _Mapping]] = ..., error_code: _Optional[str] = ...) -> None: ...

class CompletedJob(_message.Message):
    __slots__ = ("job_id", "workspace_build", "template_import", "template_dry_run")
    class WorkspaceBuild(_message.Message):
        __slots__ = ("state", "resources")
        STATE_FIELD_NUMBER: _ClassVar[int]
        RESOURCES_FIELD_NUMBER: _ClassVar[int]
        state: bytes
        resources: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.Resource]
        def __init__(self, state: _Optional[bytes] = ..., resources: _Optional[_Iterable[_Union[_provisioner_pb2.Resource, _Mapping]]] = ...) -> None: ...
    class TemplateImport(_message.Message):
        __slots__ = ("start_resources", "stop_resources", "rich_parameters", "external_auth_providers_names", "external_auth_providers")
        START_RESOURCES_FIELD_NUMBER: _ClassVar[int]
        STOP_RESOURCES_FIELD_NUMBER: _ClassVar[int]
        RICH_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
        EXTERNAL_AUTH_PROVIDERS_NAMES_FIELD_NUMBER: _ClassVar[int]
        EXTERNAL_AUTH_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
        start_resources: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.Resource]
        stop_resources: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.Resource]
        rich_parameters: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.RichParameter]
        external_auth_providers_names: _containers.RepeatedScalarFieldContainer[str]
        external_auth_providers: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.ExternalAuthProviderResource]
        def __init__(self, start_resources: _Optional[_Iterable[_Union[_provisioner_pb2.Resource, _Mapping]]] = ..., stop_resources: _Optional[_Iterable[_Union[_provisioner_pb2.Resource, _Mapping]]] = ..., rich_parameters: _Optional[_Iterable[_Union[_provisioner_pb2.RichParameter, _Mapping]]] = ..., external_auth_providers_names: _Optional[_Iterable[str]] = ..., external_auth_providers: _Optional[_Iterable[_Union[_provisioner_pb2.ExternalAuthProviderResource, _Mapping]]] = ...) -> None: ...
    class TemplateDryRun(_message.Message):
        __slots__ = ("resources",)
        RESOURCES_FIELD_NUMBER: _ClassVar[int]
        resources: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.Resource]
        def __init__(self, resources: _Optional[_Iterable[_Union[_provisioner_pb2.Resource, _Mapping]]] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_BUILD_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_IMPORT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    workspace_build: CompletedJob.WorkspaceBuild
    template_import: CompletedJob.TemplateImport
    template_dry_run: CompletedJob.TemplateDryRun
    def __init__(self, job_id: _Optional[str] = ..., workspace_build: _Optional[_Union[CompletedJob.WorkspaceBuild, _Mapping]] = ..., template_import: _Optional[_Union[CompletedJob.TemplateImport, _Mapping]] = ..., template_dry_run: _Optional[_Union[CompletedJob.TemplateDryRun, _Mapping]] = ...) -> None: ...

class Log(_message.Message):
    __slots__ = ("source", "level", "created_at", "stage", "output")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    source: LogSource
    level: _provisioner_pb2.LogLevel
    created_at: int
    stage: str
    output: str
    def __init__(self, source: _Optional[_Union[LogSource, str]] = ..., level: _Optional[_Union[_provisioner_pb2.LogLevel, str]] = ..., created_at: _Optional[int] = ..., stage: _Optional[str] = ..., output: _Optional[str] = ...) -> None: ...

class UpdateJobRequest(_message.Message):
    __slots__ = ("job_id", "logs", "template_variables", "user_variable_values", "readme")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    USER_VARIABLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    README_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    logs: _containers.RepeatedCompositeFieldContainer[Log]
    template_variables: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.TemplateVariable]
    user_variable_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.VariableValue]
    readme: bytes
    def __init__(self, job_id: _Optional[str] = ..., logs: _Optional[_Iterable[_Union[Log, _Mapping]]] = ..., template_variables: _Optional[_Iterable[_Union[_provisioner_pb2.TemplateVariable, _Mapping]]] = ..., user_variable_values: _Optional[_Iterable[_Union[_provisioner_pb2.VariableValue, _Mapping]]] = ..., readme: _Optional[bytes] = ...) -> None: ...

class UpdateJobResponse(_message.Message):
    __slots__ = ("canceled", "variable_values")
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    canceled: bool
    variable_values: _containers.RepeatedCompositeFieldContainer[_provisioner_pb2.VariableValue]
    def __init__(self, canceled: _Optional[bool] = ..., variable_values: _Optional[_Iterable[_Union[_provisioner_pb2.VariableValue, _Mapping]]] = ...) -> None: ...

class CommitQuotaRequest(_message.Message):
    __slots__ = ("job_id", "daily_cost")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DAILY_COST_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    daily_cost: int
    def __init__(self, job_id: _Optional[str] = ..., daily_cost: _Optional[int] = ...) -> None: ...

class CommitQuotaResponse(_message.Message):
    __slots__ = ("ok", "credits_consumed", "budget")
    OK_FIELD_NUMBER: _ClassVar[int]
    CREDITS_CONSUMED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    credits_consumed: int
    budget: int
    def __init__(self, ok: _Optional[bool] = ..., credits_consumed: _Optional[int] = ..., budget: _Optional[int] = ...) -> None: ...

class CancelAcquire(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
