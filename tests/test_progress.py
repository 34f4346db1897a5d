"""A job's progress over real sockets: UpdateJob (heartbeat, logs, readme, template
variables, cancel), FailJob, CompleteJob, and log followers."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import replace

import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.model import Limits
from provd.protocol import TRUNCATED_MARK as TRUNCATED
from tests.conftest import Server, ServerFactory
from tests.daemon_clients import Jobs, TestDaemon

STAGE_MAX = 128
OUTPUT_MAX = 1024


async def start_job(
    server: Server, nursery: trio.Nursery, kind: str = "template_import", **fields: object
) -> tuple[Jobs, TestDaemon, str]:
    """A job of `kind`, acquired by daemon "d1": (jobs API, daemon, job id)."""
    jobs = Jobs(server)
    job = await jobs.create(kind, **fields)
    daemon = TestDaemon(server, "d1")
    acquired = await (await daemon.acquire(nursery)).wait()
    assert acquired.job_id == job.id
    return jobs, daemon, job.id


async def expect_error(code: Code, fragment: str, pending: Awaitable[object]) -> ConnectError:
    """`pending` fails with `code` and a message containing `fragment`."""
    with pytest.raises(ConnectError) as info:
        await pending
    assert info.value.code == code, (info.value.code, info.value.message)
    assert fragment in info.value.message, info.value.message
    return info.value


def log(output: str, stage: str = "Plan", **fields: object) -> pd.Log:
    fields.setdefault("source", pd.PROVISIONER)
    fields.setdefault("level", sdk.INFO)
    return pd.Log(stage=stage, output=output, **fields)  # type: ignore[arg-type]


async def daemon_lines(jobs: Jobs, job_id: str) -> list[pb.JobLog]:
    """The job's log lines that the daemon sent (the server's own have source 0, stage
    Queued/Cancel/Failed; daemon lines in these tests use other stages)."""
    server_stages = {"Queued", "Cancel", "Failed"}
    return [line for line in await jobs.logs(job_id) if line.stage not in server_stages]


# -- UpdateJob -----------------------------------------------------------------------


async def test_update_appends_logs_in_order(server: Server, nursery: trio.Nursery) -> None:
    """Lines keep their order, source, level, stage, output and the daemon's created_at."""
    jobs, daemon, job_id = await start_job(server, nursery)
    sent = [
        log("init", "Setup", source=pd.PROVISIONER_DAEMON, level=sdk.DEBUG, created_at=1_000),
        log("plan 1", "Plan", level=sdk.WARN, created_at=2_000),
        log("plan 2", "Plan", level=sdk.ERROR, created_at=3_000),
    ]
    await daemon.update(job_id, logs=sent[:2])
    await daemon.update(job_id, logs=sent[2:])
    got = await daemon_lines(jobs, job_id)
    assert [(g.source, g.level, g.stage, g.output, g.created_at.ToMilliseconds()) for g in got] == [
        (s.source, s.level, s.stage, s.output, s.created_at) for s in sent
    ]
    assert [g.id for g in got] == sorted(g.id for g in got)


async def test_update_refreshes_updated_at(server: Server, nursery: trio.Nursery) -> None:
    """Every UpdateJob, even an empty one, is a heartbeat."""
    jobs, daemon, job_id = await start_job(server, nursery)
    before = (await jobs.get(job_id)).updated_at.ToMilliseconds()
    await trio.sleep(0.02)
    await daemon.update(job_id)
    after = (await jobs.get(job_id)).updated_at.ToMilliseconds()
    assert after > before


async def test_update_stores_readme(server: Server, nursery: trio.Nursery) -> None:
    """The readme sent by UpdateJob shows in GetJob's result."""
    jobs, daemon, job_id = await start_job(server, nursery)
    await daemon.update(job_id, readme=b"# Hello\nThis template does things.")
    assert (await jobs.get(job_id)).result.readme == b"# Hello\nThis template does things."


async def test_update_reports_cancel(server: Server, nursery: trio.Nursery) -> None:
    """canceled is False until the running job is canceled, then True (status CANCELING)."""
    jobs, daemon, job_id = await start_job(server, nursery)
    assert (await daemon.update(job_id)).canceled is False
    assert (await jobs.cancel(job_id)).status == pb.JOB_STATUS_CANCELING
    assert (await daemon.update(job_id, logs=[log("still here")])).canceled is True
    assert (await jobs.get(job_id)).status == pb.JOB_STATUS_CANCELING


