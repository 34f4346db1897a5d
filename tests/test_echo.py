"""The echo provisioner (provd/daemon/echo.py), run against a real provd: a test
daemon acquires the job, run_echo plays it through a real JobReporter, and the test
ends the job as the daemon's runner would; then it checks the job API."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from connectrpc.compat import google_protobuf_binary_codec

from provd.archive import pack_directory
from provd.client.connect import StaticHeaders, call
from provd.client.daemon.connection import DaemonConnection
from provd.client.daemon.echo import echo_provisioner, run_echo
from provd.client.daemon.echo_spec import SpecError, load_spec, parse_spec
from provd.client.daemon.provisioners import JobFailed, Provisioner
from provd.client.daemon.reporting import JobReporter, ReportingSettings
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provd.v1 import quota_pb2 as qpb
from provd.gen.provd.v1.quota_connect_client import QuotaServiceClientSync
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from tests.archives import MAIN_TF, make_tar
from tests.conftest import ADMIN_TOKEN, Server
from tests.daemon_clients import Jobs, TestDaemon

EXAMPLES = Path(__file__).parent.parent / "examples"
FAST = ReportingSettings(heartbeat_interval_seconds=0.1, debounce_seconds=0.01)
INSTANT = echo_provisioner(time_scale=0)  # the scripts without their delays
Spec = Mapping[str, Any]


@dataclass
class Ran:
    """A job after its echo run ended: what GetJob says and what the echo logged."""

    job: pb.Job
    logs: list[pb.JobLog]  # the provisioner's lines only
    outcome: pd.CompletedJob | JobFailed

    @property
    def lines(self) -> list[tuple[str, str]]:
        return [(log.stage, log.output) for log in self.logs]

    def outputs(self, stage: str) -> list[str]:
        return [log.output for log in self.logs if log.stage == stage]

    @property
    def stages(self) -> list[str]:
        return list(dict.fromkeys(log.stage for log in self.logs))


class Echo:
    """Jobs for the echo provisioner, run by one test daemon."""

    def __init__(self, server: Server, nursery: trio.Nursery) -> None:
        self.jobs = Jobs(server)
        self.daemon = TestDaemon(server, "echo-daemon")
        self.connection = DaemonConnection(self.daemon.client)
        self._nursery = nursery

    async def upload(self, spec: Spec | None = None, files: Mapping[str, bytes] = MAIN_TF) -> str:
        contents = dict(files)
        if spec is not None:
            contents["provd-echo.json"] = json.dumps(spec).encode()
        return await self.upload_tar(make_tar(contents))

    async def upload_tar(self, tar: bytes) -> str:
        uploaded = await call(self.jobs.client.upload_file, pb.UploadFileRequest(data=tar))
        return uploaded.hash

    async def acquire(self, kind: str, file_hash: str, **fields: object) -> pd.AcquiredJob:
        job = await self.jobs.create(kind, file_hash=file_hash, **fields)
        acquired = await (await self.daemon.acquire(self._nursery)).wait()
        assert acquired.job_id == job.id
        return acquired

    async def run(
        self,
        kind: str = "template_import",
        spec: Spec | None = None,
        *,
        files: Mapping[str, bytes] = MAIN_TF,
        file_hash: str = "",
        provisioner: Provisioner = INSTANT,
        **fields: object,
    ) -> Ran:
        """Create a job, run it with the echo provisioner and end it; returns it."""
        acquired = await self.acquire(kind, file_hash or await self.upload(spec, files), **fields)
        outcome = await self.play(acquired, provisioner)
        return await self.finish(acquired, outcome)

    async def play(
        self, acquired: pd.AcquiredJob, provisioner: Provisioner = INSTANT
    ) -> pd.CompletedJob | JobFailed:
        reporter = JobReporter(self.connection, acquired.job_id, FAST)
        outcome: pd.CompletedJob | JobFailed
        async with trio.open_nursery() as nursery:
            await nursery.start(reporter.run)
            try:
                outcome = await provisioner(acquired, reporter)
            except JobFailed as failed:
                outcome = failed
            await reporter.update()  # the last lines go out before the verdict
            nursery.cancel_scope.cancel()
        return outcome

    async def finish(self, acquired: pd.AcquiredJob, outcome: pd.CompletedJob | JobFailed) -> Ran:
        if isinstance(outcome, pd.CompletedJob):
            assert outcome.job_id == acquired.job_id
            await self.connection.complete_job(outcome)
        else:
            await self.connection.fail_job(failed_job(acquired, outcome))
        return await self.ran(acquired.job_id, outcome)

    async def ran(self, job_id: str, outcome: pd.CompletedJob | JobFailed) -> Ran:
        logs = [log for log in await self.jobs.logs(job_id) if log.source == pd.PROVISIONER]
        return Ran(await self.jobs.get(job_id), logs, outcome)


def failed_job(acquired: pd.AcquiredJob, failure: JobFailed | None) -> pd.FailedJob:
    failed = pd.FailedJob(job_id=acquired.job_id)
    if failure is not None:
        failed.error, failed.error_code = failure.error, failure.error_code
    kind = acquired.WhichOneof("type")
    if kind == "workspace_build":
        state = failure.state if failure is not None else acquired.workspace_build.state
        failed.workspace_build.CopyFrom(pd.FailedJob.WorkspaceBuild(state=state))
    elif kind == "template_import":
        failed.template_import.SetInParent()
    else:
        failed.template_dry_run.SetInParent()
    return failed


def build_input(
    workspace: str = "dev",
    *,
    transition: sdk.WorkspaceTransition = sdk.START,
    workspace_id: str = "",
    owner: str = "u1",
    **fields: Any,
) -> pb.WorkspaceBuildInput:
    metadata = sdk.Metadata(
        workspace_transition=transition,
        workspace_name=workspace,
        workspace_id=workspace_id,
        workspace_owner_id=owner,
    )
    return pb.WorkspaceBuildInput(workspace_name=workspace, metadata=metadata, **fields)


@pytest.fixture
def echo(server: Server, nursery: trio.Nursery) -> Echo:
    return Echo(server, nursery)


# -- the default run --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "stages"),
    [
        ("template_import", ["Parsing template", "Detecting persistent resources"]),
        ("workspace_build", ["Planning infrastructure", "Starting workspace"]),
        ("template_dry_run", ["Planning infrastructure"]),
    ],
)
async def test_default_run_without_a_spec_file(echo: Echo, kind: str, stages: list[str]) -> None:
    """No provd-echo.json: a couple of stages of lines, then success."""
    fields = {"workspace_build": build_input("dev")} if kind == "workspace_build" else {}
    ran = await echo.run(kind, **fields)
    assert ran.job.status == pb.JOB_STATUS_SUCCEEDED, ran.job.error
    assert ran.stages == ["Setting up", *stages, "Done"]
    first = ran.logs[0].output
    assert kind.replace("_", " ") in first and ran.job.id in first
    assert "No provd-echo.json" in ran.outputs("Setting up")[1]
    if kind == "workspace_build":
        assert "workspace 'dev', transition start" in first
        (resource,) = ran.job.result.workspace_build.resources
        assert (resource.name, resource.daily_cost) == ("echo", 0)
        state = json.loads(ran.job.result.workspace_build.state)
        assert state["provisioner"] == "echo" and state["builds"] == 1
    elif kind == "template_import":
        assert [r.name for r in ran.job.result.template_import.start_resources] == ["echo"]
        assert ran.job.result.readme == b""
    else:
        assert [r.name for r in ran.job.result.template_dry_run.resources] == ["echo"]


# -- stages -------------------------------------------------------------------------


async def test_stages_log_their_lines_in_order_with_levels(echo: Echo) -> None:
    spec = {
        "stages": [
            {"name": "One", "lines": ["a", {"output": "b", "level": "warn"}]},
            {"name": "Empty"},
            {"name": "Two", "lines": [{"output": "c", "level": "trace"}, "d"]},
        ]
    }
    ran = await echo.run("template_dry_run", spec)
    played = [(log.stage, log.output, log.level) for log in ran.logs[2:-1]]
    assert played == [
        ("One", "a", sdk.INFO),
        ("One", "b", sdk.WARN),
        ("Two", "c", sdk.TRACE),
        ("Two", "d", sdk.INFO),
    ]
    assert ran.outputs("Setting up")[1] == "Following provd-echo.json"


async def test_delays_and_waits_take_their_time(echo: Echo) -> None:
    """Delays before, between and after lines, and a wait logged in steps."""
    spec = {
        "stages": [
            {
                "name": "Slowish",
                "delay": 0.1,
                "line_delay": 0.05,
                "lines": ["a", {"output": "b", "delay": 0.1}],
                "wait": {"seconds": 0.25, "step": 0.1, "output": "{elapsed}/{seconds}"},
                "after": 0.1,
            }
        ]
    }
    start = trio.current_time()
    ran = await echo.run("template_dry_run", spec, provisioner=run_echo)
    assert trio.current_time() - start >= 0.1 + 0.05 + 0.1 + 0.25 + 0.1
    assert ran.outputs("Slowish") == ["a", "b", "0.1/0.25", "0.2/0.25", "0.25/0.25"]


# -- template import ----------------------------------------------------------------


IMPORT_SPEC: Spec = {
    "template_import": {
        "variables": [
            {"name": "region", "description": "Where", "default": "eu"},
            {"name": "token", "sensitive": True, "default": "t0ps3cret"},
            {"name": "count", "type": "number", "default": 2, "required": False},
        ],
        "readme": {"file": "docs/README.md"},
        "parameters": [
            {
                "name": "size",
                "display_name": "Size",
                "default": "s",
                "mutable": True,
                "options": [{"name": "Small", "value": "s"}, {"name": "Large", "value": "l"}],
            },
            {"name": "disk", "type": "number", "validation": {"min": 0, "max": 100}},
        ],
        "external_auth": ["github", {"id": "gitlab", "optional": True}],
        "start_resources": [{"name": "vm", "type": "echo_vm", "daily_cost": 2}],
        "stop_resources": [],
    }
}


async def test_import_declares_variables_readme_and_parameters(echo: Echo) -> None:
    files = {**MAIN_TF, "docs/README.md": b"# Hello\n"}
    given = [sdk.VariableValue(name="region", value="us")]
    ran = await echo.run(
        "template_import",
        IMPORT_SPEC,
        files=files,
        template_import=pb.TemplateImportInput(user_variable_values=given),
    )
    assert ran.job.status == pb.JOB_STATUS_SUCCEEDED, ran.job.error
    result = ran.job.result
    assert result.readme == b"# Hello\n"
    assert [
        (v.name, v.default_value, v.required, v.sensitive) for v in result.template_variables
    ] == [
        ("region", "eu", False, False),
        ("token", "t0ps3cret", False, True),
        ("count", "2", False, False),
    ]
    imported = result.template_import
    size, disk = imported.rich_parameters
    assert (size.name, size.default_value, size.mutable, size.required) == (
        "size",
        "s",
        True,
        False,
    )
    assert [o.value for o in size.options] == ["s", "l"]
    assert disk.required and disk.type == "number"
    assert disk.HasField("validation_min") and (disk.validation_min, disk.validation_max) == (
        0,
        100,
    )
    assert not size.HasField("validation_min")
    assert list(imported.external_auth_providers_names) == ["github", "gitlab"]
    assert [(p.id, p.optional) for p in imported.external_auth_providers] == [
        ("github", False),
        ("gitlab", True),
    ]
    assert [(r.name, r.daily_cost) for r in imported.start_resources] == [("vm", 2)]
    assert list(imported.stop_resources) == []
    values = ran.outputs("Template variables")
    assert "variable region = 'us'" in values
    assert "variable token = (sensitive)" in values
    assert "variable count = '2'" in values
    assert not any("t0ps3cret" in log.output for log in ran.logs)


async def test_import_without_a_required_variable_fails(echo: Echo) -> None:
    spec = {"template_import": {"variables": [{"name": "key", "sensitive": True}, {"name": "x"}]}}
    file_hash = await echo.upload(spec)
    ran = await echo.run("template_import", file_hash=file_hash)
    assert ran.job.status == pb.JOB_STATUS_FAILED
    assert ran.job.error_code == "REQUIRED_TEMPLATE_VARIABLES"
    assert "required template variables need values: key, x" in ran.job.error
    assert isinstance(ran.outcome, JobFailed)
    # The declaration was stored anyway, and the reason is in the log.
    assert [v.name for v in ran.job.result.template_variables] == ["key", "x"]
    assert any("need values" in line for line in ran.outputs("Template variables"))

    given = [sdk.VariableValue(name="key", value="k3y"), sdk.VariableValue(name="x", value="1")]
    ran = await echo.run(
        "template_import",
        file_hash=file_hash,
        template_import=pb.TemplateImportInput(user_variable_values=given),
    )
    assert ran.job.status == pb.JOB_STATUS_SUCCEEDED, ran.job.error
    assert "variable key = (sensitive)" in ran.outputs("Template variables")
    assert not any("k3y" in log.output for log in ran.logs)


async def test_import_resources_default_to_the_builds(echo: Echo) -> None:
    spec = {
        "workspace_build": {
            "resources": [{"name": "vm"}, {"name": "disk"}],
            "transitions": {"stop": {"resources": [{"name": "disk"}]}},
        }
    }
    ran = await echo.run("template_import", spec)
    imported = ran.job.result.template_import
    assert [r.name for r in imported.start_resources] == ["vm", "disk"]
    assert [r.name for r in imported.stop_resources] == ["disk"]


# -- workspace builds -----------------------------------------------------------------

BUILD_SPEC: Spec = {
    "workspace_build": {
        "stages": [{"name": "Applying", "lines": ["creating"]}],
        "resources": [
            {
                "name": "main",
                "type": "echo_vm",
                "daily_cost": 2,
                "metadata": {"ip": "10.0.0.1", "pw": {"value": "x", "sensitive": True}, "n": None},
                "agents": [
                    {
                        "name": "dev",
                        "env": {"A": "1"},
                        "apps": [{"slug": "code", "url": "http://localhost:8080"}],
                    }
                ],
            },
            {"name": "home", "type": "echo_volume", "daily_cost": 1},
        ],
        "transitions": {
            "stop": {
                "stages": [{"name": "Stopping", "lines": ["stopping"]}],
                "resources": [{"name": "home", "type": "echo_volume", "daily_cost": 1}],
            },
            "destroy": {"stages": [{"name": "Destroying", "lines": ["gone"]}]},
        },
    }
}


async def test_build_returns_resources_and_counts_builds_in_its_state(echo: Echo) -> None:
    file_hash = await echo.upload(BUILD_SPEC)
    inputs = build_input(
        "dev",
        workspace_id="w1",
        rich_parameter_values=[sdk.RichParameterValue(name="region", value="eu")],
        variable_values=[
            sdk.VariableValue(name="token", value="s3cret", sensitive=True),
            sdk.VariableValue(name="size", value="l"),
        ],
    )
    ran = await echo.run("workspace_build", file_hash=file_hash, workspace_build=inputs)
    assert ran.job.status == pb.JOB_STATUS_SUCCEEDED, ran.job.error
    assert ran.stages == ["Setting up", "Applying", "Committing quota", "Done"]
    setup = ran.outputs("Setting up")
    assert "parameter region = 'eu'" in setup
    assert "variable token = (sensitive)" in setup and "variable size = 'l'" in setup
    assert not any("s3cret" in log.output for log in ran.logs)
    build = ran.job.result.workspace_build
    main, home = build.resources
    assert (main.name, main.type, main.daily_cost, home.daily_cost) == ("main", "echo_vm", 2, 1)
    assert [(m.key, m.value, m.sensitive, m.is_null) for m in main.metadata] == [
        ("ip", "10.0.0.1", False, False),
        ("pw", "x", True, False),
        ("n", "", False, True),
    ]
    (agent,) = main.agents
    assert (agent.name, agent.operating_system, dict(agent.env)) == ("dev", "linux", {"A": "1"})
    assert agent.apps[0].slug == "code"
    # No quota configured: the sum of the daily costs is committed and allowed.
    assert ran.outputs("Committing quota") == [
        "Committing a daily cost of 3 credits",
        "No quota is configured: the cost is recorded",
    ]
    first = json.loads(build.state)
    assert first == {
        "provisioner": "echo",
        "builds": 1,
        "workspace": "dev",
        "transition": "start",
        "resources": ["main", "home"],
    }

    stop = build_input("dev", workspace_id="w1", transition=sdk.STOP, state=build.state)
    ran = await echo.run("workspace_build", file_hash=file_hash, workspace_build=stop)
    assert ran.stages == ["Setting up", "Stopping", "Committing quota", "Done"]
    assert [r.name for r in ran.job.result.workspace_build.resources] == ["home"]
    second = json.loads(ran.job.result.workspace_build.state)
    assert (second["builds"], second["transition"]) == (2, "stop")

    state = ran.job.result.workspace_build.state
    destroy = build_input("dev", workspace_id="w1", transition=sdk.DESTROY, state=state)
    ran = await echo.run("workspace_build", file_hash=file_hash, workspace_build=destroy)
    assert ran.job.status == pb.JOB_STATUS_SUCCEEDED, ran.job.error
    assert "transition destroy" in ran.logs[0].output
    assert ran.stages == ["Setting up", "Destroying", "Done"]  # nothing to commit
    assert list(ran.job.result.workspace_build.resources) == []
    assert json.loads(ran.job.result.workspace_build.state)["builds"] == 3


async def test_build_state_from_the_spec_or_carried_forward(echo: Echo) -> None:
    ran = await echo.run(
        "workspace_build",
        {"workspace_build": {"state": "terraform v1"}},
        workspace_build=build_input(state=b"old"),
    )
    assert ran.job.result.workspace_build.state == b"terraform v1"
    ran = await echo.run("workspace_build", workspace_build=build_input(state=b"not echo's"))
    assert ran.job.result.workspace_build.state == b"not echo's"


async def test_build_cost_within_and_over_quota(echo: Echo, server: Server) -> None:
    """An explicit cost is committed; a refusal fails the build, keeping its state."""
    quota = QuotaServiceClientSync(
        server.url,
        codec=google_protobuf_binary_codec(),
        interceptors=[StaticHeaders({"authorization": f"Bearer {ADMIN_TOKEN}"})],
    )
    allowance = qpb.Allowance(user_id="u1", allowance=5)
    await call(quota.set_allowance, qpb.SetAllowanceRequest(allowance=allowance))
    spec = {"workspace_build": {"cost": 4}}
    ran = await echo.run(
        "workspace_build", spec, workspace_build=build_input("a", workspace_id="a")
    )
    assert ran.job.status == pb.JOB_STATUS_SUCCEEDED, ran.job.error
    assert "Within quota: 4 of 5 credits consumed" in ran.outputs("Committing quota")

    inputs = build_input("b", workspace_id="b", state=b"b's state")
    ran = await echo.run("workspace_build", spec, workspace_build=inputs)
    assert ran.job.status == pb.JOB_STATUS_FAILED
    assert ran.job.error_code == "INSUFFICIENT_QUOTA"
    assert ran.job.error == (
        "insufficient quota: this build costs 4 credits a day,"
        " and 4 credits of a budget of 5 are already consumed"
    )
    assert ran.job.result.failed_state == b"b's state"
    assert ran.stages == [
        "Setting up",
        "Planning infrastructure",
        "Starting workspace",
        "Committing quota",
    ]


async def test_build_without_a_workspace_id_skips_the_quota(echo: Echo) -> None:
    ran = await echo.run(
        "workspace_build", {"workspace_build": {"cost": 1}}, workspace_build=build_input()
    )
    assert ran.job.status == pb.JOB_STATUS_SUCCEEDED, ran.job.error
    (line,) = ran.outputs("Committing quota")
    assert "no workspace id" in line


# -- dry runs -------------------------------------------------------------------------


async def test_dry_run_returns_its_resources(echo: Echo) -> None:
    spec = {"template_dry_run": {"resources": [{"name": "plan", "type": "echo_vm"}]}}
    parameters = [sdk.RichParameterValue(name="size", value="l")]
    ran = await echo.run(
        "template_dry_run",
        spec,
        template_dry_run=pb.TemplateDryRunInput(rich_parameter_values=parameters),
    )
    assert ran.job.status == pb.JOB_STATUS_SUCCEEDED, ran.job.error
    assert [(r.name, r.type) for r in ran.job.result.template_dry_run.resources] == [
        ("plan", "echo_vm")
    ]
    assert "parameter size = 'l'" in ran.outputs("Setting up")
    # Without its own resources, a dry run plans the start build's.
    ran = await echo.run("template_dry_run", BUILD_SPEC)
    assert [r.name for r in ran.job.result.template_dry_run.resources] == ["main", "home"]


# -- failures -------------------------------------------------------------------------


async def test_fail_reports_its_error_after_the_stages(echo: Echo) -> None:
    spec = {
        "stages": [{"name": "Applying", "lines": ["creating"]}],
        "fail": {"error": "the cloud said no", "error_code": "CLOUD_NO"},
        "template_dry_run": {"fail": None},
        "workspace_build": {"transitions": {"stop": {"fail": {"error": "stuck", "stage": "Stop"}}}},
    }
    file_hash = await echo.upload(spec)
    ran = await echo.run(
        "workspace_build", file_hash=file_hash, workspace_build=build_input(state=b"kept")
    )
    assert (ran.job.status, ran.job.error, ran.job.error_code) == (
        pb.JOB_STATUS_FAILED,
        "the cloud said no",
        "CLOUD_NO",
    )
    assert ran.job.result.failed_state == b"kept"
    assert [(log.stage, log.output, log.level) for log in ran.logs[-2:]] == [
        ("Applying", "creating", sdk.INFO),
        ("Applying", "the cloud said no", sdk.ERROR),
    ]
    stop = build_input(transition=sdk.STOP)
    ran = await echo.run("workspace_build", file_hash=file_hash, workspace_build=stop)
    assert (ran.job.error, ran.job.error_code, ran.logs[-1].stage) == ("stuck", "", "Stop")
    ran = await echo.run("template_import", file_hash=file_hash)
    assert ran.job.error_code == "CLOUD_NO"
    ran = await echo.run("template_dry_run", file_hash=file_hash)
    assert ran.job.status == pb.JOB_STATUS_SUCCEEDED


async def test_a_bad_spec_fails_the_job_naming_the_field(echo: Echo) -> None:
    spec = {"stages": [{"name": "ok"}, {"name": "bad", "delay": "soon"}]}
    ran = await echo.run("workspace_build", spec, workspace_build=build_input(state=b"s"))
    assert ran.job.status == pb.JOB_STATUS_FAILED
    assert ran.job.error == "provd-echo.json: stages[1].delay must be a number"
    assert ran.job.error_code == "INVALID_ECHO_SPEC"
    assert ran.stages == ["Setting up"]
    assert ran.logs[-1].output == ran.job.error and ran.logs[-1].level == sdk.ERROR
    # Not JSON at all.
    file_hash = await echo.upload_tar(make_tar({"provd-echo.json": b"{stages: []}"}))
    ran = await echo.run("template_import", file_hash=file_hash)
    assert ran.job.error.startswith("provd-echo.json: not valid JSON: ")


BAD_SPECS: list[tuple[object, str]] = [
    ([], "the top level must be an object"),
    ({"stage": []}, "stage is not a known field (known: description, stages, fail, "),
    ({"stages": {}}, "stages must be a list"),
    ({"stages": [{}]}, "stages[0].name is required"),
    ({"stages": [{"name": ""}]}, "stages[0].name must not be empty"),
    ({"stages": [{"name": "a", "lines": [3]}]}, "stages[0].lines[0] must be a string or an object"),
    (
        {"stages": [{"name": "a", "lines": [{"level": "info"}]}]},
        "stages[0].lines[0].output is required",
    ),
    (
        {"stages": [{"name": "a", "lines": [{"output": "x", "level": "loud"}]}]},
        "stages[0].lines[0].level must be one of trace, debug, info, warn, error; got 'loud'",
    ),
    ({"stages": [{"name": "a", "delay": -1}]}, "stages[0].delay must not be negative"),
    ({"stages": [{"name": "a", "line_delay": True}]}, "stages[0].line_delay must be a number"),
    ({"stages": [{"name": "a", "wait": {}}]}, "stages[0].wait.seconds is required"),
    (
        {"stages": [{"name": "a", "wait": {"seconds": 1, "step": 0}}]},
        "stages[0].wait.step must be greater than 0",
    ),
    ({"fail": {"error_code": "X"}}, "fail.error is required"),
    ({"fail": "boom"}, "fail must be an object or null"),
    (
        {"template_import": {"variables": [{"name": "a"}, {"name": "a"}]}},
        "template_import.variables[1] repeats the name 'a'",
    ),
    (
        {"template_import": {"variables": [{"name": "a", "type": "list"}]}},
        "template_import.variables[0].type must be one of string, number, bool; got 'list'",
    ),
    (
        {"template_import": {"variables": [{"name": "a", "default": {}}]}},
        "template_import.variables[0].default must be a string, a number or a boolean",
    ),
    (
        {"template_import": {"variables": [{"name": "a", "sensitive": "yes"}]}},
        "template_import.variables[0].sensitive must be true or false",
    ),
    (
        {"template_import": {"readme": {"file": "NOPE.md"}}},
        "template_import.readme.file names 'NOPE.md', which is not in the template source",
    ),
    (
        {"template_import": {"parameters": [{"name": "p", "validation": {"min": 1.5}}]}},
        "template_import.parameters[0].validation.min must be a whole number",
    ),
    (
        {"template_import": {"parameters": [{"name": "p", "options": [{"name": "o"}]}]}},
        "template_import.parameters[0].options[0].value is required",
    ),
    (
        {"template_import": {"external_auth": [""]}},
        "template_import.external_auth[0] must not be empty",
    ),
    ({"workspace_build": {"cost": -1}}, "workspace_build.cost must not be negative"),
    ({"workspace_build": {"cost": 2**31}}, "workspace_build.cost must be at most 2147483647"),
    ({"workspace_build": {"state": {}}}, "workspace_build.state must be a string"),
    (
        {"workspace_build": {"resources": [{"name": "a", "daily_cost": "1"}]}},
        "workspace_build.resources[0].daily_cost must be a whole number",
    ),
    (
        {"workspace_build": {"resources": [{"name": "a", "agents": [{}]}]}},
        "workspace_build.resources[0].agents[0].name is required",
    ),
    (
        {
            "workspace_build": {
                "resources": [{"name": "a", "agents": [{"name": "b", "env": {"X": 1}}]}]
            }
        },
        "workspace_build.resources[0].agents[0].env.X must be a string",
    ),
    (
        {"workspace_build": {"resources": [{"name": "a", "metadata": {"k": []}}]}},
        "workspace_build.resources[0].metadata.k must be a string, a number or a boolean",
    ),
    (
        {"workspace_build": {"transitions": {"restart": {}}}},
        "workspace_build.transitions.restart is not a known field (known: start, stop, destroy)",
    ),
    (
        {"workspace_build": {"transitions": {"destroy": {"resources": []}}}},
        "workspace_build.transitions.destroy.resources is not allowed: a destroy build has no",
    ),
    (
        {"template_dry_run": {"resources": [{"name": "a", "hide": 1}]}},
        "template_dry_run.resources[0].hide must be true or false",
    ),
]


@pytest.mark.parametrize(("spec", "problem"), BAD_SPECS, ids=[p for _, p in BAD_SPECS])
def test_bad_specs_name_the_field(spec: object, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(json.dumps(spec).encode())
    assert str(caught.value).startswith(f"provd-echo.json: {problem}")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"stages": [],}', "not valid JSON: "),
        (b'{"a": 1, "a": 2}', "not valid JSON: the field 'a' appears twice in one object"),
        (b'{"stages": [{"name": "a", "delay": NaN}]}', "not valid JSON: NaN is not a JSON number"),
        (b"\xff", "not valid JSON: "),
    ],
)
def test_unreadable_specs(raw: bytes, problem: str) -> None:
    with pytest.raises(SpecError, match=f"^provd-echo.json: {problem}"):
        parse_spec(raw)


def test_spec_file_may_be_named_with_a_dot_slash_and_archive_must_be_a_tar() -> None:
    spec = {"description": "dotted"}
    assert (
        load_spec(make_tar({"./provd-echo.json": json.dumps(spec).encode()})).description
        == "dotted"
    )
    assert not load_spec(make_tar({"sub/provd-echo.json": b"{}"})).found
    assert not load_spec(b"").found
    with pytest.raises(SpecError, match="not a valid tar archive"):
        load_spec(b"x" * 1024)


def test_overrides_and_defaults_resolve_at_parse_time() -> None:
    spec = parse_spec(
        json.dumps(
            {
                "stages": [{"name": "Top"}],
                "fail": {"error": "top"},
                "template_import": {"stages": [], "fail": None},
                "workspace_build": {
                    "cost": 7,
                    "state": "s",
                    "transitions": {"stop": {"state": "", "stages": [{"name": "Stop"}]}},
                },
            }
        ).encode()
    )
    assert spec.template_import.stages == () and spec.template_import.fail is None
    assert spec.template_dry_run.fail is not None and spec.template_dry_run.fail.error == "top"
    start, stop, destroy = (spec.workspace_build[t] for t in ("start", "stop", "destroy"))
    assert [s.name for s in start.stages] == ["Top"] and [s.name for s in stop.stages] == ["Stop"]
    assert (start.state, stop.state, destroy.state) == (b"s", b"", b"s")
    assert (start.cost, stop.cost, destroy.cost) == (7, 7, None)  # a destroy frees its cost
    assert destroy.resources == () and destroy.daily_cost == 0
    assert spec.template_import.variables == ()


# -- cancellation ---------------------------------------------------------------------


async def test_cancel_stops_a_long_stage_promptly(echo: Echo) -> None:
    """A 30 s wait ends as soon as provd says the job was canceled, as the runner does it:
    by cancelling the provisioner's call."""
    spec = {"stages": [{"name": "Working", "wait": {"seconds": 30, "step": 0.2}}]}
    acquired = await echo.acquire("template_import", await echo.upload(spec))
    reporter = JobReporter(echo.connection, acquired.job_id, FAST)
    finished = False
    canceled_at = stopped_at = 0.0

    async def provision() -> None:
        nonlocal finished
        await run_echo(acquired, reporter)
        finished = True

    async def cancel_once_working() -> None:
        nonlocal canceled_at
        with trio.fail_after(10):
            while not any(log.stage == "Working" for log in await echo.jobs.logs(acquired.job_id)):
                await trio.sleep(0.05)
        canceled_at = trio.current_time()
        await echo.jobs.cancel(acquired.job_id)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(reporter.run)
        async with trio.open_nursery() as job:
            job.start_soon(provision)
            job.start_soon(cancel_once_working)
            await reporter.canceled.wait()
            job.cancel_scope.cancel()
        stopped_at = trio.current_time()
        await reporter.update()
        nursery.cancel_scope.cancel()
    assert not finished
    assert stopped_at - canceled_at < 2
    assert stopped_at - start < 10
    await echo.connection.fail_job(failed_job(acquired, None))
    ran = await echo.ran(acquired.job_id, JobFailed(""))
    assert ran.job.status == pb.JOB_STATUS_CANCELED
    assert ran.outputs("Working")[0] == "Still working: 0.2s of 30s"


