from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACE: _ClassVar[LogLevel]
    DEBUG: _ClassVar[LogLevel]
    INFO: _ClassVar[LogLevel]
    WARN: _ClassVar[LogLevel]
    ERROR: _ClassVar[LogLevel]

class WorkspaceTransition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    START: _ClassVar[WorkspaceTransition]
    STOP: _ClassVar[WorkspaceTransition]
    DESTROY: _ClassVar[WorkspaceTransition]

class AppSharingLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OWNER: _ClassVar[AppSharingLevel]
    AUTHENTICATED: _ClassVar[AppSharingLevel]
    PUBLIC: _ClassVar[AppSharingLevel]
TRACE: LogLevel
DEBUG: LogLevel
INFO: LogLevel
WARN: LogLevel
ERROR: LogLevel
START: WorkspaceTransition
STOP: WorkspaceTransition
DESTROY: WorkspaceTransition
OWNER: AppSharingLevel
AUTHENTICATED: AppSharingLevel
PUBLIC: AppSharingLevel

class TemplateVariable(_message.Message):
    __slots__ = ("name", "description", "type", "default_value", "required", "sensitive")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    SENSITIVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    type: str
    default_value: str
    required: bool
    sensitive: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., type: _Optional[str] = ..., default_value: _Optional[str] = ..., required: _Optional[bool] = ..., sensitive: _Optional[bool] = ...) -> None: ...

class RichParameterOption(_message.Message):
    __slots__ = ("name", "description", "value", "icon")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ICON_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    value: str
    icon: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., value: _Optional[str] = ..., icon: _Optional[str] = ...) -> None: ...

class RichParameter(_message.Message):
    __slots__ = ("name", "description", "type", "mutable", "default_value", "icon", "options", "validation_regex", "validation_error", "validation_min", "validation_max", "validation_monotonic", "required", "display_name", "order", "ephemeral")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MUTABLE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    ICON_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_REGEX_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_MIN_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_MAX_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_MONOTONIC_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    type: str
    mutable: bool
    default_value: str
    icon: str
    options: _containers.RepeatedCompositeFieldContainer[RichParameterOption]
    validation_regex: str
    validation_error: str
    validation_min: int
    validation_max: int
    validation_monotonic: str
    required: bool
    display_name: str
    order: int
    ephemeral: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., type: _Optional[str] = ..., mutable: _Optional[bool] = ..., default_value: _Optional[str] = ..., icon: _Optional[str] = ..., options: _Optional[_Iterable[_Union[RichParameterOption, _Mapping]]] = ..., validation_regex: _Optional[str] = ..., validation_error: _Optional[str] = ..., validation_min: _Optional[int] = ..., validation_max: _Optional[int] = ..., validation_monotonic: _Optional[str] = ..., required: _Optional[bool] = ..., display_name: _Optional[str] = ..., order: _Optional[int] = ..., ephemeral: _Optional[bool] = ...) -> None: ...

class RichParameterValue(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class VariableValue(_message.Message):
    __slots__ = ("name", "value", "sensitive")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SENSITIVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    sensitive: bool
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., sensitive: _Optional[bool] = ...) -> None: ...

class ExternalAuthProviderResource(_message.Message):
    __slots__ = ("id", "optional")
    ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    optional: bool
    def __init__(self, id: _Optional[str] = ..., optional: _Optional[bool] = ...) -> None: ...

