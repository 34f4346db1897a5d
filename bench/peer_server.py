"""The baseline for bench/peer.py: the obvious hand-rolled log sink.

    python bench/peer_server.py DB_PATH

A minimal `grpc.aio` server over the same protos (provd's generated messages, no
stubs needed) with one method, `provisionerd.ProvisionerDaemon/UpdateJob`: it
appends the request's lines to a `job_logs` table (the same columns as provd's) in
one transaction on one sqlite3 connection, WAL, `synchronous=FULL`, and answers
`canceled: false`. No authentication, no holder check, no log cap, no heartbeat
column: what someone writes in an afternoon. The SQLite calls run right in the
handler, on the event loop: the simplest code, and with a single connection
nothing could run them in parallel anyway.

It listens on 127.0.0.1 on a free port, prints "listening on http://HOST:PORT" and
stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys

import grpc

from provd.gen.provisionerd import provisionerd_pb2 as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS job_logs (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    source INTEGER NOT NULL,
    level INTEGER NOT NULL,
    stage TEXT NOT NULL,
    output TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_logs_job ON job_logs (job_id, id);
"""
INSERT = (
    "INSERT INTO job_logs (job_id, created_at, source, level, stage, output)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def open_db(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.executescript(SCHEMA)
    return conn


async def serve(path: str) -> None:
    conn = open_db(path)

    async def update_job(
        request: pd.UpdateJobRequest, context: grpc.aio.ServicerContext
    ) -> pd.UpdateJobResponse:
        with conn:  # one transaction: BEGIN … COMMIT (fsync)
            conn.executemany(
                INSERT,
                [
                    (request.job_id, log.created_at, log.source, log.level, log.stage, log.output)
                    for log in request.logs
                ],
            )
        return pd.UpdateJobResponse(canceled=False)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "provisionerd.ProvisionerDaemon",
                {
                    "UpdateJob": grpc.unary_unary_rpc_method_handler(
                        update_job,
                        request_deserializer=pd.UpdateJobRequest.FromString,
                        response_serializer=pd.UpdateJobResponse.SerializeToString,
                    )
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"peer listening on http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)
    conn.close()


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    asyncio.run(serve(sys.argv[1]))


if __name__ == "__main__":
    main()