# -- examples/ ----------------------------------------------------------------------------

# What each example does for each job type: None for success, else the error code.
EXAMPLE_OUTCOMES: dict[str, dict[str, str | None]] = {
    "hello": {"template_import": None, "workspace_build": None, "template_dry_run": None},
    "workspace": {"template_import": None, "workspace_build": None, "template_dry_run": None},
    "slow": {"template_import": None, "workspace_build": None, "template_dry_run": None},
    "needs-variables": {
        "template_import": "REQUIRED_TEMPLATE_VARIABLES",
        "workspace_build": None,
        "template_dry_run": None,
    },
    "broken": {
        "template_import": "ECHO_BROKEN",
        "workspace_build": "ECHO_BROKEN",
        "template_dry_run": "ECHO_BROKEN",
    },
}


def test_every_example_is_listed_and_parses() -> None:
    found = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
    assert found == sorted(EXAMPLE_OUTCOMES)
    readme = (EXAMPLES / "README.md").read_text()
    for name in found:
        spec = load_spec(pack_directory(EXAMPLES / name))
        assert spec.found and spec.description.startswith(f"{name}: ")
        assert spec.template_import.readme == (EXAMPLES / name / "README.md").read_bytes()
        assert f"examples/{name}" in readme
    slow = load_spec(pack_directory(EXAMPLES / "slow")).template_import.stages[1]
    assert slow.wait is not None and slow.wait.seconds == 30


