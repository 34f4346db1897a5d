"""Wire compatibility: the generated protobuf classes against the table in docs/contract/wire.md.

Expected bytes are built by hand with a tiny encoder below, spelling every field number
literally from wire.md, and compared byte for byte with ``SerializeToString(deterministic=True)``.
The hand bytes must also decode (``FromString``) to an equal message.
"""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk

# --- a tiny hand-rolled protobuf encoder ---------------------------------------------------
#
# Wire types: 0 = VARINT (int32, int64, bool, enum), 2 = LEN (string, bytes, sub-message).
# proto3 leaves out fields equal to their default (except a set proto3 `optional`), and the
# Python implementation writes fields in field-number order, map entries sorted by key when
# deterministic=True. The hand encodings below follow that order.

VARINT, LEN = 0, 2


def varint(value: int) -> bytes:
    """Base-128 varint; negative int32/int64 values are sign-extended to 64 bits (10 bytes)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def field(number: int, value: int | str | bytes) -> bytes:
    """One field: int/bool/enum as VARINT, str/bytes/sub-message (bytes) as LEN."""
    if isinstance(value, int):  # bool is an int
        return tag(number, VARINT) + varint(int(value))
    data = value.encode() if isinstance(value, str) else value
    return tag(number, LEN) + varint(len(data)) + data


def msg(*fields: bytes) -> bytes:
    """A message body: its fields, concatenated in the order given."""
    return b"".join(fields)


def map_field(number: int, entries: dict[str, str]) -> bytes:
    """A map<string,string>: one entry sub-message (key=1, value=2) per key, sorted by key."""
    return msg(*(field(number, msg(field(1, k), field(2, v))) for k, v in sorted(entries.items())))


def assert_wire(message: Message, expected: bytes) -> None:
    """The generated class encodes to exactly `expected`, and `expected` decodes back to it."""
    assert message.SerializeToString(deterministic=True).hex(" ") == expected.hex(" ")
    decoded = type(message).FromString(expected)
    assert decoded == message
    assert decoded.SerializeToString(deterministic=True) == expected


def test_encoder_self_check() -> None:
    """The hand encoder matches textbook protobuf examples."""
    assert varint(0) == b"\x00"
    assert varint(150) == b"\x96\x01"
    assert varint(-1) == b"\xff" * 9 + b"\x01"
    assert field(1, 150) == b"\x08\x96\x01"
    assert field(2, "testing") == b"\x12\x07testing"
    assert field(3, msg(field(1, 150))) == b"\x1a\x03\x08\x96\x01"
    assert field(7, True) == b"\x38\x01"


# --- shared provisioner.Metadata fixture ----------------------------------------------------

METADATA = sdk.Metadata(
    coder_url="https://coder.example.com",
    workspace_transition=sdk.STOP,
    workspace_name="ws",
    workspace_owner="alice",
    workspace_id="ws-id",
    workspace_owner_email="alice@example.com",
    template_name="tpl",
    workspace_owner_session_token="session",
    workspace_owner_name="Alice",
    workspace_owner_groups=["devs", "ops"],
)
METADATA_BYTES = msg(
    field(1, "https://coder.example.com"),
    field(2, 1),  # workspace_transition = STOP
    field(3, "ws"),
    field(4, "alice"),
    field(5, "ws-id"),
    field(7, "alice@example.com"),
    field(8, "tpl"),
    field(11, "session"),
    field(13, "Alice"),
    field(14, "devs"),
    field(14, "ops"),
)


# --- provisionerd messages ------------------------------------------------------------------


def test_acquired_job_workspace_build() -> None:
    """AcquiredJob with workspace_build (6), Metadata (7) and the trace_metadata map (9)."""
    job = pd.AcquiredJob(
        job_id="job-1",
        created_at=1_700_000_000_123,
        provisioner="terraform",
        user_name="alice",
        template_source_archive=b"\x00tar\xff",
        workspace_build=pd.AcquiredJob.WorkspaceBuild(
            workspace_build_id="build-1",
            workspace_name="ws",
            rich_parameter_values=[sdk.RichParameterValue(name="region", value="eu")],
            variable_values=[sdk.VariableValue(name="token", value="s3cret", sensitive=True)],
            external_auth_providers=[sdk.ExternalAuthProvider(id="github", access_token="gho")],
            metadata=METADATA,
            state=b"\x01state",
            log_level="debug",
        ),
        # Inserted out of order on purpose: deterministic output sorts map keys.
        trace_metadata={"traceparent": "00-abc-def-01", "baggage": "k=v"},
    )
    expected = msg(
        field(1, "job-1"),
        field(2, 1_700_000_000_123),
        field(3, "terraform"),
        field(4, "alice"),
        field(5, b"\x00tar\xff"),
        field(
            6,
            msg(
                field(1, "build-1"),
                field(2, "ws"),
                # 3 is reserved
                field(4, msg(field(1, "region"), field(2, "eu"))),
                field(5, msg(field(1, "token"), field(2, "s3cret"), field(3, True))),
                field(6, msg(field(1, "github"), field(2, "gho"))),
                field(7, METADATA_BYTES),
                field(8, b"\x01state"),
                field(9, "debug"),
            ),
        ),
        field(9, msg(field(1, "baggage"), field(2, "k=v"))),
        field(9, msg(field(1, "traceparent"), field(2, "00-abc-def-01"))),
    )
    assert expected.endswith(map_field(9, {"traceparent": "00-abc-def-01", "baggage": "k=v"}))
    assert_wire(job, expected)


def test_acquired_job_template_import() -> None:
    """AcquiredJob with template_import (7): metadata=1, user_variable_values=2."""
    job = pd.AcquiredJob(
        job_id="job-2",
        provisioner="echo",
        template_import=pd.AcquiredJob.TemplateImport(
            # START is the default (0), so workspace_transition is left off the wire.
            metadata=sdk.Metadata(workspace_transition=sdk.START, template_id="tpl-id"),
            user_variable_values=[
                sdk.VariableValue(name="a", value="1"),
                sdk.VariableValue(name="b", value="2", sensitive=True),
            ],
        ),
    )
    expected = msg(
        field(1, "job-2"),
        field(3, "echo"),
        field(
            7,
            msg(
                field(1, msg(field(12, "tpl-id"))),
                field(2, msg(field(1, "a"), field(2, "1"))),
                field(2, msg(field(1, "b"), field(2, "2"), field(3, True))),
            ),
        ),
    )
    assert_wire(job, expected)


def test_acquired_job_template_dry_run() -> None:
    """AcquiredJob.template_dry_run (8): rich_parameter_values=2, variable_values=3, metadata=4."""
    job = pd.AcquiredJob(
        job_id="job-3",
        created_at=1,
        template_dry_run=pd.AcquiredJob.TemplateDryRun(
            rich_parameter_values=[sdk.RichParameterValue(name="size", value="large")],
            variable_values=[sdk.VariableValue(name="v", value="x")],
            metadata=METADATA,
        ),
    )
    expected = msg(
        field(1, "job-3"),
        field(2, 1),
        field(
            8,
            msg(
                # 1 is reserved
                field(2, msg(field(1, "size"), field(2, "large"))),
                field(3, msg(field(1, "v"), field(2, "x"))),
                field(4, METADATA_BYTES),
            ),
        ),
    )
    assert_wire(job, expected)


def test_acquired_job_empty_oneof_member() -> None:
    """A set but empty oneof member is still on the wire as tag + zero length."""
    job = pd.AcquiredJob(template_import=pd.AcquiredJob.TemplateImport())
    assert_wire(job, field(7, b""))
    assert pd.AcquiredJob.FromString(field(7, b"")).WhichOneof("type") == "template_import"
    assert_wire(pd.AcquiredJob(), b"")


def test_update_job() -> None:
    """UpdateJobRequest (logs=2, template_variables=4, ...) and UpdateJobResponse (1, 3)."""
    request = pd.UpdateJobRequest(
        job_id="job-1",
        logs=[
            pd.Log(
                source=pd.PROVISIONER,
                level=sdk.WARN,
                created_at=1_700_000_000_456,
                stage="Planning",
                output="careful",
            ),
            # All defaults but the output: source PROVISIONER_DAEMON and level TRACE are 0.
            pd.Log(source=pd.PROVISIONER_DAEMON, level=sdk.TRACE, output="hi"),
        ],
        template_variables=[
            sdk.TemplateVariable(
                name="region",
                description="Where",
                type="string",
                default_value="eu",
                required=True,
                sensitive=True,
            )
        ],
        user_variable_values=[sdk.VariableValue(name="region", value="us")],
        readme=b"# Readme\n",
    )
    expected = msg(
        field(1, "job-1"),
        field(
            2,
            msg(
                field(1, 1),  # source = PROVISIONER
                field(2, 3),  # level = WARN
                field(3, 1_700_000_000_456),
                field(4, "Planning"),
                field(5, "careful"),
            ),
        ),
        field(2, msg(field(5, "hi"))),
        # 3 is reserved
        field(
            4,
            msg(
                field(1, "region"),
                field(2, "Where"),
                field(3, "string"),
                field(4, "eu"),
                field(5, True),
                field(6, True),
            ),
        ),
        field(5, msg(field(1, "region"), field(2, "us"))),
        field(6, b"# Readme\n"),
    )
    assert_wire(request, expected)

    response = pd.UpdateJobResponse(
        canceled=True,
        variable_values=[sdk.VariableValue(name="region", value="us", sensitive=True)],
    )
    assert_wire(
        response,
        msg(
            field(1, True),
            # 2 is reserved
            field(3, msg(field(1, "region"), field(2, "us"), field(3, True))),
        ),
    )
    assert_wire(pd.UpdateJobResponse(canceled=False), b"")


def test_failed_job() -> None:
    """FailedJob: job_id=1, error=2, workspace_build=3 {state=1}, template_import=4, error_code=6"""
    failed = pd.FailedJob(
        job_id="job-1",
        error="boom",
        workspace_build=pd.FailedJob.WorkspaceBuild(state=b"tfstate"),
        error_code="REQUIRED_TEMPLATE_VARIABLES",
    )
    expected = msg(
        field(1, "job-1"),
        field(2, "boom"),
        field(3, msg(field(1, b"tfstate"))),
        field(6, "REQUIRED_TEMPLATE_VARIABLES"),
    )
    assert_wire(failed, expected)

    failed_import = pd.FailedJob(
        job_id="job-2", error="bad", template_import=pd.FailedJob.TemplateImport()
    )
    assert_wire(failed_import, msg(field(1, "job-2"), field(2, "bad"), field(4, b"")))
    assert tag(4, LEN) + b"\x00" == b"\x22\x00"

    failed_dry_run = pd.FailedJob(job_id="job-3", template_dry_run=pd.FailedJob.TemplateDryRun())
    assert_wire(failed_dry_run, msg(field(1, "job-3"), field(5, b"")))


def test_completed_job_template_import() -> None:
    """CompletedJob.template_import (3) with a full Resource, Agent, App and RichParameter."""
    agent = sdk.Agent(
        id="agent-id",
        name="main",
        env={"PATH": "/bin", "HOME": "/home/coder"},
        operating_system="linux",
        architecture="amd64",
        apps=[
            sdk.App(
                slug="code",
                display_name="Code",
                url="http://localhost:8080",
                subdomain=True,
                healthcheck=sdk.Healthcheck(
                    url="http://localhost:8080/healthz", interval=5, threshold=6
                ),
                sharing_level=sdk.AUTHENTICATED,
                order=2,
            )
        ],
        token="agent-token",
        connection_timeout_seconds=120,
        metadata=[
            sdk.Agent.Metadata(
                key="load", display_name="Load", script="uptime", interval=10, timeout=1, order=3
            )
        ],
        display_apps=sdk.DisplayApps(vscode=True, web_terminal=True, port_forwarding_helper=True),
        scripts=[
            sdk.Script(
                display_name="Startup",
                script="echo hi",
                run_on_start=True,
                timeout_seconds=300,
                log_path="startup.log",
            )
        ],
        extra_envs=[sdk.Env(name="FOO", value="bar")],
        order=7,
    )
    resource = sdk.Resource(
        name="dev",
        type="docker_container",
        agents=[agent],
        metadata=[
            sdk.Resource.Metadata(key="image", value="ubuntu"),
            sdk.Resource.Metadata(key="password", value="x", sensitive=True),
            sdk.Resource.Metadata(key="nothing", is_null=True),
        ],
        hide=True,
        icon="/icon/docker.svg",
        instance_type="t3.micro",
        daily_cost=12,
    )
    parameter = sdk.RichParameter(
        name="cpu",
        description="CPUs",
        type="number",
        mutable=True,
        default_value="2",
        options=[sdk.RichParameterOption(name="Two", description="2 CPUs", value="2", icon="i")],
        validation_min=0,  # proto3 optional: set to 0, so present on the wire
        # validation_max is left unset, so absent from the wire
        required=True,
        display_name="CPU count",
        order=4,
        ephemeral=True,
    )
    completed = pd.CompletedJob(
        job_id="job-1",
        template_import=pd.CompletedJob.TemplateImport(
            start_resources=[resource],
            stop_resources=[sdk.Resource(name="dev", type="docker_volume")],
            rich_parameters=[parameter],
            external_auth_providers_names=["github", "gitlab"],
            external_auth_providers=[sdk.ExternalAuthProviderResource(id="github", optional=True)],
        ),
    )

    agent_bytes = msg(
        field(1, "agent-id"),
        field(2, "main"),
        field(3, msg(field(1, "HOME"), field(2, "/home/coder"))),
        field(3, msg(field(1, "PATH"), field(2, "/bin"))),
        field(5, "linux"),
        field(6, "amd64"),
        field(
            8,
            msg(
                field(1, "code"),
                field(2, "Code"),
                field(4, "http://localhost:8080"),
                field(6, True),
                field(7, msg(field(1, "http://localhost:8080/healthz"), field(2, 5), field(3, 6))),
                field(8, 1),  # sharing_level = AUTHENTICATED
                field(10, 2),
            ),
        ),
        field(9, "agent-token"),  # oneof auth
        field(11, 120),
        field(
            18,
            msg(
                field(1, "load"),
                field(2, "Load"),
                field(3, "uptime"),
                field(4, 10),
                field(5, 1),
                field(6, 3),
            ),
        ),
        field(20, msg(field(1, True), field(3, True), field(5, True))),
        field(
            21,
            msg(
                field(1, "Startup"),
                field(3, "echo hi"),
                field(6, True),
                field(8, 300),
                field(9, "startup.log"),
            ),
        ),
        field(22, msg(field(1, "FOO"), field(2, "bar"))),
        field(23, 7),
    )
    assert agent_bytes.startswith(
        msg(
            field(1, "agent-id"),
            field(2, "main"),
            map_field(3, {"PATH": "/bin", "HOME": "/home/coder"}),
        )
    )
    resource_bytes = msg(
        field(1, "dev"),
        field(2, "docker_container"),
        field(3, agent_bytes),
        field(4, msg(field(1, "image"), field(2, "ubuntu"))),
        field(4, msg(field(1, "password"), field(2, "x"), field(3, True))),
        field(4, msg(field(1, "nothing"), field(4, True))),
        field(5, True),
        field(6, "/icon/docker.svg"),
        field(7, "t3.micro"),
        field(8, 12),
    )
    parameter_bytes = msg(
        field(1, "cpu"),
        field(2, "CPUs"),
        field(3, "number"),
        field(4, True),
        field(5, "2"),
        field(7, msg(field(1, "Two"), field(2, "2 CPUs"), field(3, "2"), field(4, "i"))),
        field(10, 0),  # validation_min present although 0; no field 11
        field(13, True),
        field(15, "CPU count"),
        field(16, 4),
        field(17, True),
    )
    assert field(10, 0) == b"\x50\x00"
    expected = msg(
        field(1, "job-1"),
        field(
            3,
            msg(
                field(1, resource_bytes),
                field(2, msg(field(1, "dev"), field(2, "docker_volume"))),
                field(3, parameter_bytes),
                field(4, "github"),
                field(4, "gitlab"),
                field(5, msg(field(1, "github"), field(2, True))),
            ),
        ),
    )
    assert_wire(completed, expected)

    decoded = sdk.RichParameter.FromString(parameter_bytes)
    assert decoded.HasField("validation_min")
    assert decoded.validation_min == 0
    assert not decoded.HasField("validation_max")

    # The other member of oneof auth.
    assert_wire(sdk.Agent(instance_id="i-123"), field(10, "i-123"))
    # The remaining Agent, App and Script fields.
    assert_wire(
        sdk.Agent(directory="/work", troubleshooting_url="https://help", motd_file="/etc/motd"),
        msg(field(7, "/work"), field(12, "https://help"), field(13, "/etc/motd")),
    )
    assert_wire(
        sdk.App(command="vim", icon="/vim.svg", sharing_level=sdk.PUBLIC, external=True),
        msg(field(3, "vim"), field(5, "/vim.svg"), field(8, 2), field(9, True)),
    )
    assert_wire(
        sdk.Script(icon="i", cron="0 * * * *", start_blocks_login=True, run_on_stop=True),
        msg(field(2, "i"), field(4, "0 * * * *"), field(5, True), field(7, True)),
    )
    assert_wire(
        sdk.DisplayApps(vscode_insiders=True, ssh_helper=True),
        msg(field(2, True), field(4, True)),
    )
    assert_wire(
        sdk.RichParameter(
            validation_regex="^[0-9]+$",
            validation_error="digits",
            validation_max=-5,
            validation_monotonic="increasing",
        ),
        msg(field(8, "^[0-9]+$"), field(9, "digits"), field(11, -5), field(12, "increasing")),
    )
    assert_wire(
        sdk.Metadata(
            workspace_owner_id="uid",
            template_version="v1",
            workspace_owner_oidc_access_token="oidc",
            workspace_transition=sdk.DESTROY,
        ),
        msg(field(2, 2), field(6, "uid"), field(9, "v1"), field(10, "oidc")),
    )


def test_completed_job_workspace_build_and_dry_run() -> None:
    """CompletedJob.workspace_build (2: state, resources) and template_dry_run (4: resources)."""
    build = pd.CompletedJob(
        job_id="job-1",
        workspace_build=pd.CompletedJob.WorkspaceBuild(
            state=b"tfstate", resources=[sdk.Resource(name="a", daily_cost=1)]
        ),
    )
    assert_wire(
        build,
        msg(
            field(1, "job-1"),
            field(2, msg(field(1, b"tfstate"), field(2, msg(field(1, "a"), field(8, 1))))),
        ),
    )
    dry_run = pd.CompletedJob(
        job_id="job-2",
        template_dry_run=pd.CompletedJob.TemplateDryRun(resources=[sdk.Resource(name="b")]),
    )
    assert_wire(dry_run, msg(field(1, "job-2"), field(4, msg(field(1, msg(field(1, "b")))))))


def test_commit_quota() -> None:
    """CommitQuotaRequest (job_id=1, daily_cost=2) and CommitQuotaResponse (ok=1, 2, budget=3)."""
    assert_wire(
        pd.CommitQuotaRequest(job_id="job-1", daily_cost=42),
        msg(field(1, "job-1"), field(2, 42)),
    )
    response = pd.CommitQuotaResponse(ok=True, credits_consumed=300, budget=-1)
    expected = msg(field(1, True), field(2, 300), field(3, -1))
    # int32 -1 is sign-extended: tag 0x18 then ten bytes.
    assert expected.endswith(b"\x18" + b"\xff" * 9 + b"\x01")
    assert_wire(response, expected)
    assert_wire(pd.CommitQuotaResponse(ok=False, credits_consumed=0, budget=0), b"")


@pytest.mark.parametrize(
    ("message_class", "number"),
    [
        (pd.AcquiredJob.WorkspaceBuild, 3),
        (pd.AcquiredJob.TemplateDryRun, 1),
        (pd.UpdateJobRequest, 3),
        (pd.UpdateJobResponse, 2),
        (sdk.RichParameter, 14),
        (sdk.Agent, 14),
    ],
)
def test_reserved_numbers_are_unknown(message_class: type[Message], number: int) -> None:
    """A reserved field number decodes as an unknown field, not into any declared field."""
    decoded = message_class.FromString(field(number, "x"))
    assert decoded.ListFields() == []
    assert decoded.SerializeToString() == field(number, "x")  # kept as unknown


def test_empty_messages() -> None:
    """Empty, CancelAcquire and the empty FailedJob members encode to nothing."""
    for empty in (
        pd.Empty,
        pd.CancelAcquire,
        pd.FailedJob.TemplateImport,
        pd.FailedJob.TemplateDryRun,
    ):
        assert empty.DESCRIPTOR.fields == []
        assert_wire(empty(), b"")


def test_enum_values() -> None:
    """LogSource, LogLevel, WorkspaceTransition and AppSharingLevel numbers."""
    assert dict(pd.LogSource.items()) == {"PROVISIONER_DAEMON": 0, "PROVISIONER": 1}
    assert pd.PROVISIONER_DAEMON == 0
    assert pd.PROVISIONER == 1
    assert dict(sdk.LogLevel.items()) == {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "ERROR": 4}
    assert (sdk.TRACE, sdk.DEBUG, sdk.INFO, sdk.WARN, sdk.ERROR) == (0, 1, 2, 3, 4)
    assert dict(sdk.WorkspaceTransition.items()) == {"START": 0, "STOP": 1, "DESTROY": 2}
    assert (sdk.START, sdk.STOP, sdk.DESTROY) == (0, 1, 2)
    assert dict(sdk.AppSharingLevel.items()) == {"OWNER": 0, "AUTHENTICATED": 1, "PUBLIC": 2}
    assert (sdk.OWNER, sdk.AUTHENTICATED, sdk.PUBLIC) == (0, 1, 2)


def test_service_methods() -> None:
    """ProvisionerDaemon's six methods: paths, types, streaming flags and the deprecation."""
    assert pd.DESCRIPTOR.package == "provisionerd"
    assert sdk.DESCRIPTOR.package == "provisioner"
    service = pd.DESCRIPTOR.services_by_name["ProvisionerDaemon"]
    assert service.full_name == "provisionerd.ProvisionerDaemon"
    methods = {
        f"/{service.full_name}/{m.name}": (
            m.input_type.full_name,
            m.output_type.full_name,
            m.client_streaming,
            m.server_streaming,
            m.GetOptions().deprecated,
        )
        for m in service.methods
    }
    assert methods == {
        "/provisionerd.ProvisionerDaemon/AcquireJob": (
            "provisionerd.Empty",
            "provisionerd.AcquiredJob",
            False,
            False,
            True,
        ),
        "/provisionerd.ProvisionerDaemon/AcquireJobWithCancel": (
            "provisionerd.CancelAcquire",
            "provisionerd.AcquiredJob",
            True,
            True,
            False,
        ),
        "/provisionerd.ProvisionerDaemon/CommitQuota": (
            "provisionerd.CommitQuotaRequest",
            "provisionerd.CommitQuotaResponse",
            False,
            False,
            False,
        ),
        "/provisionerd.ProvisionerDaemon/UpdateJob": (
            "provisionerd.UpdateJobRequest",
            "provisionerd.UpdateJobResponse",
            False,
            False,
            False,
        ),
        "/provisionerd.ProvisionerDaemon/FailJob": (
            "provisionerd.FailedJob",
            "provisionerd.Empty",
            False,
            False,
            False,
        ),
        "/provisionerd.ProvisionerDaemon/CompleteJob": (
            "provisionerd.CompletedJob",
            "provisionerd.Empty",
            False,
            False,
            False,
        ),
    }


