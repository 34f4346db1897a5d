"""The PostgreSQL schema, as versioned migrations applied in order at start-up.

Append new migrations at the end; never edit one that has shipped. Each applied
migration is recorded in `provd_migrations`. All pending migrations run in one
transaction that first takes a transaction-scoped advisory lock, so replicas that
start at once apply them one after another: the first migrates, the others wait for
its commit and then find nothing left to do. A failed upgrade rolls back whole.
"""

from __future__ import annotations

from typing import Any

import psycopg

from provd.errors import StoreUnusable
from provd.store._log_chunks import CHUNK_LINES

MIGRATIONS_TABLE = "provd_migrations"
# pg_advisory_xact_lock's key: the bytes "provd-mg" as a bigint, unlikely to collide.
LOCK_KEY = int.from_bytes(b"provd-mg", "big") - (1 << 63)

# How far apart the ids of log chunks are: more than a chunk's lines.
LOG_CHUNK_ID_STEP = 1024
assert CHUNK_LINES <= LOG_CHUNK_ID_STEP

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "0001_initial",
        [
            """
            CREATE TABLE files (
                hash TEXT PRIMARY KEY,
                size BIGINT NOT NULL,
                mimetype TEXT NOT NULL,
                data BYTEA NOT NULL,
                created_at BIGINT NOT NULL
            )
            """,
            # seq: creation order, the tie-breaker of every queue.
            """
            CREATE TABLE jobs (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                provisioner TEXT NOT NULL,
                organization TEXT NOT NULL,
                tags TEXT NOT NULL,
                file_hash TEXT NOT NULL REFERENCES files(hash),
                initiator_id TEXT NOT NULL,
                initiator_name TEXT NOT NULL,
                priority BIGINT NOT NULL DEFAULT 0,
                input BYTEA NOT NULL,
                trace_metadata TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                started_at BIGINT,
                canceled_at BIGINT,
                completed_at BIGINT,
                daemon_id TEXT,
                error TEXT NOT NULL DEFAULT '',
                error_code TEXT NOT NULL DEFAULT '',
                result BYTEA,
                readme BYTEA,
                template_variables BYTEA,
                log_bytes BIGINT NOT NULL DEFAULT 0,
                logs_overflowed BOOLEAN NOT NULL DEFAULT FALSE,
                workspace_id TEXT,
                workspace_owner_id TEXT,
                workspace_transition INTEGER,
                workspace_owner_groups TEXT,
                daily_cost BIGINT NOT NULL DEFAULT 0
            )
            """,
            # The claim and queue-position index: only pending jobs, each queue's
            # head one seek away.
            """
            CREATE INDEX jobs_pending ON jobs (organization, provisioner, tags, priority DESC, seq)
            WHERE started_at IS NULL AND completed_at IS NULL
            """,
            """
            CREATE INDEX jobs_running ON jobs (updated_at)
            WHERE started_at IS NOT NULL AND completed_at IS NULL
            """,
            "CREATE INDEX jobs_daemon ON jobs (daemon_id) WHERE completed_at IS NULL",
            """
            CREATE INDEX jobs_workspace
            ON jobs (organization, workspace_owner_id, workspace_id, seq)
            WHERE workspace_id IS NOT NULL
            """,
            """
            CREATE TABLE queues (
                organization TEXT NOT NULL,
                provisioner TEXT NOT NULL,
                tags TEXT NOT NULL,
                PRIMARY KEY (organization, provisioner, tags)
            )
            """,
            """
            CREATE TABLE job_logs (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                job_id TEXT NOT NULL REFERENCES jobs(id),
                created_at BIGINT NOT NULL,
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
                created_at BIGINT NOT NULL,
                last_seen_at BIGINT NOT NULL,
                UNIQUE (organization, name, owner)
            )
            """,
            """
            CREATE TABLE quota_allowances (
                organization TEXT NOT NULL,
                subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'group')),
                subject TEXT NOT NULL,
                allowance BIGINT NOT NULL CHECK (allowance >= 0),
                PRIMARY KEY (organization, subject_kind, subject)
            )
            """,
        ],
    ),
    (
        # Until when some process holds a stream open for each daemon (Unix ms, 0 if
        # none ever did), renewed by every replica for its own streams (provd.registry).
        # A constant default: PostgreSQL adds the column without rewriting the table.
        "0002_daemon_stream_lease",
        ["ALTER TABLE daemons ADD COLUMN connected_until BIGINT NOT NULL DEFAULT 0"],
    ),
    (
        # Daemon keys (docs/keys.md), and which key each daemon used (empty for the
        # pre-shared key); a daemon's name is unique within its key. The constraint
        # dropped is 0001's, by the name PostgreSQL gave it. Replicas that start at
        # once run this one after another under `migrate`'s advisory lock.
        "0003_daemon_keys",
        [
            """
            CREATE TABLE keys (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                organization TEXT NOT NULL,
                owner TEXT NOT NULL DEFAULT '',
                provisioners TEXT NOT NULL,
                tags TEXT NOT NULL,
                secret_sha256 TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                last_used_at BIGINT NOT NULL DEFAULT 0
            )
            """,
            "ALTER TABLE daemons ADD COLUMN key_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE daemons DROP CONSTRAINT daemons_organization_name_owner_key",
            "ALTER TABLE daemons ADD CONSTRAINT daemons_organization_name_owner_key_id_key"
            " UNIQUE (organization, name, owner, key_id)",
        ],
    ),
    (
        # What retention (`Store.purge_expired`) seeks by: completed jobs by completion
        # time, and the jobs of a file (unreferenced files, and the foreign-key check
        # when one is deleted).
        "0004_retention_indexes",
        [
            "CREATE INDEX jobs_completed ON jobs (completed_at) WHERE completed_at IS NOT NULL",
            "CREATE INDEX jobs_file ON jobs (file_hash)",
        ],
    ),
    # Queue positions without counting the queue (provd/store/_ranks.py). Jobs that
    # have not completed are numbered in seq order per level, the running ones (a
    # release brings them back) each with a mark: they have left the pending jobs.
    (
        "0005_queue_ranks",
        [
            "ALTER TABLE jobs ADD COLUMN queue_ordinal BIGINT",
            """
            CREATE TABLE queue_levels (
                organization TEXT NOT NULL,
                provisioner TEXT NOT NULL,
                tags TEXT NOT NULL,
                priority BIGINT NOT NULL,
                last BIGINT NOT NULL,
                head BIGINT NOT NULL,
                pending BIGINT NOT NULL,
                marks BIGINT NOT NULL,
                PRIMARY KEY (organization, provisioner, tags, priority)
            )
            """,
            """
            CREATE TABLE queue_marks (
                organization TEXT NOT NULL,
                provisioner TEXT NOT NULL,
                tags TEXT NOT NULL,
                priority BIGINT NOT NULL,
                ordinal BIGINT NOT NULL,
                PRIMARY KEY (organization, provisioner, tags, priority, ordinal)
            )
            """,
            """
            UPDATE jobs SET queue_ordinal = n.ordinal FROM (SELECT seq, row_number() OVER
            (PARTITION BY organization, provisioner, tags, priority ORDER BY seq) AS ordinal
            FROM jobs WHERE completed_at IS NULL) AS n WHERE jobs.seq = n.seq
            """,
            """
            INSERT INTO queue_levels (organization, provisioner, tags, priority, last, head,
            pending, marks) SELECT organization, provisioner, tags, priority, COUNT(*), 0,
            COUNT(*) FILTER (WHERE started_at IS NULL),
            COUNT(*) FILTER (WHERE started_at IS NOT NULL) FROM jobs
            WHERE completed_at IS NULL GROUP BY organization, provisioner, tags, priority
            """,
            """
            INSERT INTO queue_marks (organization, provisioner, tags, priority, ordinal)
            SELECT organization, provisioner, tags, priority, queue_ordinal FROM jobs
            WHERE started_at IS NOT NULL AND completed_at IS NULL
            """,
        ],
    ),
    # A job's log in chunks, one row per batch of lines (provd/store/_log_chunks.py).
    # Chunk ids step by LOG_CHUNK_ID_STEP so that a chunk's lines (first_id, first_id
    # + 1, ...) never reach the next chunk's. Each stored line becomes a chunk of one.
    (
        "0006_log_chunks",
        [
            f"CREATE SEQUENCE log_chunk_ids INCREMENT BY {LOG_CHUNK_ID_STEP}",
            """
            CREATE TABLE log_chunks (
                first_id BIGINT PRIMARY KEY,
                job_id TEXT NOT NULL REFERENCES jobs(id),
                last_id BIGINT NOT NULL,
                lines TEXT NOT NULL
            )
            """,
            "ALTER SEQUENCE log_chunk_ids OWNED BY log_chunks.first_id",
            """
            INSERT INTO log_chunks (first_id, job_id, last_id, lines) SELECT id, job_id, id,
            json_build_array(json_build_array(created_at, source, level, stage, output))::text
            FROM job_logs
            """,
            "SELECT setval('log_chunk_ids', COALESCE((SELECT max(last_id) FROM log_chunks), 0)"
            " + 1, false)",
            "DROP TABLE job_logs",
            "CREATE INDEX log_chunks_job ON log_chunks (job_id, last_id)",
        ],
    ),
]


