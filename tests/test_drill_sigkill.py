"""The SIGKILL drill: kill -9 `provd serve` again and again while job creators and
provisioner daemons work, restart it on the same file, and count what it had
acknowledged: 0 jobs lost, 0 log lines lost, 0 jobs delivered twice.

The load runs for a random time before each kill; the seed is printed (set
PROVD_DRILL_SEED to replay a run, PROVD_DRILL_ROUNDS for more rounds).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest
import trio

from tests.drill import Ledger, Load, audit, free_port
from tests.processes import ServerProcess, start_server

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("PROVD_DRILL_ROUNDS", "5"))
CREATORS = 3
DAEMONS = 4
LOAD_SECONDS = (0.3, 1.5)  # how long the load runs before each kill
DRILL_TIMEOUT = 120  # a hang guard; a run takes about 20 s


async def start_on(nursery: trio.Nursery, db: Path, port: int) -> ServerProcess:
    server = await start_server(nursery, db, listen=f"127.0.0.1:{port}")
    assert server.url == f"http://127.0.0.1:{port}", server.url
    return server


async def test_sigkill_under_load_loses_nothing_acknowledged(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    seed = int(os.environ.get("PROVD_DRILL_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    print(f"\nSIGKILL drill: seed {seed}, {ROUNDS} rounds")
    db = tmp_path / "provd.db"
    port = free_port()
    ledger = Ledger()
    started = time.monotonic()
    with trio.fail_after(DRILL_TIMEOUT):
        server = await start_on(nursery, db, port)
        load = Load(server.url, ledger)
        await load.upload()
        kills: list[dict[str, object]] = []
        try:
            async with trio.open_nursery() as workers:
                for i in range(CREATORS):
                    workers.start_soon(load.creator, f"creator-{i}")
                for i in range(DAEMONS):
                    workers.start_soon(load.daemon, f"drill-daemon-{i}")
                for round_number in range(1, ROUNDS + 1):
                    duration = rng.uniform(*LOAD_SECONDS)
                    await trio.sleep(duration)  # the drill's one deliberate wait
                    acknowledged = (len(ledger.jobs), ledger.acknowledged_lines)
                    os.kill(server.process.pid, signal.SIGKILL)
                    assert await server.wait() == -signal.SIGKILL, server.output.decode()
                    kills.append(
                        {
                            "round": round_number,
                            "load_seconds": round(duration, 3),
                            "jobs_acknowledged_before": acknowledged[0],
                            "lines_acknowledged_before": acknowledged[1],
                        }
                    )
                    server = await start_on(nursery, db, port)
                load.stop.set()  # the clients drain against the restarted server
        finally:
            load.stop.set()
        result = await audit(server.url, ledger)
    wall = time.monotonic() - started
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0, server.output.decode()

    job_counts = Counter(job_id for _, job_id in ledger.deliveries).values()
    figures = {
        "seed": seed,
        "rounds": ROUNDS,
        "creators": CREATORS,
        "daemons": DAEMONS,
        "jobs_acknowledged": len(ledger.jobs),
        "log_lines_acknowledged": ledger.acknowledged_lines,
        "completions_acknowledged": len(ledger.completed),
        "deliveries": len(ledger.deliveries),
        "jobs_delivered": len(job_counts),
        "duplicates": sum(n - 1 for n in job_counts),
        "jobs_lost": len(result.lost_jobs),
        "log_lines_lost": result.lost_line_count,
        "logs_out_of_order": len(result.disordered),
        "completions_lost": len(result.lost_completions),
        "delivered_then_pending": len(result.delivered_then_pending),
        "anomalies": len(ledger.anomalies),
        "transient_errors": dict(ledger.transient),
        "wall_seconds": round(wall, 1),
        "kills": kills,
    }
    (tmp_path / "drill.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    print(
        f"SIGKILL drill (seed {seed}): {ROUNDS} kills, {len(ledger.jobs)} jobs,"
        f" {ledger.acknowledged_lines} log lines and {len(ledger.completed)} completions"
        f" acknowledged, {len(ledger.deliveries)} deliveries; lost {len(result.lost_jobs)}"
        f" jobs, {result.lost_line_count} lines, {len(result.lost_completions)} completions;"
        f" {figures['duplicates']} duplicates; {wall:.1f} s"
    )

    details = asdict(result) | {"anomalies": ledger.anomalies}
    assert ledger.jobs and ledger.acknowledged_lines and ledger.deliveries, figures
    assert not result.lost_jobs, details
    assert not result.lost_lines, details
    assert not result.disordered, details
    assert not result.lost_completions, details
    assert not result.duplicates, details
    assert not result.delivered_then_pending, details
    assert not ledger.anomalies, details