# --- every field of the table, transcribed from wire.md ---------------------------------------
#
# One line per message: "Message (reserved N): number name type [(rep)|(oneof x)|(optional)] · …".
# Type names without a package are resolved in the line's package.

PROVISIONERD_TABLE = """
AcquiredJob: 1 job_id string · 2 created_at int64 · 3 provisioner string · 4 user_name string · 5 template_source_archive bytes · 6 workspace_build AcquiredJob.WorkspaceBuild (oneof type) · 7 template_import AcquiredJob.TemplateImport (oneof type) · 8 template_dry_run AcquiredJob.TemplateDryRun (oneof type) · 9 trace_metadata map<string,string>
AcquiredJob.WorkspaceBuild (reserved 3): 1 workspace_build_id string · 2 workspace_name string · 4 rich_parameter_values provisioner.RichParameterValue (rep) · 5 variable_values provisioner.VariableValue (rep) · 6 external_auth_providers provisioner.ExternalAuthProvider (rep) · 7 metadata provisioner.Metadata · 8 state bytes · 9 log_level string
AcquiredJob.TemplateImport: 1 metadata provisioner.Metadata · 2 user_variable_values provisioner.VariableValue (rep)
AcquiredJob.TemplateDryRun (reserved 1): 2 rich_parameter_values provisioner.RichParameterValue (rep) · 3 variable_values provisioner.VariableValue (rep) · 4 metadata provisioner.Metadata
FailedJob: 1 job_id string · 2 error string · 3 workspace_build FailedJob.WorkspaceBuild (oneof type) · 4 template_import FailedJob.TemplateImport (oneof type) · 5 template_dry_run FailedJob.TemplateDryRun (oneof type) · 6 error_code string
FailedJob.WorkspaceBuild: 1 state bytes
CompletedJob: 1 job_id string · 2 workspace_build CompletedJob.WorkspaceBuild (oneof type) · 3 template_import CompletedJob.TemplateImport (oneof type) · 4 template_dry_run CompletedJob.TemplateDryRun (oneof type)
CompletedJob.WorkspaceBuild: 1 state bytes · 2 resources provisioner.Resource (rep)
CompletedJob.TemplateImport: 1 start_resources provisioner.Resource (rep) · 2 stop_resources provisioner.Resource (rep) · 3 rich_parameters provisioner.RichParameter (rep) · 4 external_auth_providers_names string (rep) · 5 external_auth_providers provisioner.ExternalAuthProviderResource (rep)
CompletedJob.TemplateDryRun: 1 resources provisioner.Resource (rep)
Log: 1 source LogSource · 2 level provisioner.LogLevel · 3 created_at int64 · 4 stage string · 5 output string
UpdateJobRequest (reserved 3): 1 job_id string · 2 logs Log (rep) · 4 template_variables provisioner.TemplateVariable (rep) · 5 user_variable_values provisioner.VariableValue (rep) · 6 readme bytes
UpdateJobResponse (reserved 2): 1 canceled bool · 3 variable_values provisioner.VariableValue (rep)
CommitQuotaRequest: 1 job_id string · 2 daily_cost int32
CommitQuotaResponse: 1 ok bool · 2 credits_consumed int32 · 3 budget int32
"""  # noqa: E501

