"""provd's one log format: every line provd writes on stderr, its own and hypercorn's.

`configure_logging` is called once per process, by `provd serve` and by each
`provd _worker`, so that a server and all its workers log the same way:

- `text` (the default), for people: one line per record,
  `2026-12-02T01:30:00.123Z INFO    provd.reapers: message key=value`;
- `json`, for log collectors: one object per line with `time`, `level`, `logger`,
  `message` and the record's extra fields.

hypercorn logs through `HTTP_LOGGER` (see `provd.app.hypercorn_config`), so its lines
take the same format; its "Running on …" banner is demoted to debug, since
`provd serve` prints its own "listening on" line on stdout.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Final, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
# The logger hypercorn is given as its error log (hypercorn's `Config.errorlog`).
HTTP_LOGGER: Final = "provd.http"

# Attributes every LogRecord has; anything else on a record is an extra field.
_STANDARD_ATTRIBUTES: Final = frozenset(
    {*vars(logging.makeLogRecord({})), "message", "asctime", "taskName"}
)


def _time(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """What `logger.x(..., extra={...})` (or a handler's filter) put on `record`."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
    }


class TextFormatter(logging.Formatter):
    """One line for people: time (UTC), level, logger, message, then `key=value` extras;
    a traceback, when a record carries one, follows on the next lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", "\\n")
        line = f"{_time(record)} {record.levelname:<7} {record.name}: {message}"
        fields = extra_fields(record)
        if fields:
            line += " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: object) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c in text for c in ' "=\n') else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the extra fields, and
    `exception` (the formatted traceback) when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _AddFields(logging.Filter):
    """Puts fixed fields on every record a handler writes (a worker's number)."""

    def __init__(self, fields: Mapping[str, object]) -> None:
        super().__init__()
        self.fields = dict(fields)

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class _DemoteHypercornBanner(logging.Filter):
    """hypercorn's "Running on URL (CTRL + C to quit)" becomes a debug line: provd
    prints its own "listening on" line, and a worker has no CTRL + C of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Running on "):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


# The handler `configure_logging` installed, replaced when it is called again.
_installed: logging.Handler | None = None


def configure_logging(
    log_format: str = "text",
    log_level: str = "info",
    *,
    stream: IO[str] | None = None,
    fields: Mapping[str, object] | None = None,
) -> logging.Handler:
    """Send every log record of this process to `stream` (stderr) in `log_format`, at
    `log_level` and above; `fields` are added to every line (e.g. a worker's number).
    Raises ValueError for an unknown format or level."""
    global _installed
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; expected one of {LOG_FORMATS}")
    if log_level.lower() not in LOG_LEVELS:
        raise ValueError(f"unknown log level {log_level!r}; expected one of {LOG_LEVELS}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    if fields:
        handler.addFilter(_AddFields(fields))
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(log_level.upper())
    _installed = handler
    http = logging.getLogger(HTTP_LOGGER)
    if not any(isinstance(f, _DemoteHypercornBanner) for f in http.filters):
        http.addFilter(_DemoteHypercornBanner())
    # hpack logs every header it encodes at debug: not what `--log-level debug` is for.
    logging.getLogger("hpack").setLevel(logging.INFO)
    # Python's warnings become log lines too, in the same format.
    logging.captureWarnings(True)
    return handler


__all__ = [
    "HTTP_LOGGER",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "configure_logging",
    "extra_fields",
]
