"""The SQL for provisioner daemons and quota: plain functions of a connection."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

from provd.errors import FailedPrecondition
from provd.model import Allowance, Daemon, DaemonRecord, JobType, QuotaDecision
from provd.store import DaemonPresence
from provd.store._rules import DESTROY
from provd.store._sql_jobs import held_job


def upsert_daemon(conn: sqlite3.Connection, daemon: Daemon, now: int) -> None:
    known = conn.execute(
        "SELECT id FROM daemons WHERE organization = ? AND name = ? AND owner = ? AND key_id = ?",
        (daemon.organization, daemon.name, daemon.owner, daemon.key_id),
    ).fetchone()
    if known is not None and known["id"] != daemon.id:
        # As on every backend: a name is unique within its organization, owner and key.
        raise ValueError(
            f"daemon {daemon.name!r} of {daemon.organization!r} (owner"
            f" {daemon.owner!r}, key {daemon.key_id!r}) is already stored with id {known['id']}"
        )
    conn.execute(
        "INSERT INTO daemons (id, organization, name, owner, provisioners, tags, version,"
        " api_version, created_at, last_seen_at, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET provisioners = excluded.provisioners,"
        " tags = excluded.tags, version = excluded.version,"
        " api_version = excluded.api_version,"
        " last_seen_at = MAX(daemons.last_seen_at, excluded.last_seen_at)",
        (
            daemon.id,
            daemon.organization,
            daemon.name,
            daemon.owner,
            json.dumps(list(daemon.provisioners)),
            json.dumps(dict(sorted(daemon.tags.items()))),
            daemon.version,
            daemon.api_version,
            now,
            now,
            daemon.key_id,
        ),
    )


def touch_daemons(
    conn: sqlite3.Connection, last_seen: Mapping[str, int], connected_until: Mapping[str, int]
) -> None:
    """Move last-seen times and stream leases forward, never back."""
    if last_seen:
        conn.executemany(
            "UPDATE daemons SET last_seen_at = MAX(last_seen_at, ?) WHERE id = ?",
            [(seen, daemon_id) for daemon_id, seen in last_seen.items()],
        )
    if connected_until:
        conn.executemany(
            "UPDATE daemons SET connected_until = MAX(connected_until, ?) WHERE id = ?",
            [(until, daemon_id) for daemon_id, until in connected_until.items()],
        )


def list_daemons(conn: sqlite3.Connection) -> list[DaemonRecord]:
    return [presence.record for presence in daemon_presence(conn)]


def daemon_presence(conn: sqlite3.Connection) -> list[DaemonPresence]:
    rows = conn.execute(
        "SELECT id, organization, name, owner, provisioners, tags, version, api_version,"
        " created_at, last_seen_at, connected_until, key_id FROM daemons"
        " ORDER BY organization, name, owner, key_id"
    )
    return [DaemonPresence(_record(row), row["connected_until"]) for row in rows]


def _record(row: sqlite3.Row) -> DaemonRecord:
    return DaemonRecord(
        daemon=Daemon(
            id=row["id"],
            organization=row["organization"],
            name=row["name"],
            owner=row["owner"],
            provisioners=tuple(json.loads(row["provisioners"])),
            tags=json.loads(row["tags"]),
            version=row["version"],
            api_version=row["api_version"],
            key_id=row["key_id"],
        ),
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
    )


# -- quota ---------------------------------------------------------------------


def set_allowance(conn: sqlite3.Connection, allowance: Allowance) -> None:
    conn.execute(
        "INSERT INTO quota_allowances (organization, subject_kind, subject, allowance)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (organization, subject_kind, subject)"
        " DO UPDATE SET allowance = excluded.allowance",
        (allowance.organization, allowance.kind, allowance.subject, allowance.allowance),
    )


def delete_allowance(conn: sqlite3.Connection, organization: str, kind: str, subject: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM quota_allowances WHERE organization = ? AND subject_kind = ? AND subject = ?",
        (organization, kind, subject),
    )
    return cursor.rowcount > 0


def list_allowances(conn: sqlite3.Connection, organization: str) -> list[Allowance]:
    rows = conn.execute(
        "SELECT organization, subject_kind, subject, allowance FROM quota_allowances"
        " WHERE organization = ? ORDER BY subject_kind, subject",
        (organization,),
    )
    return [Allowance(*row) for row in rows]


def budget(
    conn: sqlite3.Connection, organization: str, user_id: str, groups: tuple[str, ...]
) -> int:
    """The user's own allowance plus their groups'; -1 when the organization sets none."""
    (configured,) = conn.execute(
        "SELECT COUNT(*) FROM quota_allowances WHERE organization = ?", (organization,)
    ).fetchone()
    if not configured:
        return -1
    (total,) = conn.execute(
        "SELECT COALESCE(SUM(allowance), 0) FROM quota_allowances WHERE organization = ?"
        " AND ((subject_kind = 'user' AND subject = ?)"
        f" OR (subject_kind = 'group' AND subject IN ({', '.join('?' * len(groups))})))",
        (organization, user_id, *groups),
    ).fetchone()
    return int(total)


def consumed(
    conn: sqlite3.Connection, organization: str, owner_id: str, excluding_job: str = ""
) -> int:
    """Daily cost of the latest build of each of the owner's live workspaces."""
    (total,) = conn.execute(
        "SELECT COALESCE(SUM(daily_cost), 0) FROM jobs AS j"
        " WHERE organization = :org AND workspace_owner_id = :owner"
        " AND workspace_id IS NOT NULL AND id != :excluding"
        " AND workspace_transition != :destroy"
        " AND seq = (SELECT MAX(seq) FROM jobs AS k WHERE k.organization = j.organization"
        " AND k.workspace_owner_id = j.workspace_owner_id AND k.workspace_id = j.workspace_id)",
        {"org": organization, "owner": owner_id, "excluding": excluding_job, "destroy": DESTROY},
    ).fetchone()
    return int(total)


def commit_quota(
    conn: sqlite3.Connection, job_id: str, daemon_id: str, daily_cost: int
) -> QuotaDecision:
    """Allow the build's cost unless it would take its owner over budget while not
    lowering the workspace's cost; record it when allowed."""
    job = held_job(conn, job_id, daemon_id)
    if job.type is not JobType.WORKSPACE_BUILD:
        raise FailedPrecondition(
            f"jobId: job {job_id} is a {job.type.value}; only workspace builds commit quota"
        )
    if job.workspace is None:
        raise FailedPrecondition(
            f"jobId: job {job_id} has no workspaceId in its metadata, so its cost cannot be"
            " accounted to a workspace"
        )
    ws = job.workspace
    limit = budget(conn, job.organization, ws.owner_id, ws.owner_groups)
    used = consumed(conn, job.organization, ws.owner_id, excluding_job=job_id)
    previous = conn.execute(
        "SELECT daily_cost FROM jobs WHERE organization = ? AND workspace_owner_id = ?"
        " AND workspace_id = ? AND seq < ? ORDER BY seq DESC LIMIT 1",
        (job.organization, ws.owner_id, ws.workspace_id, job.seq),
    ).fetchone()
    net_increase = previous is None or daily_cost >= previous["daily_cost"]
    if limit >= 0 and used + daily_cost > limit and net_increase:
        return QuotaDecision(ok=False, credits_consumed=used, budget=limit)
    conn.execute("UPDATE jobs SET daily_cost = ? WHERE id = ?", (daily_cost, job_id))
    return QuotaDecision(ok=True, credits_consumed=used + daily_cost, budget=limit)
