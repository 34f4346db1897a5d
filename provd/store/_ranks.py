"""Queue positions without counting the queue: per-level counters and insertion ordinals.

A job's position is 1 + the pending jobs ahead of it in its queue (organization,
provisioner, tags) in (priority desc, seq asc) order; the queue's size is its pending
jobs. Neither SQLite nor PostgreSQL keeps counts in its indexes, so counting them
costs a pass over the queue (318 ms at 1M pending). Instead the SQL backends keep,
in the same transaction as every write that adds or removes a pending job:

- `queue_levels`, one row per *level* (queue, priority): `last`, the ordinals handed
  out so far; `pending`, its pending jobs; `head` and `marks` (below).
- `jobs.queue_ordinal`: the job's insertion ordinal within its level (1, 2, 3…),
  taken from `last` when it is created. Within a level, ordinal order is seq order
  (SQLite: writes are serialized; PostgreSQL: the level's row is locked before the
  job takes its seq, so no two creates of a level interleave).
- `queue_marks`, the exceptions to one rule: every ordinal up to `head` has left
  the queue (claimed, canceled, failed), every ordinal above it is pending. A mark
  at an ordinal flips that: above the head, a job that left from the middle (a
  cancel, a pending-timeout failure, a claim that overtook another replica's); at
  or below it, a job that came back (a release: a job whose delivery failed keeps
  its ordinal, hence its place).

Every change of a job between pending and not pending is one `flip` of its ordinal
(add the mark if absent, drop it if present) followed by moving the head over the
marks next to it: a mark at head + 1 is absorbed by raising the head, a mark at the
head by lowering it. The answer never depends on where the head is (a mark means
"the opposite of the rule" on either side); moving it only keeps the marks few. So
the usual traffic (jobs created at the tail, claimed at the head, released right
after their claim) leaves no mark at all and costs one read and one update of the
level's row; each mark is written and deleted once.

Then, for a pending job of priority p and ordinal o whose level has head h:

    position = 1 + Σ pending of the queue's levels with priority > p
                 + max(0, o - 1 - h) + #marks below o at or below h - #marks in (h, o)
    size     = Σ pending of the queue's levels

The cost is one read of the queue's level rows (one per priority in use, not per
job) and, only if the job's level has marks, a range count of its marks below the
job: it follows the number of distinct priorities and of outstanding removals from
the middle, never the number of pending jobs. The `marks` column says whether a
level has any, so a batch (`positions`) runs a fixed number of statements for any
number of jobs (one more per 500 jobs in levels with marks). Retention only deletes
completed jobs, whose ordinals have already left the counts; deleting a daemon key
releases its claims through `release_job`; a released job that was canceled meanwhile
completes and stays out. Level rows are never deleted (a running job's ordinal must
stay meaningful for its release): one per (queue, priority) ever used. What it does
not bound: a queue whose pending jobs use thousands of distinct priorities sums that
many rows, and many cancels in the middle of a long queue leave that many marks
ahead of the jobs behind them until claims reach them.

PostgreSQL with several replicas: every write to a level locks its row
(`FOR UPDATE`, or the upsert of a create) after the job rows it changes, and reads
see one snapshot (REPEATABLE READ), so the counters stay exact under concurrency;
the price is that creates and claims of one level take turns on its row until they
commit. The backends differ only in how they pass lists and lock rows (`Dialect`);
`MemoryStore` counts, and is the reference the store suite checks them against.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from provd.model import Job, JobStatus, QueuePosition

Level = tuple[str, str, str, int]
"""(organization, provisioner, tags key, priority): one priority of one queue."""

LEVEL = "organization = {p} AND provisioner = {p} AND tags = {p} AND priority = {p}"
CHUNK = 1000  # marks read per statement while moving the head


class Dialect(Protocol):
    """How one backend runs the statements below."""

    param: str  # a placeholder: "?" or "%s"
    lock: str  # appended to a SELECT that locks the row read, "" where writes are serialized
    text: str  # a text placeholder usable in a row value
    integer: str  # an integer placeholder usable as a selected value

    def any_of(self) -> str:
        """`IN (…)` / `= ANY(…)` against one list parameter (see `pack`)."""
        ...

    def each(self) -> str:
        """A SELECT yielding one row, column `value`, per element of one list parameter."""
        ...

    def pack(self, values: Sequence[int]) -> Any:
        """A list of integers as the one parameter of `any_of` and `each`."""
        ...

    def rows(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]: ...

    def run(self, sql: str, params: Sequence[Any]) -> int:
        """Run a statement; the number of rows it changed."""
        ...


def _level_sql(db: Dialect) -> str:
    return LEVEL.format(p=db.param)


def take_ordinal(db: Dialect, level: Level) -> int:
    """Count a new pending job in its level and return its ordinal. In PostgreSQL the
    upsert locks the level's row until commit, so call it before the job's INSERT."""
    p = db.param
    (row,) = db.rows(
        "INSERT INTO queue_levels (organization, provisioner, tags, priority, last, head,"
        f" pending, marks) VALUES ({p}, {p}, {p}, {p}, 1, 0, 1, 0)"
        " ON CONFLICT (organization, provisioner, tags, priority) DO UPDATE SET"
        " last = queue_levels.last + 1, pending = queue_levels.pending + 1 RETURNING last",
        level,
    )
    return int(row[0])


def flip_jobs(db: Dialect, jobs: Sequence[tuple[Level, int]], arrived: bool) -> None:
    """Record that each (level, ordinal) left the pending jobs (`arrived` False) or
    came back (True), level by level in key order (the lock order across levels)."""
    by_level: dict[Level, list[int]] = defaultdict(list)
    for level, ordinal in jobs:
        by_level[level].append(ordinal)
    for level in sorted(by_level):
        ordinals = by_level[level]
        flip(db, level, ordinals, len(ordinals) if arrived else -len(ordinals))


def flip(db: Dialect, level: Level, ordinals: Sequence[int], pending_delta: int) -> None:
    """Toggle the pending state of `ordinals` (distinct) in `level`, add
    `pending_delta` to its count, and move its head over the marks next to it."""
    key = _level_sql(db)
    (row,) = db.rows(f"SELECT head, marks FROM queue_levels WHERE {key}{db.lock}", level)
    head, marks_before = int(row[0]), int(row[1])
    wanted = sorted(ordinals)
    p = db.param
    if (
        wanted
        and not marks_before
        and wanted
        in (
            list(range(head + 1, head + 1 + len(wanted))),  # claims (or failures) at the head
            list(range(head + 1 - len(wanted), head + 1)),  # releases right after their claims
        )
    ):
        # The usual traffic, without a mark: the head moves over the run, nothing else.
        new_head = head + len(wanted) if wanted[0] > head else head - len(wanted)
        db.run(
            f"UPDATE queue_levels SET head = {p}, pending = pending + {p} WHERE {key}",
            [new_head, pending_delta, *level],
        )
        return
    present = [
        int(r[0])
        for r in db.rows(
            f"SELECT ordinal FROM queue_marks WHERE {key} AND ordinal {db.any_of()}",
            [*level, db.pack(wanted)],
        )
    ]
    absent = sorted(set(wanted) - set(present))
    if present:
        db.run(
            f"DELETE FROM queue_marks WHERE {key} AND ordinal {db.any_of()}",
            [*level, db.pack(present)],
        )
    if absent:
        db.run(
            "INSERT INTO queue_marks (organization, provisioner, tags, priority, ordinal)"
            f" SELECT {p}, {p}, {p}, {p}, value FROM ({db.each()}) AS e",
            [*level, db.pack(absent)],
        )
    marks = len(absent) - len(present)
    # Marks right above the head are jobs that left: the head moves up over them.
    top = _run_end(db, key, level, head, up=True) if marks_before + marks else head
    if top > head:
        marks -= db.run(
            f"DELETE FROM queue_marks WHERE {key} AND ordinal > {p} AND ordinal <= {p}",
            [*level, head, top],
        )
        head = top
    # Marks at the head and below it, without a gap, are jobs that came back.
    bottom = _run_end(db, key, level, head, up=False) if marks_before + marks else head
    if bottom < head:
        marks -= db.run(
            f"DELETE FROM queue_marks WHERE {key} AND ordinal > {p} AND ordinal <= {p}",
            [*level, bottom, head],
        )
        head = bottom
    db.run(
        f"UPDATE queue_levels SET head = {p}, pending = pending + {p}, marks = marks + {p}"
        f" WHERE {key}",
        [head, pending_delta, marks, *level],
    )


def _run_end(db: Dialect, key: str, level: Level, head: int, *, up: bool) -> int:
    """Where the unbroken run of marks from head + 1 upwards (`up`) or from head
    downwards ends: the head's new place."""
    p = db.param
    if up:
        sql = f"SELECT ordinal FROM queue_marks WHERE {key} AND ordinal > {p} ORDER BY ordinal"
    else:
        sql = (
            f"SELECT ordinal FROM queue_marks WHERE {key} AND ordinal <= {p} ORDER BY ordinal DESC"
        )
    while True:
        found = db.rows(f"{sql} LIMIT {CHUNK}", [*level, head])
        for (ordinal,) in found:
            expected = head + 1 if up else head
            if int(ordinal) != expected:
                return head
            head = head + 1 if up else head - 1
        if len(found) < CHUNK:
            return head


