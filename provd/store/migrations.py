"""The SQLite schema, as versioned migrations applied in order at start-up.

Append new migrations at the end; never edit one that has shipped. sqlite-utils
records each applied migration in `_sqlite_migrations` and runs each in a
transaction, so a failed upgrade leaves the previous schema intact.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("provd")


def known_migrations() -> list[str]:
    """The names of this provd's migrations, in order: the ones that an empty
    database lacks (asking `migrations` itself, so every migration counts however
    it was registered)."""
    empty = Database(memory=True)
    try:
        return [m.name for m in migrations.pending(empty)]
    finally:
        empty.close()


def unknown_migrations(db: Database) -> list[str]:
    """Migrations recorded in `db` that this provd does not have: a newer provd wrote
    it, and this one cannot know what its schema means. Read-only."""
    known = set(known_migrations())
    return [m.name for m in migrations.applied(db) if m.name not in known]


def is_another_apps(db: Database) -> bool:
    """True if `db` has tables but no provd migration: it is some other program's
    database, which provd must not add its tables to. Read-only."""
    if migrations.applied(db):
        return False
    tables = db.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        " AND name NOT LIKE 'sqlite%' AND name != ?",
        [Migrations.migrations_table],
    ).fetchone()[0]
    return bool(tables)


@migrations(name="0001_initial")
def initial(db: Database) -> None:
    statements = [
        """
        CREATE TABLE files (
            hash TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mimetype TEXT NOT NULL,
            data BLOB NOT NULL,
            created_at INTEGER NOT NULL
        )
        """,
        # seq is the rowid: creation order, the tie-breaker of every queue.
        """
        CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            provisioner TEXT NOT NULL,
            organization TEXT NOT NULL,
            tags TEXT NOT NULL,
            file_hash TEXT NOT NULL REFERENCES files(hash),
            initiator_id TEXT NOT NULL,
            initiator_name TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            input BLOB NOT NULL,
            trace_metadata TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            started_at INTEGER,
            canceled_at INTEGER,
            completed_at INTEGER,
            worker_id TEXT,
            error TEXT NOT NULL DEFAULT '',
            error_code TEXT NOT NULL DEFAULT '',
            result BLOB,
            readme BLOB,
            template_variables BLOB,
            log_count INTEGER NOT NULL DEFAULT 0,
            log_bytes INTEGER NOT NULL DEFAULT 0,
            logs_overflowed INTEGER NOT NULL DEFAULT 0,
            workspace_id TEXT,
            workspace_owner_id TEXT,
            workspace_transition INTEGER,
            workspace_owner_groups TEXT,
            daily_cost INTEGER NOT NULL DEFAULT 0
        )
        """,
        # The claim and queue-position index: one seek finds a queue's head
        # however many jobs are pending, and it holds only pending jobs.
        """
        CREATE INDEX jobs_pending ON jobs (organization, provisioner, tags, priority DESC, seq)
        WHERE started_at IS NULL AND completed_at IS NULL
        """,
        """
        CREATE INDEX jobs_running ON jobs (updated_at)
        WHERE started_at IS NOT NULL AND completed_at IS NULL
        """,
        "CREATE INDEX jobs_worker ON jobs (worker_id) WHERE completed_at IS NULL",
        # Quota: the latest build of each of an owner's workspaces.
        """
        CREATE INDEX jobs_workspace ON jobs (organization, workspace_owner_id, workspace_id, seq)
        WHERE workspace_id IS NOT NULL
        """,
        # Every (organization, provisioner, tags) that has had a pending job: a
        # small table the scheduler reads instead of a DISTINCT over all jobs.
        """
        CREATE TABLE queues (
            organization TEXT NOT NULL,
            provisioner TEXT NOT NULL,
            tags TEXT NOT NULL,
            PRIMARY KEY (organization, provisioner, tags)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE job_logs (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            created_at INTEGER NOT NULL,
            source INTEGER NOT NULL,
            level INTEGER NOT NULL,
            stage TEXT NOT NULL,
            output TEXT NOT NULL
        )
        """,
        "CREATE INDEX job_logs_job ON job_logs (job_id, id)",
        """
        CREATE TABLE daemons (
            id TEXT PRIMARY KEY,
            organization TEXT NOT NULL,
            name TEXT NOT NULL,
            owner TEXT NOT NULL DEFAULT '',
            provisioners TEXT NOT NULL,
            tags TEXT NOT NULL,
            version TEXT NOT NULL DEFAULT '',
            api_version TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL,
            last_seen_at INTEGER NOT NULL,
            UNIQUE (organization, name, owner)
        )
        """,
        """
        CREATE TABLE quota_allowances (
            organization TEXT NOT NULL,
            subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'group')),
            subject TEXT NOT NULL,
            allowance INTEGER NOT NULL CHECK (allowance >= 0),
            PRIMARY KEY (organization, subject_kind, subject)
        ) WITHOUT ROWID
        """,
    ]
    for statement in statements:
        db.execute(statement)


@migrations(name="0002_daemon_id_drop_log_count")
def daemon_id_drop_log_count(db: Database) -> None:
    """One name for the daemon that holds a job: `daemon_id`, as everywhere else; and
    no `log_count`, which was written but never read (`log_bytes` is the budget)."""
    db.execute("ALTER TABLE jobs RENAME COLUMN worker_id TO daemon_id")
    db.execute("DROP INDEX jobs_worker")
    db.execute("CREATE INDEX jobs_daemon ON jobs (daemon_id) WHERE completed_at IS NULL")
    db.execute("ALTER TABLE jobs DROP COLUMN log_count")


@migrations(name="0003_daemon_stream_lease")
def daemon_stream_lease(db: Database) -> None:
    """Until when some process holds a stream open for each daemon (Unix ms, 0 if none
    ever did): every process serving the database renews it for its own streams, so
    each can tell that a daemon is connected to another (`provd.registry`)."""
    db.execute("ALTER TABLE daemons ADD COLUMN connected_until INTEGER NOT NULL DEFAULT 0")


@migrations(name="0004_daemon_keys")
def daemon_keys(db: Database) -> None:
    """Daemon keys (docs/keys.md), and which key each daemon used (`key_id`, empty for
    the pre-shared key). A daemon's name is unique within its key: the daemons table
    is rebuilt (SQLite cannot change a UNIQUE constraint in place) with
    (organization, name, owner, key_id) unique instead of (organization, name, owner)."""
    db.execute(
        """
        CREATE TABLE keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            organization TEXT NOT NULL,
            owner TEXT NOT NULL DEFAULT '',
            provisioners TEXT NOT NULL,
            tags TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            last_used_at INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute(
        """
        CREATE TABLE daemons_with_keys (
            id TEXT PRIMARY KEY,
            organization TEXT NOT NULL,
            name TEXT NOT NULL,
            owner TEXT NOT NULL DEFAULT '',
            provisioners TEXT NOT NULL,
            tags TEXT NOT NULL,
            version TEXT NOT NULL DEFAULT '',
            api_version TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL,
            last_seen_at INTEGER NOT NULL,
            connected_until INTEGER NOT NULL DEFAULT 0,
            key_id TEXT NOT NULL DEFAULT '',
            UNIQUE (organization, name, owner, key_id)
        )
        """
    )
    columns = (
        "id, organization, name, owner, provisioners, tags, version, api_version,"
        " created_at, last_seen_at, connected_until"
    )
    db.execute(f"INSERT INTO daemons_with_keys ({columns}) SELECT {columns} FROM daemons")
    db.execute("DROP TABLE daemons")
    db.execute("ALTER TABLE daemons_with_keys RENAME TO daemons")