PROVISIONER_TABLE = """
TemplateVariable: 1 name string · 2 description string · 3 type string · 4 default_value string · 5 required bool · 6 sensitive bool
RichParameterOption: 1 name string · 2 description string · 3 value string · 4 icon string
RichParameter (reserved 14): 1 name string · 2 description string · 3 type string · 4 mutable bool · 5 default_value string · 6 icon string · 7 options RichParameterOption (rep) · 8 validation_regex string · 9 validation_error string · 10 validation_min int32 (optional) · 11 validation_max int32 (optional) · 12 validation_monotonic string · 13 required bool · 15 display_name string · 16 order int32 · 17 ephemeral bool
RichParameterValue: 1 name string · 2 value string
VariableValue: 1 name string · 2 value string · 3 sensitive bool
ExternalAuthProviderResource: 1 id string · 2 optional bool
ExternalAuthProvider: 1 id string · 2 access_token string
Agent (reserved 14): 1 id string · 2 name string · 3 env map<string,string> · 5 operating_system string · 6 architecture string · 7 directory string · 8 apps App (rep) · 9 token string (oneof auth) · 10 instance_id string (oneof auth) · 11 connection_timeout_seconds int32 · 12 troubleshooting_url string · 13 motd_file string · 18 metadata Agent.Metadata (rep) · 20 display_apps DisplayApps · 21 scripts Script (rep) · 22 extra_envs Env (rep) · 23 order int64
Agent.Metadata: 1 key string · 2 display_name string · 3 script string · 4 interval int64 · 5 timeout int64 · 6 order int64
DisplayApps: 1 vscode bool · 2 vscode_insiders bool · 3 web_terminal bool · 4 ssh_helper bool · 5 port_forwarding_helper bool
Env: 1 name string · 2 value string
Script: 1 display_name string · 2 icon string · 3 script string · 4 cron string · 5 start_blocks_login bool · 6 run_on_start bool · 7 run_on_stop bool · 8 timeout_seconds int32 · 9 log_path string
App: 1 slug string · 2 display_name string · 3 command string · 4 url string · 5 icon string · 6 subdomain bool · 7 healthcheck Healthcheck · 8 sharing_level AppSharingLevel · 9 external bool · 10 order int64
Healthcheck: 1 url string · 2 interval int32 · 3 threshold int32
Resource: 1 name string · 2 type string · 3 agents Agent (rep) · 4 metadata Resource.Metadata (rep) · 5 hide bool · 6 icon string · 7 instance_type string · 8 daily_cost int32
Resource.Metadata: 1 key string · 2 value string · 3 sensitive bool · 4 is_null bool
Metadata: 1 coder_url string · 2 workspace_transition WorkspaceTransition · 3 workspace_name string · 4 workspace_owner string · 5 workspace_id string · 6 workspace_owner_id string · 7 workspace_owner_email string · 8 template_name string · 9 template_version string · 10 workspace_owner_oidc_access_token string · 11 workspace_owner_session_token string · 12 template_id string · 13 workspace_owner_name string · 14 workspace_owner_groups string (rep)
"""  # noqa: E501

