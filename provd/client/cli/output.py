"""How the CLI prints: tables for people, JSON for scripts.

JSON is protobuf's canonical JSON mapping (`MessageToDict`: camelCase field names, enum
names, 64-bit integers as strings, timestamps in RFC 3339), the same shape a Connect
JSON client of provd sees, with every field present even when it holds its default,
so that a script can rely on the keys. Times in tables are local.

Tables are laid out by `format_table`, which prints what tabulate's "simple" and
"plain" formats print for these tables (tests/test_cli.py compares the two): importing
tabulate cost `provd jobs list` about 40 ms of its 0.3 s budget (it reads its version
with importlib.metadata). protobuf's JSON mapping, json, shutil and textwrap are
imported by the functions that use them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionersdk import provisioner_pb2 as sdk

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from google.protobuf.timestamp_pb2 import Timestamp

    # Types only: `provd jobs …` need not load the other services' messages.
    from provd.gen.provd.v1 import daemons_pb2 as dpb
    from provd.gen.provd.v1 import keys_pb2 as kpb
    from provd.gen.provd.v1 import quota_pb2 as qpb

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def key_values(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> list[tuple[str, str]]:
    """Repeated `key=value` options (the value may contain '=' and may be empty): a
    click callback."""
    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not {param.metavar or 'key=value'}")
        pairs.append((key, rest))
    return pairs


# The CLI's names for job types (`--type`), and back.
JOB_TYPES = {
    "import": pb.JOB_TYPE_TEMPLATE_IMPORT,
    "build": pb.JOB_TYPE_WORKSPACE_BUILD,
    "dry-run": pb.JOB_TYPE_TEMPLATE_DRY_RUN,
}
_TYPE_NAMES = {int(value): name for name, value in JOB_TYPES.items()}
JOB_STATUSES = ("pending", "running", "succeeded", "failed", "canceling", "canceled")


def to_dict(message: Message) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(message, always_print_fields_with_no_presence=True)  # type: ignore[no-any-return]


def print_json(document: Message | Mapping[str, Any]) -> None:
    """One JSON document, indented."""
    import json

    data = document if isinstance(document, Mapping) else to_dict(document)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_json_line(message: Message) -> None:
    """One JSON object on one line (flushed: a reader sees it at once)."""
    import json

    click.echo(json.dumps(to_dict(message), ensure_ascii=False, separators=(",", ":")))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> None:
    """Rows under headers, or `empty` when there are none."""
    rows = list(rows)
    if not rows:
        click.echo(empty)
        return
    click.echo(format_table(rows, headers))


def print_fields(fields: Iterable[tuple[str, object]]) -> None:
    """A two-column name/value listing, long values wrapped to the terminal's width;
    fields whose value is empty are left out."""
    import shutil

    shown = [(name, str(value)) for name, value in fields if value not in ("", None)]
    if not shown:
        return
    width = max(40, shutil.get_terminal_size().columns - max(len(n) for n, _ in shown) - 2)
    wrapped = [
        (name, "\n".join(_wrap(line, width) for line in value.splitlines()))
        for name, value in shown
    ]
    click.echo(format_table(wrapped))


def _wrap(line: str, width: int) -> str:
    import textwrap

    return textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False)


_LINE_BREAK = re.compile(r"\r|\n")


def format_table(rows: Sequence[Sequence[object]], headers: Sequence[str] = ()) -> str:
    """`rows` as text, the same as `tabulate(rows, headers, disable_numparse=True)`
    with tablefmt "simple" (given headers) or "plain" (without) prints them for cells
    that hold no ANSI escape codes or wide characters (which tabulate measures
    differently): each cell `str()` and stripped, left-aligned in a column as wide as
    its widest line and, with headers, at least two more than its header; columns two
    spaces apart; a line of dashes under the headers; each line's trailing spaces
    dropped; a cell with line breaks spans lines, and so does its row."""
    texts = [[str(cell) for cell in row] for row in rows]
    # Multiline or not is decided before the cells are stripped, as tabulate does.
    multiline = any(_LINE_BREAK.search(text) for row in [headers, *texts] for text in row)
    cells = [[text.strip() for text in row] for row in texts]

    def width(text: str) -> int:
        return max(map(len, _LINE_BREAK.split(text))) if multiline else len(text)

    columns = list(zip(*cells, strict=True)) if cells else [()] * len(headers)
    widths = [
        max([width(headers[i]) + 2 if headers else 0, *(width(text) for text in column)])
        for i, column in enumerate(columns)
    ]
    lines: list[str] = []

    def add(row: Sequence[str]) -> None:
        split = [text.splitlines() if multiline else [text] for text in row]
        # As in tabulate, a row whose cells are all empty takes no line in a
        # multiline table.
        for index in range(max(map(len, split), default=0) if multiline else 1):
            parts = (
                (cell[index] if index < len(cell) else "").ljust(w)
                for cell, w in zip(split, widths, strict=True)
            )
            lines.append("  ".join(parts).rstrip())

    if headers:
        add(headers)
        lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        add(row)
    return "\n".join(lines)


# -- values -------------------------------------------------------------------------


def when(ts: Timestamp, *, relative: bool = False) -> str:
    """A timestamp as local time ('' when unset), optionally with how long ago."""
    if not ts.seconds and not ts.nanos:
        return ""
    moment = ts.ToDatetime(tzinfo=UTC).astimezone()
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text} ({ago(ts)})" if relative else text


def ago(ts: Timestamp) -> str:
    """How long ago `ts` was, roughly: '5s ago', '3m ago', '2h ago', '4d ago'."""
    if not ts.seconds and not ts.nanos:
        return "never"
    seconds = int((datetime.now(UTC) - ts.ToDatetime(tzinfo=UTC)).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def pairs(values: Mapping[str, str]) -> str:
    """A map as 'k=v, k=v', sorted by key."""
    return ", ".join(f"{key}={value}" for key, value in sorted(values.items()))


def size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def job_type(value: int) -> str:
    return _TYPE_NAMES.get(value, "unknown")


def status(value: int) -> str:
    name: str = pb.JobStatus.Name(value)
    return name.removeprefix("JOB_STATUS_").lower()


# -- messages -----------------------------------------------------------------------

JOB_HEADERS = ("ID", "TYPE", "STATUS", "PROVISIONER", "ORGANIZATION", "CREATED", "QUEUE")


def job_row(job: pb.Job) -> tuple[str, ...]:
    return (
        job.id,
        job_type(job.type),
        status(job.status),
        job.provisioner,
        job.organization,
        when(job.created_at),
        _queue(job),
    )


def _queue(job: pb.Job) -> str:
    return f"{job.queue_position} of {job.queue_size}" if job.queue_position else ""


QUEUE_HEADERS = ("ORGANIZATION", "PROVISIONER", "TAGS", "PENDING", "OLDEST", "DAEMONS")


def queue_row(queue: pb.JobQueue) -> tuple[str, ...]:
    return (
        queue.organization,
        queue.provisioner,
        pairs(queue.tags),
        str(queue.pending),
        ago(queue.oldest_created_at),
        ", ".join(_queue_daemon(daemon) for daemon in queue.daemons) or "none",
    )


def _queue_daemon(daemon: pb.QueueDaemon) -> str:
    return (
        f"{daemon.name} (busy: {daemon.current_job_id})" if daemon.current_job_id else daemon.name
    )


HISTORY_HEADERS = ("FROM", "SUCCEEDED", "FAILED", "CANCELED", "PENDING")


def history_row(bucket: pb.JobHistoryBucket) -> tuple[str, ...]:
    """A bucket of `provd jobs history`: its start in local time, the jobs that
    finished in it by outcome, and the jobs pending at its end."""
    return (
        when(bucket.start),
        str(bucket.succeeded),
        str(bucket.failed),
        str(bucket.canceled),
        str(bucket.pending),
    )


def print_job(job: pb.Job) -> None:
    """One job, field by field: what it is, where it stands, and why."""
    kind = job.WhichOneof("input")
    metadata = getattr(job, kind).metadata if kind else sdk.Metadata()
    workspace = ""
    if job.HasField("workspace_build"):
        transition = sdk.WorkspaceTransition.Name(metadata.workspace_transition).lower()
        workspace = (
            f"{job.workspace_build.workspace_name or metadata.workspace_name} ({transition})"
        )
    initiator = job.initiator.user_name or job.initiator.user_id
    if job.initiator.user_name and job.initiator.user_id:
        initiator = f"{job.initiator.user_name} ({job.initiator.user_id})"
    print_fields(
        [
            ("id", job.id),
            ("type", job_type(job.type)),
            ("status", status(job.status)),
            ("queue", _queue(job)),
            ("pending reason", job.pending_reason),
            ("error", job.error),
            ("error code", job.error_code),
            ("provisioner", job.provisioner),
            ("organization", job.organization),
            ("tags", pairs(job.tags)),
            ("file", job.file_hash),
            ("workspace", workspace),
            ("initiator", initiator),
            ("priority", job.priority or ""),
            ("worker", job.worker_id),
            ("created", when(job.created_at, relative=True)),
            ("started", when(job.started_at, relative=True)),
            ("canceled", when(job.canceled_at, relative=True)),
            ("completed", when(job.completed_at, relative=True)),
            ("result", result_summary(job) if job.HasField("result") else ""),
        ]
    )


def result_summary(job: pb.Job) -> str:
    """What the daemon reported, counted rather than printed (--json has it all)."""
    result = job.result
    parts: list[str] = []
    kind = result.WhichOneof("type")
    if kind == "template_import":
        imported = result.template_import
        parts.append(
            f"{len(imported.start_resources)} resources on start,"
            f" {len(imported.stop_resources)} on stop,"
            f" {len(imported.rich_parameters)} parameters"
        )
    elif kind == "workspace_build":
        build = result.workspace_build
        parts.append(f"{len(build.resources)} resources, state {size(len(build.state))}")
    elif kind == "template_dry_run":
        parts.append(f"{len(result.template_dry_run.resources)} resources")
    if result.template_variables:
        parts.append(f"{len(result.template_variables)} template variables")
    if result.readme:
        parts.append(f"readme {size(len(result.readme))}")
    if result.failed_state:
        parts.append(f"failed state {size(len(result.failed_state))}")
    return "; ".join(parts) or "(empty)"


def log_line(log: pb.JobLog) -> str:
    """'15:04:05.123 INFO  [Stage] output'."""
    moment = log.created_at.ToDatetime(tzinfo=UTC).astimezone()
    level = sdk.LogLevel.Name(log.level) if log.level in sdk.LogLevel.values() else str(log.level)
    stage = f"[{log.stage}] " if log.stage else ""
    return f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d} {level:<5} {stage}{log.output}"


DAEMON_HEADERS = (
    "NAME",
    "ORGANIZATION",
    "PROVISIONERS",
    "TAGS",
    "VERSION",
    "API",
    "STATE",
    "JOB",
    "LAST SEEN",
    "KEY",
)


def daemon_row(daemon: dpb.Daemon) -> tuple[str, ...]:
    return (
        daemon.name,
        daemon.organization,
        ",".join(daemon.provisioners),
        pairs(daemon.tags),
        daemon.version,
        daemon.api_version,
        daemon_state(daemon),
        daemon.current_job_id,
        ago(daemon.last_seen_at),
        daemon_key(daemon),
    )


def daemon_key(daemon: dpb.Daemon) -> str:
    """The daemon key a daemon used: its name, its id once deleted, '' for the PSK."""
    if not daemon.key_id:
        return ""
    return daemon.key_name or f"{daemon.key_id} (deleted)"


def daemon_state(daemon: dpb.Daemon) -> str:
    """stale: not seen for three heartbeats; running: has a job; waiting: holds an
    acquire stream open; idle: seen lately, neither."""
    if daemon.stale:
        return "stale"
    if daemon.current_job_id:
        return "running"
    return "waiting" if daemon.connected else "idle"


ALLOWANCE_HEADERS = ("ORGANIZATION", "USER", "GROUP", "ALLOWANCE")


def allowance_row(allowance: qpb.Allowance) -> tuple[str, ...]:
    return (
        allowance.organization,
        allowance.user_id,
        allowance.group,
        str(allowance.allowance),
    )


KEY_HEADERS = (
    "NAME",
    "ORGANIZATION",
    "OWNER",
    "PROVISIONERS",
    "TAGS",
    "CREATED",
    "LAST USED",
    "DAEMONS",
)


def key_row(key: kpb.Key) -> tuple[str, ...]:
    return (
        key.name,
        key.organization,
        key.owner,
        ",".join(key.provisioners) or "any",
        pairs(key.tags),
        when(key.created_at),
        ago(key.last_used_at),
        str(key.daemons_connected),
    )


def key_fields(key: kpb.Key) -> list[tuple[str, object]]:
    """One key as `print_fields` shows it."""
    return [
        ("name", key.name),
        ("id", key.id),
        ("organization", key.organization),
        ("owner", key.owner),
        ("provisioners", ",".join(key.provisioners) or "any"),
        ("tags", pairs(key.tags)),
        ("created", when(key.created_at)),
    ]
