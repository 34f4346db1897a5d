"""`provd files …` and `provd jobs …`: the job API (`provd.v1.JobService`).

The archive code (tarfile, zipfile, gzip) is imported by `upload` only."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from provd.client.cli.context import Connection, Failure, server_options
from provd.client.cli.output import (
    HISTORY_HEADERS,
    JOB_HEADERS,
    JOB_STATUSES,
    JOB_TYPES,
    QUEUE_HEADERS,
    history_row,
    job_row,
    json_option,
    key_values,
    log_line,
    pairs,
    print_fields,
    print_job,
    print_json,
    print_json_line,
    print_table,
    queue_row,
    size,
    status,
)
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionersdk import provisioner_pb2 as sdk


class ArchiveSource(click.Path):
    """An archive or directory that exists, or `example:NAME`, one of the echo
    templates that come with provd (`provd examples list`): with it, the executable
    alone is enough to create a job."""

    def __init__(self) -> None:
        super().__init__(exists=True, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.startswith("example:"):
            from provd.cli.examples import resolve_archive

            try:
                value = resolve_archive(value)
            except click.BadParameter as error:
                self.fail(error.message, param, ctx)
        return super().convert(value, param, ctx)


ARCHIVE_PATH = ArchiveSource()


def upload(connection: Connection, path: Path) -> pb.UploadFileResponse:
    """Upload `path` (a tar, zip, .tar.gz or a directory, see `read_archive`)."""
    from provd.archive import read_archive  # tarfile, zipfile, gzip: only for uploads

    try:
        data, mimetype = read_archive(path)
    except OSError as error:
        raise Failure(f"cannot read {error.filename or path}: {error.strerror}") from None
    except ValueError as error:
        raise Failure(str(error)) from None
    return connection.jobs().upload_file(pb.UploadFileRequest(data=data, mimetype=mimetype))


# -- provd files ---------------------------------------------------------------------


@click.group("files")
def files() -> None:
    """Template source archives."""


@files.command("upload")
@click.argument("path", type=ARCHIVE_PATH)
@json_option
@server_options
def files_upload(connection: Connection, path: Path, as_json: bool) -> None:
    """Upload PATH and print its hash, for `provd jobs create --file HASH`.

    PATH is a .tar or .zip file (a .tar.gz or .tgz is decompressed first), or a
    directory, which is packed into a tar: sorted names, mtime 0, no owners, so the
    same tree always gets the same hash. The same content is stored once.
    `example:NAME` is one of the examples that come with provd (provd examples list).

    \b
    Example:
      provd files upload ./my-template
    """
    uploaded = upload(connection, path)
    if as_json:
        print_json(uploaded)
    else:
        print_fields([("hash", uploaded.hash), ("size", size(uploaded.size))])


# -- provd jobs ----------------------------------------------------------------------


@click.group("jobs")
def jobs() -> None:
    """Create, list, inspect and cancel jobs, and read their logs."""


@jobs.command("create")
@click.option(
    "--type",
    "kind",
    type=click.Choice(list(JOB_TYPES)),
    required=True,
    help="import: a template import; build: a workspace build; dry-run: a template dry run.",
)
@click.option("--file", "file_hash", metavar="HASH", help="An uploaded archive's hash.")
@click.option(
    "--archive",
    type=ARCHIVE_PATH,
    help="Upload this archive or directory first (instead of --file); example:NAME is"
    " a bundled example (provd examples list).",
)
@click.option("--provisioner", default="echo", show_default=True, help="Provisioner type.")
@click.option("--organization", default="", help="Organization  [default: default]")
@click.option(
    "--tag",
    "tags",
    metavar="KEY=VALUE",
    callback=key_values,
    multiple=True,
    help="Routing tag (repeatable); scope defaults to organization.",
)
@click.option(
    "--var",
    "variables",
    metavar="NAME=VALUE",
    callback=key_values,
    multiple=True,
    help="Template variable value (repeatable).",
)
@click.option(
    "--param",
    "parameters",
    metavar="NAME=VALUE",
    callback=key_values,
    multiple=True,
    help="Rich parameter value (repeatable; build and dry-run).",
)
@click.option("--workspace", default="", metavar="NAME", help="Workspace name.")
@click.option("--workspace-id", default="", help="Workspace id (quota counts builds by it).")
@click.option(
    "--transition",
    type=click.Choice(["start", "stop", "destroy"]),
    default=None,
    help="Workspace transition (build)  [default: start]",
)
@click.option("--build-id", default=None, help="Workspace build id (build)  [default: a new UUID]")
@click.option("--owner-id", default="", help="Workspace owner's user id.")
@click.option(
    "--owner-name", default="", help="Workspace owner's user name (metadata workspaceOwner)."
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    help="A group of the workspace owner (repeatable; quota counts its allowance).",
)
@click.option(
    "--state-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Terraform state to start from (build).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug"]),
    default=None,
    help="Ask the provisioner for debug logs (build).",
)
@click.option(
    "--priority",
    type=click.IntRange(-(2**31), 2**31 - 1),
    default=0,
    help="Higher runs first.  [default: 0]",
)
@click.option("--user-id", default="", help="Initiator's user id.")
@click.option("--user-name", default="", help="Initiator's user name.")
@click.option(
    "--follow",
    is_flag=True,
    help="Then print the job's logs until it completes; exit 1 unless it succeeded.",
)
@json_option
@server_options
def jobs_create(
    connection: Connection,
    kind: str,
    file_hash: str | None,
    archive: Path | None,
    follow: bool,
    as_json: bool,
    **fields: Any,
) -> None:
    """Queue a job for a provisioner daemon and print it.

    The template comes from --file (a hash from `provd files upload`) or --archive
    (uploaded first; `--archive example:hello` uses a bundled example). With
    --follow, the job's logs follow as `provd jobs logs --follow` prints them (with
    --json: the job on one line, then one line per log).

    \b
    Example:
      provd jobs create --type build --archive ./my-template \\
        --workspace dev --owner-id u-1 --param region=eu --follow
    """
    if (file_hash is None) == (archive is None):
        raise click.UsageError("give exactly one of --file HASH and --archive PATH")
    request = create_request(kind, **fields)
    request.file_hash = upload(connection, archive).hash if archive else file_hash or ""
    job = connection.jobs().create_job(request)
    if not follow:
        show_job(job, as_json)
        return
    if as_json:
        print_json_line(job)
    else:
        queue = f", {job.queue_position} of {job.queue_size} in the queue" if job.queue_size else ""
        click.echo(f"job {job.id} created ({status(job.status)}{queue})", err=True)
    follow_to_end(connection, job.id, after=0, as_json=as_json)


def create_request(
    kind: str,
    *,
    provisioner: str,
    organization: str,
    tags: Sequence[tuple[str, str]],
    variables: Sequence[tuple[str, str]],
    parameters: Sequence[tuple[str, str]],
    workspace: str,
    workspace_id: str,
    transition: str | None,
    build_id: str | None,
    owner_id: str,
    owner_name: str,
    groups: Sequence[str],
    state_file: Path | None,
    log_level: str | None,
    priority: int,
    user_id: str,
    user_name: str,
) -> pb.CreateJobRequest:
    """The CreateJobRequest `provd jobs create` sends (without its file hash)."""
    build_only = {
        "--transition": transition,
        "--state-file": state_file,
        "--log-level": log_level,
        "--build-id": build_id,
    }
    for flag, value in build_only.items():
        if kind != "build" and value is not None:
            raise click.UsageError(f"{flag} applies to --type build only")
    if kind == "import" and parameters:
        raise click.UsageError("--param applies to --type build and dry-run only")
    metadata = sdk.Metadata(
        workspace_transition=sdk.WorkspaceTransition.Value((transition or "start").upper()),
        workspace_name=workspace,
        workspace_id=workspace_id,
        workspace_owner_id=owner_id,
        workspace_owner=owner_name,
        workspace_owner_groups=groups,
    )
    variable_values = [sdk.VariableValue(name=name, value=value) for name, value in variables]
    parameter_values = [
        sdk.RichParameterValue(name=name, value=value) for name, value in parameters
    ]
    request = pb.CreateJobRequest(
        provisioner=provisioner,
        organization=organization,
        tags=dict(tags),
        initiator=pb.Initiator(user_id=user_id, user_name=user_name),
        priority=priority,
    )
    if kind == "import":
        request.template_import.CopyFrom(
            pb.TemplateImportInput(user_variable_values=variable_values, metadata=metadata)
        )
    elif kind == "build":
        try:
            state = state_file.read_bytes() if state_file else b""
        except OSError as error:
            raise Failure(f"cannot read {state_file}: {error.strerror}") from None
        request.workspace_build.CopyFrom(
            pb.WorkspaceBuildInput(
                workspace_build_id=build_id or str(uuid.uuid4()),
                workspace_name=workspace,
                state=state,
                log_level=log_level or "",
                rich_parameter_values=parameter_values,
                variable_values=variable_values,
                metadata=metadata,
            )
        )
    else:
        request.template_dry_run.CopyFrom(
            pb.TemplateDryRunInput(
                rich_parameter_values=parameter_values,
                variable_values=variable_values,
                metadata=metadata,
            )
        )
    return request


@jobs.command("list")
@click.option("--status", "status_name", type=click.Choice(JOB_STATUSES), help="Only these.")
@click.option(
    "--type",
    "kind",
    type=click.Choice(list(JOB_TYPES)),
    help="Only jobs of this type (import, build or dry-run, as `jobs create --type`).",
)
@click.option("--provisioner", default="", help="Only jobs for this provisioner type.")
@click.option("--organization", default="", help="Only this organization's jobs.")
@click.option(
    "--tag",
    "tags",
    metavar="KEY=VALUE",
    callback=key_values,
    multiple=True,
    help="Only jobs with this tag (repeatable).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 500),
    default=None,
    help="Jobs per page (at most 500)  [default: 50]",
)
@click.option("--page-token", default="", help="Start at this page (from a previous listing).")
@click.option("--all", "all_pages", is_flag=True, help="Follow the pages to the last one.")
@json_option
@server_options
def jobs_list(
    connection: Connection,
    status_name: str | None,
    kind: str | None,
    provisioner: str,
    organization: str,
    tags: Sequence[tuple[str, str]],
    limit: int | None,
    page_token: str,
    all_pages: bool,
    as_json: bool,
) -> None:
    """List jobs, newest first, one page at a time (or every page with --all).

    \b
    Example:
      provd jobs list --status pending --tag scope=organization
      provd jobs list --type build --organization acme
    """
    request = pb.ListJobsRequest(
        status=f"JOB_STATUS_{status_name.upper()}" if status_name else None,
        type=JOB_TYPES[kind] if kind else None,
        provisioner=provisioner,
        organization=organization,
        tags=dict(tags),
        limit=limit or 0,
        page_token=page_token,
    )
    client = connection.jobs()
    listing = client.list_jobs(request)
    while all_pages and listing.next_page_token:
        request.page_token = listing.next_page_token
        page = client.list_jobs(request)
        listing.jobs.extend(page.jobs)
        listing.next_page_token = page.next_page_token
    if as_json:
        print_json(listing)
        return
    print_table(JOB_HEADERS, [job_row(job) for job in listing.jobs], empty="No jobs.")
    if listing.next_page_token:
        click.echo(f"More jobs: add --page-token {listing.next_page_token} (or --all).", err=True)


@jobs.command("queues")
@click.option("--organization", default="", help="Only this organization's queues.")
@json_option
@server_options
def jobs_queues(connection: Connection, organization: str, as_json: bool) -> None:
    """Pending jobs per queue (organization, provisioner, tags), longest-waiting first:
    how many, since when, and the connected daemons that can take them, or why none can.

    \b
    Example:
      provd jobs queues
    """
    listing = connection.jobs().list_queues(pb.ListQueuesRequest(organization=organization))
    if as_json:
        print_json(listing)
        return
    print_table(
        QUEUE_HEADERS, [queue_row(queue) for queue in listing.queues], empty="No jobs are pending."
    )
    unroutable = [queue for queue in listing.queues if queue.unroutable_reason]
    if unroutable:
        click.echo("\nNo connected daemon can take:")
        for queue in unroutable:
            click.echo(
                f"- {queue.provisioner} jobs of {queue.organization} with tags"
                f" {pairs(queue.tags)}: {queue.unroutable_reason}."
            )


class _Seconds(click.ParamType[int]):
    """A duration as whole seconds: `90`, `90s`, `15m` or `2h`."""

    name = "duration"
    _UNITS = {"s": 1, "m": 60, "h": 3600}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        unit = self._UNITS.get(text[-1:], 0)
        number = text[:-1] if unit else text
        if not number.isdigit() or int(number) == 0:
            self.fail(f"{value!r} is not a duration such as 90s, 15m or 2h", param, ctx)
        return int(number) * (unit or 1)


@jobs.command("history")
@click.option("--organization", default="", help="Only this organization's jobs.")
@click.option(
    "--window", type=_Seconds(), default="1h", show_default=True, help="How far back (at most 24h)."
)
@click.option(
    "--bucket", type=_Seconds(), default="1m", show_default=True, help="The width of each row."
)
@json_option
@server_options
def jobs_history(
    connection: Connection, organization: str, window: int, bucket: int, as_json: bool
) -> None:
    """Jobs finished per minute (or --bucket) by outcome, and the jobs pending at the
    end of each, over the last hour (or --window), oldest first; the last row is the
    current minute, up to now.

    \b
    Example:
      provd jobs history --window 15m
    """
    history = connection.jobs().get_job_history(
        pb.GetJobHistoryRequest(
            organization=organization, window_seconds=window, bucket_seconds=bucket
        )
    )
    if as_json:
        print_json(history)
        return
    print_table(HISTORY_HEADERS, [history_row(b) for b in history.buckets], empty="No history.")
    click.echo(f"\nPending now: {history.pending}")


@jobs.command("get")
@click.argument("job_id", metavar="ID")
@json_option
@server_options
def jobs_get(connection: Connection, job_id: str, as_json: bool) -> None:
    """Show a job: status, queue position, why it waits, error, times, worker, result.

    \b
    Example:
      provd jobs get 0b6f4a3e-6d1c-4e0f-9a43-5d2a0c1e7f10
    """
    show_job(connection.jobs().get_job(pb.GetJobRequest(id=job_id)), as_json)


@jobs.command("cancel")
@click.argument("job_id", metavar="ID")
@json_option
@server_options
def jobs_cancel(connection: Connection, job_id: str, as_json: bool) -> None:
    """Cancel a job and print it.

    A pending job is canceled at once; a running one is `canceling` until its
    daemon stops. A completed job cannot be canceled (exit status 1).
    """
    show_job(connection.jobs().cancel_job(pb.CancelJobRequest(id=job_id)), as_json)


@jobs.command("logs")
@click.argument("job_id", metavar="ID")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends.")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Only lines after line id N (a --json line's id).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@server_options
def jobs_logs(connection: Connection, job_id: str, follow: bool, after: int, as_json: bool) -> None:
    """Print a job's log lines: time, level, [stage], output.

    Without --follow, prints the lines so far and exits 0 whatever the job's
    status. With --follow, prints lines as they arrive until the job completes,
    then exits 0 if it succeeded and 1 if it failed or was canceled.

    \b
    Example:
      provd jobs logs --follow 0b6f4a3e-6d1c-4e0f-9a43-5d2a0c1e7f10
    """
    if follow:
        follow_to_end(connection, job_id, after=after, as_json=as_json)
        return
    request = pb.StreamJobLogsRequest(id=job_id, after=after)
    for log in connection.jobs().stream_job_logs(request):
        show_log(log, as_json)


def show_job(job: pb.Job, as_json: bool) -> None:
    if as_json:
        print_json(job)
    else:
        print_job(job)


def show_log(log: pb.JobLog, as_json: bool) -> None:
    if as_json:
        print_json_line(log)
    else:
        click.echo(log_line(log))


def follow_to_end(connection: Connection, job_id: str, *, after: int, as_json: bool) -> None:
    """Print the job's logs as they arrive until it completes; a `Failure` unless it
    succeeded."""
    client = connection.jobs()
    request = pb.StreamJobLogsRequest(id=job_id, after=after, follow=True)
    # Ctrl-C stops the command at once: the stream is read in this thread, and a
    # socket read that SIGINT interrupts raises KeyboardInterrupt.
    for log in client.stream_job_logs(request):
        show_log(log, as_json)
    job = client.get_job(pb.GetJobRequest(id=job_id))
    if job.status == pb.JOB_STATUS_SUCCEEDED:
        if not as_json:
            click.echo(f"job {job.id} succeeded", err=True)
        return
    if job.status == pb.JOB_STATUS_FAILED:
        code = f" ({job.error_code})" if job.error_code else ""
        raise Failure(f"job {job.id} failed: {job.error or 'no error message'}{code}")
    if job.status == pb.JOB_STATUS_CANCELED:
        raise Failure(f"job {job.id} was canceled")
    raise Failure(f"the log stream ended while job {job.id} is {status(job.status)}")