SCALARS = {
    "string": FieldDescriptor.TYPE_STRING,
    "bytes": FieldDescriptor.TYPE_BYTES,
    "bool": FieldDescriptor.TYPE_BOOL,
    "int32": FieldDescriptor.TYPE_INT32,
    "int64": FieldDescriptor.TYPE_INT64,
}


def table_rows(package: str, table: str) -> list[tuple[str, str]]:
    rows = []
    for line in table.strip().splitlines():
        head, body = line.split(": ", 1)
        rows.append((f"{package}.{head}", body))
    return rows


def describe(package: str, fd: FieldDescriptor) -> str:
    """A field as a wire.md table entry: "number name type [(rep)|(oneof x)|(optional)]"."""
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        key, value = fd.message_type.fields
        types = f"{describe_type(package, key)},{describe_type(package, value)}"
        return f"{fd.number} {fd.name} map<{types}>"
    text = f"{fd.number} {fd.name} {describe_type(package, fd)}"
    oneof = fd.containing_oneof
    if fd.is_repeated:
        text += " (rep)"
    elif oneof is not None and oneof.name == f"_{fd.name}" and fd.has_presence:
        text += " (optional)"  # proto3 optional: a synthetic oneof
    elif oneof is not None:
        text += f" (oneof {oneof.name})"
    return text