def pending_below(ordinal: int, head: int, came_back: int, left: int) -> int:
    """Pending jobs of a level with an ordinal below `ordinal`: `came_back` marks
    below it at or under the head, `left` marks between the head and it."""
    return max(0, ordinal - 1 - head) + came_back - left


@dataclass(frozen=True, slots=True)
class _Pending:
    level: Level
    ordinal: int


def positions(db: Dialect, jobs: Sequence[Job], pending_condition: str) -> list[QueuePosition]:
    """`Store.queue_positions`: three statements for any number of jobs (a fourth only
    for levels with marks), all in the caller's read snapshot."""
    seqs = sorted({job.seq for job in jobs if job.status is JobStatus.PENDING})
    if not seqs:
        return [QueuePosition(0, 0)] * len(jobs)
    current: dict[int, _Pending] = {}
    for seq, org, prov, tags, priority, ordinal in db.rows(
        "SELECT seq, organization, provisioner, tags, priority, queue_ordinal FROM jobs"
        f" WHERE seq {db.any_of()} AND {pending_condition}",
        [db.pack(seqs)],
    ):
        current[int(seq)] = _Pending((org, prov, tags, int(priority)), int(ordinal))
    queues = sorted({pending.level[:3] for pending in current.values()})
    levels: dict[tuple[str, str, str], list[tuple[int, int, int, int]]] = defaultdict(list)
    if queues:
        t = db.text
        in_queues = ", ".join([f"({t}, {t}, {t})"] * len(queues))
        for org, prov, tags, priority, head, pending, marks in db.rows(
            "SELECT organization, provisioner, tags, priority, head, pending, marks"
            " FROM queue_levels WHERE pending > 0"
            f" AND (organization, provisioner, tags) IN ({in_queues})",
            [value for queue in queues for value in queue],
        ):
            levels[(org, prov, tags)].append((int(priority), int(head), int(pending), int(marks)))
    marked = _mark_counts(db, current, levels)
    answers = []
    for job in jobs:
        found = current.get(job.seq)
        if found is None:
            answers.append(QueuePosition(0, 0))
            continue
        queue_levels = levels[found.level[:3]]
        size = sum(pending for _, _, pending, _ in queue_levels)
        higher = sum(pending for prio, _, pending, _ in queue_levels if prio > found.level[3])
        head = next(head for prio, head, _, _ in queue_levels if prio == found.level[3])
        came_back, left = marked.get(job.seq, (0, 0))
        ahead = higher + pending_below(found.ordinal, head, came_back, left)
        answers.append(QueuePosition(ahead + 1, size))
    return answers


def _mark_counts(
    db: Dialect,
    current: dict[int, _Pending],
    levels: dict[tuple[str, str, str], list[tuple[int, int, int, int]]],
) -> dict[int, tuple[int, int]]:
    """For each job whose level has marks: (marks below it at or under the head, marks
    between the head and it), one UNION ALL statement per 500 such jobs."""
    heads = {
        (*queue, priority): head
        for queue, rows in levels.items()
        for priority, head, _, marks in rows
        if marks
    }
    wanted = [(seq, p, heads[p.level]) for seq, p in sorted(current.items()) if p.level in heads]
    counts: dict[int, tuple[int, int]] = {}
    key = _level_sql(db)
    p = db.param
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        sql = " UNION ALL ".join(
            f"SELECT {db.integer}, COUNT(*) FILTER (WHERE ordinal <= {p}),"
            f" COUNT(*) FILTER (WHERE ordinal > {p}) FROM queue_marks WHERE {key}"
            f" AND ordinal < {p}"
            for _ in part
        )
        params: list[Any] = []
        for seq, pending, head in part:
            params += [seq, head, head, *pending.level, pending.ordinal]
        for seq, came_back, left in db.rows(sql, params):
            counts[int(seq)] = (int(came_back), int(left))
    return counts
