"""The job API end to end: a real server on 127.0.0.1, the generated Connect client."""

from __future__ import annotations

import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.client.connect import call, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from tests.archives import MAIN_TF, make_tar, make_zip
from tests.conftest import ADMIN_TOKEN, Server


async def upload(client, data: bytes = b"", mimetype: str = "") -> str:
    response = await call(
        client.upload_file, pb.UploadFileRequest(data=data or make_tar(MAIN_TF), mimetype=mimetype)
    )
    return response.hash


def create_requests(file_hash: str) -> dict[str, pb.CreateJobRequest]:
    metadata = sdk.Metadata(
        workspace_transition=sdk.STOP,
        workspace_name="ws",
        workspace_owner="alice",
        workspace_owner_groups=["devs"],
    )
    common = dict(
        provisioner="echo",
        file_hash=file_hash,
        initiator=pb.Initiator(user_id="u-1", user_name="alice"),
        trace_metadata={"traceparent": "00-abc-def-01"},
    )
    return {
        "template_import": pb.CreateJobRequest(
            **common,
            template_import=pb.TemplateImportInput(
                user_variable_values=[sdk.VariableValue(name="region", value="eu")],
                metadata=metadata,
            ),
        ),
        "workspace_build": pb.CreateJobRequest(
            **common,
            tags={"os": "linux"},
            workspace_build=pb.WorkspaceBuildInput(
                workspace_build_id="b-1",
                workspace_name="ws",
                state=b"\x00state",
                log_level="debug",
                rich_parameter_values=[sdk.RichParameterValue(name="cpu", value="2")],
                variable_values=[sdk.VariableValue(name="region", value="eu", sensitive=True)],
                external_auth_providers=[sdk.ExternalAuthProvider(id="github", access_token="t")],
                metadata=metadata,
            ),
        ),
        "template_dry_run": pb.CreateJobRequest(
            **common,
            priority=5,
            template_dry_run=pb.TemplateDryRunInput(
                rich_parameter_values=[sdk.RichParameterValue(name="cpu", value="4")],
                metadata=metadata,
            ),
        ),
    }