# -- ownership and state -------------------------------------------------------------


async def test_only_the_holder_may_report(server: Server, nursery: trio.Nursery) -> None:
    """Another daemon gets PERMISSION_DENIED for update, fail and complete."""
    jobs, _, job_id = await start_job(server, nursery)
    other = TestDaemon(server, "d2")
    await expect_error(Code.PERMISSION_DENIED, job_id, other.update(job_id, logs=[log("x")]))
    await expect_error(Code.PERMISSION_DENIED, job_id, other.fail(job_id, "nope"))
    await expect_error(Code.PERMISSION_DENIED, job_id, other.complete(job_id))
    job = await jobs.get(job_id)
    assert job.status == pb.JOB_STATUS_RUNNING and not job.error


async def test_unknown_and_malformed_job_ids(server: Server) -> None:
    """A random UUID is NOT_FOUND; "abc" is INVALID_ARGUMENT naming jobId."""
    daemon = TestDaemon(server, "d1")
    unknown = str(uuid.uuid4())
    await expect_error(Code.NOT_FOUND, unknown, daemon.update(unknown))
    await expect_error(Code.NOT_FOUND, unknown, daemon.fail(unknown, "x"))
    await expect_error(Code.NOT_FOUND, unknown, daemon.complete(unknown))
    await expect_error(Code.INVALID_ARGUMENT, "jobId", daemon.update("abc"))
    await expect_error(Code.INVALID_ARGUMENT, "jobId", daemon.fail("abc", "x"))
    await expect_error(Code.INVALID_ARGUMENT, "jobId", daemon.complete("abc"))


async def test_completed_job_rejects_everything(server: Server, nursery: trio.Nursery) -> None:
    """After CompleteJob, update, fail and a second complete are FAILED_PRECONDITION."""
    jobs, daemon, job_id = await start_job(server, nursery)
    readme_result = pd.CompletedJob.TemplateImport(rich_parameters=[sdk.RichParameter(name="a")])
    await daemon.complete(job_id, template_import=readme_result)
    await expect_error(Code.FAILED_PRECONDITION, "succeeded", daemon.update(job_id))
    await expect_error(Code.FAILED_PRECONDITION, "succeeded", daemon.fail(job_id, "late"))
    second = pd.CompletedJob.TemplateImport(rich_parameters=[sdk.RichParameter(name="b")])
    await expect_error(
        Code.FAILED_PRECONDITION, "succeeded", daemon.complete(job_id, template_import=second)
    )
    job = await jobs.get(job_id)
    assert job.status == pb.JOB_STATUS_SUCCEEDED and not job.error
    assert [p.name for p in job.result.template_import.rich_parameters] == ["a"]


async def test_failed_job_rejects_everything(server: Server, nursery: trio.Nursery) -> None:
    """After FailJob, update, fail and complete are FAILED_PRECONDITION."""
    jobs, daemon, job_id = await start_job(server, nursery)
    await daemon.fail(job_id, "boom")
    await expect_error(Code.FAILED_PRECONDITION, "failed", daemon.update(job_id))
    await expect_error(Code.FAILED_PRECONDITION, "failed", daemon.fail(job_id, "again"))
    await expect_error(Code.FAILED_PRECONDITION, "failed", daemon.complete(job_id))
    assert (await jobs.get(job_id)).error == "boom"


async def test_pending_job_is_nobodys(server: Server) -> None:
    """A job no daemon acquired: update, fail and complete are PERMISSION_DENIED."""
    jobs = Jobs(server)
    job = await jobs.create()
    daemon = TestDaemon(server, "d1")
    await expect_error(Code.PERMISSION_DENIED, job.id, daemon.update(job.id))
    await expect_error(Code.PERMISSION_DENIED, job.id, daemon.fail(job.id, "x"))
    await expect_error(Code.PERMISSION_DENIED, job.id, daemon.complete(job.id))
    assert (await jobs.get(job.id)).status == pb.JOB_STATUS_PENDING


# -- bad logs and caps ---------------------------------------------------------------