@migrations(name="0005_retention_indexes")
def retention_indexes(db: Database) -> None:
    """What retention (`Store.purge_expired`) seeks by: completed jobs by completion
    time, and the jobs of a file, so that finding unreferenced files, and SQLite's
    foreign-key check when one is deleted, never scan the jobs."""
    db.execute("CREATE INDEX jobs_completed ON jobs (completed_at) WHERE completed_at IS NOT NULL")
    db.execute("CREATE INDEX jobs_file ON jobs (file_hash)")


@migrations(name="0006_queue_ranks")
def queue_ranks(db: Database) -> None:
    """Queue positions without counting the queue (provd/store/_ranks.py): each job's
    ordinal within its (queue, priority) level, the levels' counters and the marks.
    Existing jobs that have not completed are numbered in seq order, the running
    ones included (a release brings them back), each of those with a mark: it has
    left the pending jobs."""
    db.execute("ALTER TABLE jobs ADD COLUMN queue_ordinal INTEGER")
    db.execute(
        """
        CREATE TABLE queue_levels (
            organization TEXT NOT NULL,
            provisioner TEXT NOT NULL,
            tags TEXT NOT NULL,
            priority INTEGER NOT NULL,
            last INTEGER NOT NULL,
            head INTEGER NOT NULL,
            pending INTEGER NOT NULL,
            marks INTEGER NOT NULL,
            PRIMARY KEY (organization, provisioner, tags, priority)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE queue_marks (
            organization TEXT NOT NULL,
            provisioner TEXT NOT NULL,
            tags TEXT NOT NULL,
            priority INTEGER NOT NULL,
            ordinal INTEGER NOT NULL,
            PRIMARY KEY (organization, provisioner, tags, priority, ordinal)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        "UPDATE jobs SET queue_ordinal = n.ordinal FROM (SELECT seq, row_number() OVER"
        " (PARTITION BY organization, provisioner, tags, priority ORDER BY seq) AS ordinal"
        " FROM jobs WHERE completed_at IS NULL) AS n WHERE jobs.seq = n.seq"
    )
    db.execute(
        "INSERT INTO queue_levels (organization, provisioner, tags, priority, last, head,"
        " pending, marks) SELECT organization, provisioner, tags, priority, COUNT(*), 0,"
        " SUM(started_at IS NULL), SUM(started_at IS NOT NULL) FROM jobs"
        " WHERE completed_at IS NULL GROUP BY organization, provisioner, tags, priority"
    )
    db.execute(
        "INSERT INTO queue_marks (organization, provisioner, tags, priority, ordinal)"
        " SELECT organization, provisioner, tags, priority, queue_ordinal FROM jobs"
        " WHERE started_at IS NOT NULL AND completed_at IS NULL"
    )


@migrations(name="0007_log_chunks")
def log_chunks(db: Database) -> None:
    """A job's log in chunks, one row per batch of lines (provd/store/_log_chunks.py),
    instead of one row and one index entry per line. Each stored line becomes a chunk
    of one, keeping its id."""
    db.execute(
        """
        CREATE TABLE log_chunks (
            first_id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            last_id INTEGER NOT NULL,
            lines TEXT NOT NULL
        )
        """
    )
    db.execute(
        "INSERT INTO log_chunks (first_id, job_id, last_id, lines) SELECT id, job_id, id,"
        " json_array(json_array(created_at, source, level, stage, output)) FROM job_logs"
        " ORDER BY id"
    )
    db.execute("DROP TABLE job_logs")
    db.execute("CREATE INDEX log_chunks_job ON log_chunks (job_id, last_id)")