async def test_job_lifecycle_through_the_api(server: Server) -> None:
    client = job_client(server.url, ADMIN_TOKEN)
    file_hash = await upload(client)
    assert len(file_hash) == 64

    created = {}
    for kind, request in create_requests(file_hash).items():
        job = await call(client.create_job, request)
        assert job.WhichOneof("input") == kind
        assert job.status == pb.JOB_STATUS_PENDING
        assert job.file_hash == file_hash
        assert job.initiator.user_name == "alice"
        assert job.tags["scope"] == "organization" and job.tags["owner"] == ""
        assert job.organization == "default"
        created[kind] = job

    build = await call(client.get_job, pb.GetJobRequest(id=created["workspace_build"].id))
    assert build.type == pb.JOB_TYPE_WORKSPACE_BUILD
    assert build.workspace_build.state == b"\x00state"
    assert build.workspace_build.variable_values[0].sensitive
    assert build.workspace_build.metadata.workspace_transition == sdk.STOP
    assert build.tags == {"os": "linux", "scope": "organization", "owner": ""}
    assert build.queue_position == 1 and build.queue_size == 1
    assert "position 1 of 1" in build.pending_reason
    assert "No connected daemon can take this job" in build.pending_reason
    assert build.trace_metadata == {"traceparent": "00-abc-def-01"}

    # The import and the dry run share a queue; the dry run's priority puts it first.
    dry_run = await call(client.get_job, pb.GetJobRequest(id=created["template_dry_run"].id))
    imported = await call(client.get_job, pb.GetJobRequest(id=created["template_import"].id))
    assert (dry_run.queue_position, dry_run.queue_size) == (1, 2)
    assert (imported.queue_position, imported.queue_size) == (2, 2)

    listed = await call(client.list_jobs, pb.ListJobsRequest())
    assert [j.id for j in listed.jobs] == [
        created[k].id for k in ("template_dry_run", "workspace_build", "template_import")
    ]
    assert listed.next_page_token == ""

    canceled = await call(client.cancel_job, pb.CancelJobRequest(id=created["template_import"].id))
    assert canceled.status == pb.JOB_STATUS_CANCELED
    assert canceled.HasField("canceled_at") and canceled.HasField("completed_at")
    assert canceled.queue_position == 0 and canceled.pending_reason == ""
    # The dry run's queue is now only itself.
    dry_run = await call(client.get_job, pb.GetJobRequest(id=created["template_dry_run"].id))
    assert (dry_run.queue_position, dry_run.queue_size) == (1, 1)

    logs = await call(lambda: list(client.stream_job_logs(pb.StreamJobLogsRequest(id=canceled.id))))
    assert [line.stage for line in logs] == ["Queued", "Queued", "Cancel"]
    assert "'echo' daemon" in logs[0].output
    # No daemon is connected: the log says so, and what the job needs.
    assert "No daemon can take it yet: no daemon is connected" in logs[1].output
    assert logs[2].level == sdk.WARN
    after_first = await call(
        lambda: list(
            client.stream_job_logs(pb.StreamJobLogsRequest(id=canceled.id, after=logs[0].id))
        )
    )
    assert [line.id for line in after_first] == [logs[1].id, logs[2].id]

    only_canceled = await call(client.list_jobs, pb.ListJobsRequest(status=pb.JOB_STATUS_CANCELED))
    assert [j.id for j in only_canceled.jobs] == [canceled.id]
    with_tag = await call(client.list_jobs, pb.ListJobsRequest(tags={"os": "linux"}))
    assert [j.id for j in with_tag.jobs] == [created["workspace_build"].id]


async def test_list_jobs_pages_through_everything(server: Server) -> None:
    client = job_client(server.url, ADMIN_TOKEN)
    file_hash = await upload(client)
    request = create_requests(file_hash)["template_import"]
    ids = [(await call(client.create_job, request)).id for _ in range(7)]

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await call(client.list_jobs, pb.ListJobsRequest(limit=3, page_token=token))
        seen += [j.id for j in page.jobs]
        pages += 1
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert seen == ids[::-1]
    assert pages == 3


async def test_list_jobs_filters_by_type_and_signs_it_into_page_tokens(server: Server) -> None:
    """A type filter lists that type's jobs only, page by page; a page token is good
    under the type it was issued for, and refused under another type or none."""
    client = job_client(server.url, ADMIN_TOKEN)
    requests = create_requests(await upload(client))
    created: dict[str, list[str]] = {kind: [] for kind in requests}
    for _ in range(3):
        for kind, request in requests.items():
            created[kind].append((await call(client.create_job, request)).id)

    builds = pb.ListJobsRequest(type=pb.JOB_TYPE_WORKSPACE_BUILD, limit=2)
    first = await call(client.list_jobs, builds)
    assert [j.id for j in first.jobs] == created["workspace_build"][:0:-1]
    assert all(j.type == pb.JOB_TYPE_WORKSPACE_BUILD for j in first.jobs)
    token = first.next_page_token
    assert token
    rest = await call(client.list_jobs, pb.ListJobsRequest(type=builds.type, page_token=token))
    assert [j.id for j in rest.jobs] == created["workspace_build"][:1]
    assert rest.next_page_token == ""

    dry_runs = await call(client.list_jobs, pb.ListJobsRequest(type=pb.JOB_TYPE_TEMPLATE_DRY_RUN))
    assert [j.id for j in dry_runs.jobs] == created["template_dry_run"][::-1]
    # Unspecified means any type.
    assert len((await call(client.list_jobs, pb.ListJobsRequest())).jobs) == 9

    # The type is part of what the token signs.
    for other in (
        pb.ListJobsRequest(type=pb.JOB_TYPE_TEMPLATE_IMPORT, page_token=token),
        pb.ListJobsRequest(page_token=token),
    ):
        with pytest.raises(ConnectError) as refused:
            await call(client.list_jobs, other)
        assert refused.value.code == Code.INVALID_ARGUMENT
        assert refused.value.message.startswith("pageToken: ")
    untyped = await call(client.list_jobs, pb.ListJobsRequest(limit=2))
    with pytest.raises(ConnectError) as refused:
        await call(
            client.list_jobs,
            pb.ListJobsRequest(
                type=pb.JOB_TYPE_TEMPLATE_IMPORT, page_token=untyped.next_page_token
            ),
        )
    assert refused.value.code == Code.INVALID_ARGUMENT

    with pytest.raises(ConnectError) as refused:
        await call(client.list_jobs, pb.ListJobsRequest(type=7))  # type: ignore[arg-type]
    assert refused.value.code == Code.INVALID_ARGUMENT
    assert refused.value.message == "type: 7 is not a job type"