async def test_unknown_log_level_or_source(server: Server, nursery: trio.Nursery) -> None:
    """Level 9 and source 5 are INVALID_ARGUMENT naming the field; nothing is stored."""
    jobs, daemon, job_id = await start_job(server, nursery)
    await expect_error(
        Code.INVALID_ARGUMENT, "logs[0].level", daemon.update(job_id, logs=[log("x", level=9)])
    )
    await expect_error(
        Code.INVALID_ARGUMENT,
        "logs[1].source",
        daemon.update(job_id, logs=[log("ok"), log("x", source=5)]),
    )
    assert await daemon_lines(jobs, job_id) == []


async def test_long_stage_and_output_are_cut_visibly(server: Server, nursery: trio.Nursery) -> None:
    """Stage over 128 chars and output over 1024 chars are cut with a marker."""
    jobs, daemon, job_id = await start_job(server, nursery)
    exact = log("o" * OUTPUT_MAX, "s" * STAGE_MAX)
    await daemon.update(job_id, logs=[log("o" * 5000, "s" * 500), exact])
    cut, kept = await daemon_lines(jobs, job_id)
    assert len(cut.stage) <= STAGE_MAX and cut.stage.endswith(TRUNCATED)
    assert len(cut.output) <= OUTPUT_MAX and cut.output.endswith(TRUNCATED)
    assert "…[truncated]" in cut.stage and "…[truncated]" in cut.output
    assert cut.output.startswith("o" * 100) and cut.stage.startswith("s" * 100)
    assert (kept.stage, kept.output) == (exact.stage, exact.output)  # at the cap: untouched


async def test_nul_in_lines_and_errors_is_shown_as_a_replacement_character(
    server: Server, nursery: trio.Nursery
) -> None:
    """Protobuf strings may hold NUL; PostgreSQL text cannot. A daemon's log lines and
    error show it as U+FFFD on every store, instead of failing the call."""
    jobs, daemon, job_id = await start_job(server, nursery)
    await daemon.update(job_id, logs=[log("before\x00after", "st\x00age")])
    (line,) = await daemon_lines(jobs, job_id)
    assert (line.stage, line.output) == ("st\ufffdage", "before\ufffdafter")
    await daemon.fail(job_id, "bad\x00error", error_code="E\x00")
    job = await jobs.get(job_id)
    assert (job.error, job.error_code) == ("bad\ufffderror", "E\ufffd")


async def test_total_log_cap_marks_once(make_server: ServerFactory, nursery: trio.Nursery) -> None:
    """Past the per-job cap lines are dropped with exactly one marker; updates still beat."""
    server = await make_server(limits=replace(Limits(), log_budget_bytes=2000))
    jobs, daemon, job_id = await start_job(server, nursery)
    await daemon.update(job_id, logs=[log(f"{i}" + "a" * 499) for i in range(3)])  # 1500
    await daemon.update(job_id, logs=[log(f"{i}" + "b" * 399) for i in range(3)])  # +1200
    before = (await jobs.get(job_id)).updated_at.ToMilliseconds()
    await trio.sleep(0.02)
    response = await daemon.update(job_id, logs=[log("c" * 10) for _ in range(5)])
    assert response.canceled is False
    after = (await jobs.get(job_id)).updated_at.ToMilliseconds()
    assert after > before
    everything = await jobs.logs(job_id)
    markers = [line for line in everything if line.output.startswith("Logs truncated")]
    assert len(markers) == 1, [line.output for line in everything]
    assert everything[-1] == markers[0] and "2000" in markers[0].output
    assert markers[0].level == sdk.WARN
    # Every line before the marker counts, the server's own "Queued" lines too.
    assert sum(len(line.output.encode()) for line in everything[:-1]) <= 2000
    outputs = [line.output for line in await daemon_lines(jobs, job_id)][:-1]
    assert outputs[:3] == [f"{i}" + "a" * 499 for i in range(3)]
    assert outputs[3:] == [f"{i}" + "b" * 399 for i in range(len(outputs) - 3)]
    assert len(outputs) < 6  # some "b" lines and every "c" line were dropped
    await daemon.complete(job_id)
    assert (await jobs.get(job_id)).status == pb.JOB_STATUS_SUCCEEDED