@pytest.mark.parametrize("example", sorted(EXAMPLE_OUTCOMES))
async def test_examples_run(echo: Echo, example: str) -> None:
    """Each example, for each job type, without its delays."""
    file_hash = await echo.upload_tar(pack_directory(EXAMPLES / example))
    for kind, error_code in EXAMPLE_OUTCOMES[example].items():
        fields = {}
        if kind == "workspace_build":
            fields["workspace_build"] = build_input("demo", workspace_id="demo")
        ran = await echo.run(kind, file_hash=file_hash, **fields)
        if error_code is None:
            assert ran.job.status == pb.JOB_STATUS_SUCCEEDED, (kind, ran.job.error)
        else:
            assert (ran.job.status, ran.job.error_code) == (pb.JOB_STATUS_FAILED, error_code), kind


async def test_needs_variables_example_succeeds_with_the_variable(echo: Echo) -> None:
    file_hash = await echo.upload_tar(pack_directory(EXAMPLES / "needs-variables"))
    given = [sdk.VariableValue(name="api_token", value="tok-123")]
    ran = await echo.run(
        "template_import",
        file_hash=file_hash,
        template_import=pb.TemplateImportInput(user_variable_values=given),
    )
    assert ran.job.status == pb.JOB_STATUS_SUCCEEDED, ran.job.error
    assert "variable api_token = (sensitive)" in ran.outputs("Template variables")
    assert "variable region = 'eu-west'" in ran.outputs("Template variables")