async def test_upload_deduplicates_and_converts_zip(server: Server) -> None:
    client = job_client(server.url, ADMIN_TOKEN)
    tar = make_tar(MAIN_TF)
    first = await call(client.upload_file, pb.UploadFileRequest(data=tar))
    again = await call(
        client.upload_file, pb.UploadFileRequest(data=tar, mimetype="application/x-tar")
    )
    assert first.hash == again.hash and first.size == len(tar)
    from_zip = await call(
        client.upload_file, pb.UploadFileRequest(data=make_zip(MAIN_TF), mimetype="application/zip")
    )
    from_zip_again = await call(client.upload_file, pb.UploadFileRequest(data=make_zip(MAIN_TF)))
    assert from_zip.hash == from_zip_again.hash  # conversion is deterministic


async def test_follow_sees_new_lines_and_ends_when_the_job_completes(server: Server) -> None:
    client = job_client(server.url, ADMIN_TOKEN)
    job = await call(client.create_job, create_requests(await upload(client))["template_import"])
    received: list[pb.JobLog] = []
    queued_lines = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def follow() -> None:
        for line in client.stream_job_logs(pb.StreamJobLogsRequest(id=job.id, follow=True)):
            received.append(line)
            if len(received) == 2:
                trio.from_thread.run_sync(queued_lines.set, trio_token=token)

    stream_ended = trio.Event()

    async def follow_in_thread() -> None:
        await trio.to_thread.run_sync(follow, abandon_on_cancel=True)
        stream_ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow_in_thread)
        with trio.fail_after(10):
            await queued_lines.wait()
        assert [line.stage for line in received] == ["Queued", "Queued"]
        await call(client.cancel_job, pb.CancelJobRequest(id=job.id))
        with trio.fail_after(10):  # the stream must end by itself once the job completes
            await stream_ended.wait()
    assert [line.stage for line in received] == ["Queued", "Queued", "Cancel"]


# -- errors ------------------------------------------------------------------


async def expect_error(code: Code, fragment: str, fn, *args) -> ConnectError:
    with pytest.raises(ConnectError) as info:
        await call(fn, *args)
    assert info.value.code == code, info.value.message
    assert fragment in info.value.message
    return info.value