class ExternalAuthProvider(_message.Message):
    __slots__ = ("id", "access_token")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    access_token: str
    def __init__(self, id: _Optional[str] = ..., access_token: _Optional[str] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("id", "name", "env", "operating_system", "architecture", "directory", "apps", "token", "instance_id", "connection_timeout_seconds", "troubleshooting_url", "motd_file", "metadata", "display_apps", "scripts", "extra_envs", "order")
    class Metadata(_message.Message):
        __slots__ = ("key", "display_name", "script", "interval", "timeout", "order")
        KEY_FIELD_NUMBER: _ClassVar[int]
        DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
        SCRIPT_FIELD_NUMBER: _ClassVar[int]
        INTERVAL_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        ORDER_FIELD_NUMBER: _ClassVar[int]
        key: str
        display_name: str
        script: str
        interval: int
        timeout: int
        order: int
        def __init__(self, key: _Optional[str] = ..., display_name: _Optional[str] = ..., script: _Optional[str] = ..., interval: _Optional[int] = ..., timeout: _Optional[int] = ..., order: _Optional[int] = ...) -> None: ...
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    OPERATING_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TROUBLESHOOTING_URL_FIELD_NUMBER: _ClassVar[int]
    MOTD_FILE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_APPS_FIELD_NUMBER: _ClassVar[int]
    SCRIPTS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_ENVS_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    env: _containers.ScalarMap[str, str]
    operating_system: str
    architecture: str
    directory: str
    apps: _containers.RepeatedCompositeFieldContainer[App]
    token: str
    instance_id: str
    connection_timeout_seconds: int
    troubleshooting_url: str
    motd_file: str
    metadata: _containers.RepeatedCompositeFieldContainer[Agent.Metadata]
    display_apps: DisplayApps
    scripts: _containers.RepeatedCompositeFieldContainer[Script]
    extra_envs: _containers.RepeatedCompositeFieldContainer[Env]
    order: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., operating_system: _Optional[str] = ..., architecture: _Optional[str] = ..., directory: _Optional[str] = ..., apps: _Optional[_Iterable[_Union[App, _Mapping]]] = ..., token: _Optional[str] = ..., instance_id: _Optional[str] = ..., connection_timeout_seconds: _Optional[int] = ..., troubleshooting_url: _Optional[str] = ..., motd_file: _Optional[str] = ..., metadata: _Optional[_Iterable[_Union[Agent.Metadata, _Mapping]]] = ..., display_apps: _Optional[_Union[DisplayApps, _Mapping]] = ..., scripts: _Optional[_Iterable[_Union[Script, _Mapping]]] = ..., extra_envs: _Optional[_Iterable[_Union[Env, _Mapping]]] = ..., order: _Optional[int] = ...) -> None: ...

class DisplayApps(_message.Message):
    __slots__ = ("vscode", "vscode_insiders", "web_terminal", "ssh_helper", "port_forwarding_helper")
    VSCODE_FIELD_NUMBER: _ClassVar[int]
    VSCODE_INSIDERS_FIELD_NUMBER: _ClassVar[int]
    WEB_TERMINAL_FIELD_NUMBER: _ClassVar[int]
    SSH_HELPER_FIELD_NUMBER: _ClassVar[int]
    PORT_FORWARDING_HELPER_FIELD_NUMBER: _ClassVar[int]
    vscode: bool
    vscode_insiders: bool
    web_terminal: bool
    ssh_helper: bool
    port_forwarding_helper: bool
    def __init__(self, vscode: _Optional[bool] = ..., vscode_insiders: _Optional[bool] = ..., web_terminal: _Optional[bool] = ..., ssh_helper: _Optional[bool] = ..., port_forwarding_helper: _Optional[bool] = ...) -> None: ...