def describe_type(package: str, fd: FieldDescriptor) -> str:
    named = fd.message_type or fd.enum_type
    if named is None:
        return next(name for name, t in SCALARS.items() if t == fd.type)
    return named.full_name.removeprefix(f"{package}.")


def reserved(descriptor: Descriptor) -> list[int]:
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    return [n for r in proto.reserved_range for n in range(r.start, r.end)]


@pytest.mark.parametrize(
    ("full_name", "body"),
    table_rows("provisionerd", PROVISIONERD_TABLE) + table_rows("provisioner", PROVISIONER_TABLE),
)
def test_every_field_matches_the_table(full_name: str, body: str) -> None:
    """Each message has exactly wire.md's fields: numbers, names, types, labels, reserved."""
    package = full_name.split(".")[0]
    message_path = full_name.split(" ")[0].removeprefix(f"{package}.")
    module = pd if package == "provisionerd" else sdk
    descriptor = module.DESCRIPTOR.message_types_by_name[message_path.split(".")[0]]
    for nested in message_path.split(".")[1:]:
        descriptor = descriptor.nested_types_by_name[nested]
    actual = " · ".join(
        describe(package, fd) for fd in sorted(descriptor.fields, key=lambda f: f.number)
    )
    assert actual == body
    expected_reserved = [int(n) for n in full_name.partition("(reserved ")[2].rstrip(")").split()]
    assert reserved(descriptor) == expected_reserved