def known_migrations() -> list[str]:
    return [name for name, _ in MIGRATIONS]


def migrate(conn: psycopg.Connection[Any], now: int, where: str) -> list[str]:
    """Bring the schema of `conn`'s database (its current schema) up to date; return
    the names of the migrations applied now. `where` names the database in errors.

    Raises `StoreUnusable` for a database a newer provd migrated, or one that holds
    another program's tables and no provd schema. `conn` must be in autocommit mode.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        exists = conn.execute(
            "SELECT to_regclass(quote_ident(current_schema()) || '.' || %s) IS NOT NULL",
            (MIGRATIONS_TABLE,),
        ).fetchone()
        applied: list[str] = []
        if exists is not None and _first(exists):
            applied = [
                _first(row)
                for row in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY name")
            ]
        else:
            tables = conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
            ).fetchone()
            if tables is not None and _first(tables):
                raise StoreUnusable(
                    f"the PostgreSQL database {where} has tables but no provd schema: it is"
                    " another program's; point provd at an empty database (or schema) of its own"
                )
            conn.execute(
                f"CREATE TABLE {MIGRATIONS_TABLE} (name TEXT PRIMARY KEY,"
                " applied_at BIGINT NOT NULL)"
            )
        known = known_migrations()
        if unknown := [name for name in applied if name not in known]:
            from provd import __version__

            raise StoreUnusable(
                f"the PostgreSQL database {where} was migrated by a newer provd: it has schema"
                f" migration(s) {', '.join(unknown)}, which provd {__version__} does not know;"
                " run a provd at least as new as the one that migrated it"
            )
        done = set(applied)
        ran: list[str] = []
        for name, statements in MIGRATIONS:
            if name in done:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (%s, %s)", (name, now)
            )
            ran.append(name)
        return ran


def _first(row: Any) -> Any:
    """A row's first value whatever its row factory (tuple or dict)."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