class Env(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Script(_message.Message):
    __slots__ = ("display_name", "icon", "script", "cron", "start_blocks_login", "run_on_start", "run_on_stop", "timeout_seconds", "log_path")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ICON_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    START_BLOCKS_LOGIN_FIELD_NUMBER: _ClassVar[int]
    RUN_ON_START_FIELD_NUMBER: _ClassVar[int]
    RUN_ON_STOP_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    icon: str
    script: str
    cron: str
    start_blocks_login: bool
    run_on_start: bool
    run_on_stop: bool
    timeout_seconds: int
    log_path: str
    def __init__(self, display_name: _Optional[str] = ..., icon: _Optional[str] = ..., script: _Optional[str] = ..., cron: _Optional[str] = ..., start_blocks_login: _Optional[bool] = ..., run_on_start: _Optional[bool] = ..., run_on_stop: _Optional[bool] = ..., timeout_seconds: _Optional[int] = ..., log_path: _Optional[str] = ...) -> None: ...

class App(_message.Message):
    __slots__ = ("slug", "display_name", "command", "url", "icon", "subdomain", "healthcheck", "sharing_level", "external", "order")
    SLUG_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    ICON_FIELD_NUMBER: _ClassVar[int]
    SUBDOMAIN_FIELD_NUMBER: _ClassVar[int]
    HEALTHCHECK_FIELD_NUMBER: _ClassVar[int]
    SHARING_LEVEL_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    slug: str
    display_name: str
    command: str
    url: str
    icon: str
    subdomain: bool
    healthcheck: Healthcheck
    sharing_level: AppSharingLevel
    external: bool
    order: int
    def __init__(self, slug: _Optional[str] = ..., display_name: _Optional[str] = ..., command: _Optional[str] = ..., url: _Optional[str] = ..., icon: _Optional[str] = ..., subdomain: _Optional[bool] = ..., healthcheck: _Optional[_Union[Healthcheck, _Mapping]] = ..., sharing_level: _Optional[_Union[AppSharingLevel, str]] = ..., external: _Optional[bool] = ..., order: _Optional[int] = ...) -> None: ...

class Healthcheck(_message.Message):
    __slots__ = ("url", "interval", "threshold")
    URL_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    url: str
    interval: int
    threshold: int
    def __init__(self, url: _Optional[str] = ..., interval: _Optional[int] = ..., threshold: _Optional[int] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("name", "type", "agents", "metadata", "hide", "icon", "instance_type", "daily_cost")
    class Metadata(_message.Message):
        __slots__ = ("key", "value", "sensitive", "is_null")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        SENSITIVE_FIELD_NUMBER: _ClassVar[int]
        IS_NULL_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        sensitive: bool
        is_null: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., sensitive: _Optional[bool] = ..., is_null: _Optional[bool] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    HIDE_FIELD_NUMBER: _ClassVar[int]
    ICON_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    DAILY_COST_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    agents: _containers.RepeatedCompositeFieldContainer[Agent]
    metadata: _containers.RepeatedCompositeFieldContainer[Resource.Metadata]
    hide: bool
    icon: str
    instance_type: str
    daily_cost: int
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ..., metadata: _Optional[_Iterable[_Union[Resource.Metadata, _Mapping]]] = ..., hide: _Optional[bool] = ..., icon: _Optional[str] = ..., instance_type: _Optional[str] = ..., daily_cost: _Optional[int] = ...) -> None: ...

class Metadata(_message.Message):
    __slots__ = ("coder_url", "workspace_transition", "workspace_name", "workspace_owner", "workspace_id", "workspace_owner_id", "workspace_owner_email", "template_name", "template_version", "workspace_owner_oidc_access_token", "workspace_owner_session_token", "template_id", "workspace_owner_name", "workspace_owner_groups")
    CODER_URL_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_TRANSITION_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_OWNER_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_OWNER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_OWNER_OIDC_ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_OWNER_SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_OWNER_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_OWNER_GROUPS_FIELD_NUMBER: _ClassVar[int]
    coder_url: str
    workspace_transition: WorkspaceTransition
    workspace_name: str
    workspace_owner: str
    workspace_id: str
    workspace_owner_id: str
    workspace_owner_email: str
    template_name: str
    template_version: str
    workspace_owner_oidc_access_token: str
    workspace_owner_session_token: str
    template_id: str
    workspace_owner_name: str
    workspace_owner_groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, coder_url: _Optional[str] = ..., workspace_transition: _Optional[_Union[WorkspaceTransition, str]] = ..., workspace_name: _Optional[str] = ..., workspace_owner: _Optional[str] = ..., workspace_id: _Optional[str] = ..., workspace_owner_id: _Optional[str] = ..., workspace_owner_email: _Optional[str] = ..., template_name: _Optional[str] = ..., template_version: _Optional[str] = ..., workspace_owner_oidc_access_token: _Optional[str] = ..., workspace_owner_session_token: _Optional[str] = ..., template_id: _Optional[str] = ..., workspace_owner_name: _Optional[str] = ..., workspace_owner_groups: _Optional[_Iterable[str]] = ...) -> None: ...
