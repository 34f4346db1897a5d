"""How a job's log is stored: in chunks, one row per batch of lines, not one per line.

A chunk holds up to `CHUNK_LINES` consecutive lines of one job as one JSON array of
`[created_at, source, level, stage, output]` rows; line `i` of a chunk has the id
`first_id + i`, so a chunk row carries `first_id` and `last_id` and a reader seeks to
the first chunk whose `last_id` is past `after`. Storing an UpdateJob's lines is then
one insert and one index entry, however many lines it carries (it was two B-tree
inserts per line), and the JSON is built and parsed in C. Every backend (SQLite,
PostgreSQL, memory) shares this module, so the format is the same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence

from provd.model import LogBatch, LogLevel, LogLine, LogRow, LogSource, NewLogLine
from provd.store._rules import log_size

# At most this many lines per chunk: a reader decodes whole chunks, so a page of
# lines never decodes much more than it returns. PostgreSQL spaces chunk ids 1,024
# apart (provd/store/_pg_schema.py), so this must stay at or under that.
CHUNK_LINES = 1000

# Enum members by number: faster than calling the enum for each line read. The
# service stores only known values.
_SOURCES = {int(member): member for member in LogSource}
_LEVELS = {int(member): member for member in LogLevel}


def as_batch(logs: Sequence[NewLogLine] | LogBatch, now: int) -> LogBatch:
    """`logs` as a batch: as it is if it is one; lines without a time get `now`."""
    if isinstance(logs, LogBatch):
        return logs
    return LogBatch(
        rows=[
            (
                now if line.created_at is None else line.created_at,
                int(line.source),
                int(line.level),
                line.stage,
                line.output,
            )
            for line in logs
        ],
        size=sum(map(log_size, logs)),
    )


def chunks(batch: LogBatch) -> Iterator[tuple[int, str]]:
    """The batch as chunks to insert, in order: (how many lines, the encoded rows)."""
    rows = batch.rows
    for start in range(0, len(rows), CHUNK_LINES):
        part = rows[start : start + CHUNK_LINES]
        yield len(part), encode(part)


def encode(rows: Sequence[LogRow]) -> str:
    """Rows as one chunk's text. JSON escapes every control character, NUL included."""
    return json.dumps(list(rows), ensure_ascii=False, separators=(",", ":"))


def read_chunks(
    job_id: str, stored: Iterable[tuple[int, str]], after: int, limit: int
) -> list[LogLine]:
    """The lines with an id greater than `after`, at most `limit` (no limit if < 0),
    from `stored`: (first_id, encoded rows) of the job's chunks in id order, starting
    with the first chunk that ends after `after`. Stops reading `stored` once full."""
    lines: list[LogLine] = []
    for first_id, encoded in stored:
        rows = json.loads(encoded)
        skip = max(0, after + 1 - first_id)
        for offset, (created_at, source, level, stage, output) in enumerate(rows[skip:], skip):
            if 0 <= limit <= len(lines):
                return lines
            lines.append(
                LogLine(
                    first_id + offset,
                    job_id,
                    created_at,
                    _SOURCES[source],
                    _LEVELS[level],
                    stage,
                    output,
                )
            )
        if 0 <= limit <= len(lines):
            return lines
    return lines


def line_count(first_id: int, last_id: int) -> int:
    """How many lines a chunk holds."""
    return last_id - first_id + 1