async def test_total_log_cap_counts_bytes(
    make_server: ServerFactory, nursery: trio.Nursery
) -> None:
    """The cap is in bytes: multi-byte UTF-8 output counts by its encoded size."""
    server = await make_server(limits=replace(Limits(), log_budget_bytes=2000))
    jobs, daemon, job_id = await start_job(server, nursery)
    # 600 characters, 1200 bytes each: the second line already passes 2000 bytes.
    await daemon.update(job_id, logs=[log("é" * 600) for _ in range(3)])
    everything = await jobs.logs(job_id)
    assert everything[-1].output.startswith("Logs truncated"), "no marker: nothing was cut"
    stored = sum(len(line.output.encode()) for line in everything[:-1])
    assert stored <= 2000, f"{stored} bytes of output kept under a 2000-byte cap"


# -- template variables --------------------------------------------------------------


async def test_template_variables_resolve(server: Server, nursery: trio.Nursery) -> None:
    """Each variable takes the user's value, else its default, keeping sensitive."""
    jobs, daemon, job_id = await start_job(server, nursery)
    variables = [
        sdk.TemplateVariable(name="region", type="string", default_value="us", required=True),
        sdk.TemplateVariable(name="token", type="string", required=True, sensitive=True),
        sdk.TemplateVariable(name="size", type="number", default_value="2"),
        sdk.TemplateVariable(name="empty", type="string"),
    ]
    response = await daemon.update(
        job_id,
        template_variables=variables,
        user_variable_values=[
            sdk.VariableValue(name="token", value="s3cret"),
            sdk.VariableValue(name="region", value="eu"),
            sdk.VariableValue(name="unrelated", value="ignored"),
        ],
    )
    assert [(v.name, v.value, v.sensitive) for v in response.variable_values] == [
        ("region", "eu", False),
        ("token", "s3cret", True),
        ("size", "2", False),
        ("empty", "", False),
    ]
    assert list((await jobs.get(job_id)).result.template_variables) == variables


async def test_required_template_variable_missing(server: Server, nursery: trio.Nursery) -> None:
    """The update fails naming the variable; the daemon's FailJob keeps the variables."""
    jobs, daemon, job_id = await start_job(server, nursery)
    variables = [
        sdk.TemplateVariable(name="region", type="string", default_value="us"),
        sdk.TemplateVariable(name="api_key", type="string", required=True, sensitive=True),
    ]
    await expect_error(
        Code.FAILED_PRECONDITION,
        "required template variables need values: api_key",
        daemon.update(job_id, template_variables=variables),
    )
    await daemon.fail(
        job_id,
        "required template variables need values: api_key",
        error_code="REQUIRED_TEMPLATE_VARIABLES",
        template_import=pd.FailedJob.TemplateImport(),
    )
    job = await jobs.get(job_id)
    assert job.status == pb.JOB_STATUS_FAILED
    assert job.error_code == "REQUIRED_TEMPLATE_VARIABLES"
    assert "api_key" in job.error
    assert [v.name for v in job.result.template_variables] == ["region", "api_key"]
    assert job.result.template_variables[1].required


async def test_template_variables_on_a_build(server: Server, nursery: trio.Nursery) -> None:
    """Template variables sent for a workspace build are INVALID_ARGUMENT."""
    jobs, daemon, job_id = await start_job(server, nursery, "workspace_build")
    await expect_error(
        Code.INVALID_ARGUMENT,
        "templateVariables",
        daemon.update(job_id, template_variables=[sdk.TemplateVariable(name="v")]),
    )
    assert not (await jobs.get(job_id)).result.template_variables


# -- FailJob -------------------------------------------------------------------------


async def test_fail_stores_error_and_code(server: Server, nursery: trio.Nursery) -> None:
    """FailJob's error and error_code are on the failed job."""
    jobs, daemon, job_id = await start_job(server, nursery, "template_dry_run")
    await daemon.fail(
        job_id,
        "terraform exploded",
        error_code="TF_ERR",
        template_dry_run=pd.FailedJob.TemplateDryRun(),
    )
    job = await jobs.get(job_id)
    assert job.status == pb.JOB_STATUS_FAILED
    assert (job.error, job.error_code) == ("terraform exploded", "TF_ERR")
    assert job.HasField("completed_at")


