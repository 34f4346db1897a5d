"""One log format: provd's lines and hypercorn's, text for people or JSON, at the
level asked for; a request that fails inside provd logs one line, a client's mistake
none. The formats are checked on records and through a real `provd serve`."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd import errors
from provd.logging_setup import HTTP_LOGGER, JsonFormatter, TextFormatter, configure_logging
from provd.rpc.errors import ErrorMapping
from tests.processes import provd_env, run_cli, start_server

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: .+$"
)
JOB_ID = "3f1c9a57-2b1e-4c55-9d1e-2b8f0e4f5a61"


def make_record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "provd.reapers", logging.WARNING, __file__, 1, "job %s hung", (JOB_ID,), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


# -- the two formats -------------------------------------------------------------------


def test_text_is_one_line_with_time_level_logger_message_and_fields() -> None:
    line = TextFormatter().format(make_record(worker=1, code="internal", note="two words"))
    assert TEXT_LINE.match(line), line
    assert f"WARNING provd.reapers: job {JOB_ID} hung worker=1 code=internal" in line
    assert line.endswith('note="two words"')
    newline = make_record()
    newline.msg, newline.args = "first\nsecond", ()
    assert "\n" not in TextFormatter().format(newline)


def test_json_is_one_object_per_line_with_the_extra_fields() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = make_record(worker=0, job_id=JOB_ID)
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "provd.reapers"
    assert entry["message"] == f"job {JOB_ID} hung"
    assert entry["worker"] == 0 and entry["job_id"] == JOB_ID
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert "RuntimeError: boom" in entry["exception"]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes the root logger: put it back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def test_configure_logging_sets_the_level_and_demotes_hypercorns_banner(
    restored_logging: None,
) -> None:
    stream = io.StringIO()
    configure_logging("json", "warning", stream=stream, fields={"worker": 3})
    logging.getLogger("provd.test").info("not written")
    logging.getLogger("provd.test").warning("written")
    logging.getLogger(HTTP_LOGGER).info("Running on http://127.0.0.1:1 (CTRL + C to quit)")
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["written"]
    assert json.loads(lines[0])["worker"] == 3

    stream = io.StringIO()
    configure_logging("text", "debug", stream=stream)
    logging.getLogger(HTTP_LOGGER).info("Running on http://127.0.0.1:1 (CTRL + C to quit)")
    line = stream.getvalue().strip()
    assert TEXT_LINE.match(line) and " DEBUG   provd.http: Running on " in line, line
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml", "info")


# -- failed requests ---------------------------------------------------------------------


def request_context(method: str = "UpdateJob") -> Any:
    return SimpleNamespace(
        method=SimpleNamespace(service_name="provisionerd.ProvisionerDaemon", name=method)
    )


async def call_unary(error: BaseException, request: object) -> ConnectError:
    async def call_next(request: object, ctx: object) -> object:
        raise error

    with pytest.raises(ConnectError) as raised:
        await ErrorMapping().intercept_unary(call_next, request, request_context())
    return raised.value


async def test_an_internal_error_logs_one_line_with_method_code_and_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="provd.rpc.errors")
    sent = await call_unary(RuntimeError("the disk caught fire"), SimpleNamespace(job_id=JOB_ID))
    assert sent.code == Code.INTERNAL and "disk" not in sent.message
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        "provisionerd.ProvisionerDaemon/UpdateJob failed (internal) for job"
        f" {JOB_ID}: RuntimeError: the disk caught fire"
    )
    assert record.rpc_method == "provisionerd.ProvisionerDaemon/UpdateJob"  # type: ignore[attr-defined]
    assert record.code == "internal" and record.job_id == JOB_ID  # type: ignore[attr-defined]
    assert record.exc_info is None  # the traceback is a debug line of its own


async def test_a_store_that_is_closed_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="provd.rpc.errors")
    sent = await call_unary(errors.StoreClosed("the store is closed"), SimpleNamespace(id=""))
    assert sent.code == Code.UNAVAILABLE
    [record] = caplog.records
    assert "failed (unavailable): the store is closed" in record.getMessage()


@pytest.mark.parametrize(
    "error",
    [
        errors.InvalidArgument("id: not a UUID"),
        errors.NotFound("no job"),
        errors.FailedPrecondition("the job is done"),
        errors.PermissionDenied("not your job"),
        errors.Unauthenticated("no token"),
        errors.ResourceExhausted("too big"),
        ConnectError(Code.CANCELED, "gone"),
    ],
)
async def test_a_clients_mistake_logs_nothing(
    caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    caplog.set_level(logging.DEBUG)
    await call_unary(error, SimpleNamespace(job_id=JOB_ID))
    assert [r for r in caplog.records if r.name.startswith("provd")] == []


async def test_a_stream_that_fails_inside_provd_logs_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="provd.rpc.errors")

    async def call_next(request: object, ctx: object) -> AsyncIterator[object]:
        yield "first"
        raise KeyError("lost")

    received = []
    with pytest.raises(ConnectError) as raised:
        async for message in ErrorMapping().intercept_server_stream(
            call_next, SimpleNamespace(id=JOB_ID), request_context("StreamJobLogs")
        ):
            received.append(message)
    assert received == ["first"] and raised.value.code == Code.INTERNAL
    [record] = caplog.records
    assert f"StreamJobLogs failed (internal) for job {JOB_ID}: KeyError" in record.getMessage()


# -- a real provd serve ------------------------------------------------------------------


async def stop(server: Any) -> tuple[list[str], list[str]]:
    """SIGTERM the server; return its two lines for people (stdout) and its log
    lines (stderr; the two streams interleave in the output)."""
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0
    lines = [line for line in server.output.decode().splitlines() if line]
    for_people = [line for line in lines if _FOR_PEOPLE.match(line)]
    assert len(for_people) == 2, lines
    assert " listening on http://127.0.0.1:" in for_people[0], lines
    return for_people, [line for line in lines if line not in for_people]


_FOR_PEOPLE = re.compile(r"^(provd \S+ listening on |database: )")


@pytest.mark.slow
async def test_text_by_default(tmp_path: Path, nursery: trio.Nursery) -> None:
    server = await start_server(nursery, tmp_path / "provd.db", "--log-level", "debug")
    # A client's mistake: answered, not logged.
    await run_cli(server.url, "jobs", "get", JOB_ID, check=False)
    _, lines = await stop(server)
    for line in lines:
        assert TEXT_LINE.match(line), line
    assert any(" DEBUG   provd.http: Running on http://" in line for line in lines), lines
    assert any(line.endswith(" INFO    provd.serve: SIGTERM, shutting down") for line in lines)
    assert not any(JOB_ID in line or "Traceback" in line for line in lines), lines


@pytest.mark.slow
async def test_json_from_the_environment(tmp_path: Path, nursery: trio.Nursery) -> None:
    env = provd_env(PROVD_LOG_FORMAT="json", PROVD_LOG_LEVEL="debug")
    server = await start_server(nursery, tmp_path / "provd.db", env=env)
    await run_cli(server.url, "jobs", "get", JOB_ID, check=False)
    _, lines = await stop(server)
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
    assert {
        "logger": "provd.serve",
        "level": "info",
        "message": "SIGTERM, shutting down",
    }.items() <= (next(e for e in entries if e["logger"] == "provd.serve").items())
    assert any(e["logger"] == "provd.http" and e["level"] == "debug" for e in entries)


@pytest.mark.slow
async def test_the_level_leaves_out_less_severe_lines(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = await start_server(nursery, tmp_path / "provd.db", "--log-level", "warning")
    _, lines = await stop(server)
    # Only the two lines for people: the info line about SIGTERM is below warning.
    assert lines == []