async def test_errors_name_the_problem(server: Server) -> None:
    client = job_client(server.url, ADMIN_TOKEN)
    file_hash = await upload(client)
    good = create_requests(file_hash)["workspace_build"]

    await expect_error(
        Code.INVALID_ARGUMENT, "id:", client.get_job, pb.GetJobRequest(id="not-a-uuid")
    )
    await expect_error(Code.INVALID_ARGUMENT, "id:", client.get_job, pb.GetJobRequest())
    await expect_error(
        Code.NOT_FOUND,
        "no job",
        client.get_job,
        pb.GetJobRequest(id="00000000-0000-4000-8000-000000000000"),
    )
    await expect_error(
        Code.NOT_FOUND,
        "no job",
        client.cancel_job,
        pb.CancelJobRequest(id="00000000-0000-4000-8000-000000000000"),
    )

    missing_provisioner = pb.CreateJobRequest()
    missing_provisioner.CopyFrom(good)
    missing_provisioner.ClearField("provisioner")
    await expect_error(
        Code.INVALID_ARGUMENT, "provisioner:", client.create_job, missing_provisioner
    )

    missing_input = pb.CreateJobRequest(provisioner="echo", file_hash=file_hash)
    await expect_error(Code.INVALID_ARGUMENT, "input:", client.create_job, missing_input)

    missing_hash = pb.CreateJobRequest()
    missing_hash.CopyFrom(good)
    missing_hash.ClearField("file_hash")
    await expect_error(Code.INVALID_ARGUMENT, "fileHash:", client.create_job, missing_hash)

    unknown_file = pb.CreateJobRequest()
    unknown_file.CopyFrom(good)
    unknown_file.file_hash = "0" * 64
    await expect_error(Code.NOT_FOUND, "fileHash:", client.create_job, unknown_file)

    bad_level = pb.CreateJobRequest()
    bad_level.CopyFrom(good)
    bad_level.workspace_build.log_level = "verbose"
    await expect_error(
        Code.INVALID_ARGUMENT, "workspaceBuild.logLevel", client.create_job, bad_level
    )

    await expect_error(
        Code.INVALID_ARGUMENT, "pageToken:", client.list_jobs, pb.ListJobsRequest(page_token="%%%")
    )
    await expect_error(
        Code.INVALID_ARGUMENT,
        "data:",
        client.upload_file,
        pb.UploadFileRequest(data=b"not a tar" * 100),
    )
    await expect_error(
        Code.INVALID_ARGUMENT,
        "mimetype:",
        client.upload_file,
        pb.UploadFileRequest(data=make_tar(MAIN_TF), mimetype="text/plain"),
    )


async def test_oversize_upload_is_resource_exhausted(server: Server) -> None:
    client = job_client(server.url, ADMIN_TOKEN)
    cap = server.settings.limits.upload_max_bytes
    # Just over the cap, so the service's own check answers.
    just_over = make_tar({"big.bin": b"x" * cap})
    await expect_error(
        Code.RESOURCE_EXHAUSTED, "limit", client.upload_file, pb.UploadFileRequest(data=just_over)
    )
    # Far over: the transport's read limit answers before the message is parsed.
    far_over = b"x" * (cap * 2)
    await expect_error(
        Code.RESOURCE_EXHAUSTED, "", client.upload_file, pb.UploadFileRequest(data=far_over)
    )


async def test_cancel_rules(server: Server) -> None:
    client = job_client(server.url, ADMIN_TOKEN)
    job = await call(client.create_job, create_requests(await upload(client))["template_import"])
    canceled = await call(client.cancel_job, pb.CancelJobRequest(id=job.id))
    assert canceled.status == pb.JOB_STATUS_CANCELED
    await expect_error(
        Code.FAILED_PRECONDITION,
        "already canceled",
        client.cancel_job,
        pb.CancelJobRequest(id=job.id),
    )


async def test_admin_calls_need_the_token(server: Server) -> None:
    anonymous = job_client(server.url, None)
    await expect_error(
        Code.UNAUTHENTICATED, "missing credentials", anonymous.list_jobs, pb.ListJobsRequest()
    )
    intruder = job_client(server.url, "wrong-token")
    await expect_error(
        Code.UNAUTHENTICATED, "invalid admin token", intruder.list_jobs, pb.ListJobsRequest()
    )
    await expect_error(
        Code.UNAUTHENTICATED,
        "invalid admin token",
        intruder.upload_file,
        pb.UploadFileRequest(data=make_tar(MAIN_TF)),
    )