async def test_failed_build_keeps_its_state(server: Server, nursery: trio.Nursery) -> None:
    """A failed workspace build's state shows as result.failed_state."""
    jobs, daemon, job_id = await start_job(server, nursery, "workspace_build")
    state = pd.FailedJob.WorkspaceBuild(state=b'{"version": 4}')
    await daemon.fail(job_id, "apply failed", workspace_build=state)
    job = await jobs.get(job_id)
    assert job.status == pb.JOB_STATUS_FAILED
    assert job.result.failed_state == b'{"version": 4}'


async def test_canceled_job_failed_without_error_is_canceled(
    server: Server, nursery: trio.Nursery
) -> None:
    """A canceling job the daemon fails with an empty error ends CANCELED."""
    jobs, daemon, job_id = await start_job(server, nursery)
    await jobs.cancel(job_id)
    await daemon.fail(job_id, "")
    job = await jobs.get(job_id)
    assert job.status == pb.JOB_STATUS_CANCELED
    assert job.error == ""
    assert job.HasField("canceled_at") and job.HasField("completed_at")


async def test_canceled_job_failed_with_error_is_failed(
    server: Server, nursery: trio.Nursery
) -> None:
    """A canceling job the daemon fails with an error ends FAILED."""
    jobs, daemon, job_id = await start_job(server, nursery)
    await jobs.cancel(job_id)
    await daemon.fail(job_id, "interrupted mid-apply")
    job = await jobs.get(job_id)
    assert (job.status, job.error) == (pb.JOB_STATUS_FAILED, "interrupted mid-apply")


async def test_uncanceled_job_failed_without_error_is_failed(
    server: Server, nursery: trio.Nursery
) -> None:
    """An empty error on a job nobody canceled still reads FAILED, with an error."""
    jobs, daemon, job_id = await start_job(server, nursery)
    await daemon.fail(job_id, "")
    job = await jobs.get(job_id)
    assert job.status == pb.JOB_STATUS_FAILED
    assert job.error


# -- CompleteJob ---------------------------------------------------------------------


def resource(name: str, daily_cost: int = 0) -> sdk.Resource:
    return sdk.Resource(
        name=name,
        type="null_resource",
        daily_cost=daily_cost,
        agents=[sdk.Agent(name="main", operating_system="linux", architecture="amd64")],
        metadata=[sdk.Resource.Metadata(key="k", value="v", sensitive=True)],
    )


async def test_complete_workspace_build(server: Server, nursery: trio.Nursery) -> None:
    """State and resources (with daily_cost) are the job's result; status SUCCEEDED."""
    jobs, daemon, job_id = await start_job(server, nursery, "workspace_build")
    build = pd.CompletedJob.WorkspaceBuild(
        state=b"tfstate-v2", resources=[resource("vm", daily_cost=7), resource("disk", 3)]
    )
    await daemon.complete(job_id, workspace_build=build)
    job = await jobs.get(job_id)
    assert job.status == pb.JOB_STATUS_SUCCEEDED and job.HasField("completed_at")
    assert job.result.WhichOneof("type") == "workspace_build"
    assert job.result.workspace_build == build
    assert [r.daily_cost for r in job.result.workspace_build.resources] == [7, 3]


async def test_complete_template_import(server: Server, nursery: trio.Nursery) -> None:
    """Start/stop resources, rich parameters and external auth providers are kept."""
    jobs, daemon, job_id = await start_job(server, nursery)
    imported = pd.CompletedJob.TemplateImport(
        start_resources=[resource("vm")],
        stop_resources=[resource("disk")],
        rich_parameters=[
            sdk.RichParameter(
                name="cpu",
                type="number",
                default_value="2",
                validation_min=1,
                validation_max=8,
                options=[sdk.RichParameterOption(name="two", value="2")],
            )
        ],
        external_auth_providers_names=["github"],
        external_auth_providers=[sdk.ExternalAuthProviderResource(id="github", optional=True)],
    )
    await daemon.complete(job_id, template_import=imported)
    job = await jobs.get(job_id)
    assert job.status == pb.JOB_STATUS_SUCCEEDED and job.HasField("completed_at")
    assert job.result.template_import == imported
    assert job.result.template_import.rich_parameters[0].HasField("validation_min")


async def test_complete_template_dry_run(server: Server, nursery: trio.Nursery) -> None:
    """A dry run's resources are its result."""
    jobs, daemon, job_id = await start_job(server, nursery, "template_dry_run")
    dry_run = pd.CompletedJob.TemplateDryRun(resources=[resource("vm", 5)])
    await daemon.complete(job_id, template_dry_run=dry_run)
    job = await jobs.get(job_id)
    assert job.status == pb.JOB_STATUS_SUCCEEDED and job.HasField("completed_at")
    assert job.result.template_dry_run == dry_run


async def test_complete_keeps_readme_and_variables(server: Server, nursery: trio.Nursery) -> None:
    """What UpdateJob stored (readme, variables) survives next to the completion result."""
    jobs, daemon, job_id = await start_job(server, nursery)
    variables = [sdk.TemplateVariable(name="region", default_value="us")]
    await daemon.update(job_id, readme=b"readme", template_variables=variables)
    await daemon.complete(job_id, template_import=pd.CompletedJob.TemplateImport())
    result = (await jobs.get(job_id)).result
    assert result.readme == b"readme"
    assert list(result.template_variables) == variables
    assert result.WhichOneof("type") == "template_import"


async def test_complete_needs_the_right_type(server: Server, nursery: trio.Nursery) -> None:
    """No type payload, or another job type's payload, is INVALID_ARGUMENT."""
    jobs, daemon, job_id = await start_job(server, nursery, "workspace_build")
    await expect_error(
        Code.INVALID_ARGUMENT,
        "type",
        trio.to_thread.run_sync(daemon.client.complete_job, pd.CompletedJob(job_id=job_id)),
    )
    await expect_error(
        Code.INVALID_ARGUMENT,
        "workspace_build",
        daemon.complete(job_id, template_dry_run=pd.CompletedJob.TemplateDryRun()),
    )
    assert (await jobs.get(job_id)).status == pb.JOB_STATUS_RUNNING
    await daemon.complete(job_id, workspace_build=pd.CompletedJob.WorkspaceBuild())
    assert (await jobs.get(job_id)).status == pb.JOB_STATUS_SUCCEEDED


async def test_completing_a_canceling_job_ends_canceled(
    server: Server, nursery: trio.Nursery
) -> None:
    """CompleteJob on a job asked to cancel ends CANCELED."""
    jobs, daemon, job_id = await start_job(server, nursery)
    await jobs.cancel(job_id)
    await daemon.complete(job_id)
    job = await jobs.get(job_id)
    assert job.status == pb.JOB_STATUS_CANCELED and job.HasField("completed_at")


# -- following ---------------------------------------------------------------------


async def test_follower_sees_updates_and_the_end(server: Server, nursery: trio.Nursery) -> None:
    """A follower gets each UpdateJob line soon after it is sent, and ends at completion."""
    jobs, daemon, job_id = await start_job(server, nursery)
    token = trio.lowlevel.current_trio_token()
    received: list[pb.JobLog] = []
    arrived = trio.Event()
    ended = trio.Event()

    def on_line(line: pb.JobLog) -> None:
        nonlocal arrived
        received.append(line)
        arrived.set()

    def follow() -> None:
        request = pb.StreamJobLogsRequest(id=job_id, follow=True)
        for line in jobs.client.stream_job_logs(request):
            trio.from_thread.run_sync(on_line, line, trio_token=token)

    async def follow_in_thread() -> None:
        await trio.to_thread.run_sync(follow, abandon_on_cancel=True)
        ended.set()

    async def wait_for(output: str) -> None:
        nonlocal arrived
        with trio.fail_after(10):  # a hang guard, not a timing assertion
            while output not in [line.output for line in received]:
                arrived = trio.Event()
                await arrived.wait()

    nursery.start_soon(follow_in_thread)
    for step in ("first", "second", "third"):
        await daemon.update(job_id, logs=[log(step)])
        await wait_for(step)
        assert not ended.is_set()
    await daemon.complete(job_id)
    with trio.fail_after(10):
        await ended.wait()
    outputs = [line.output for line in received if line.stage == "Plan"]
    assert outputs == ["first", "second", "third"]
    assert [line.id for line in received] == sorted({line.id for line in received})
