"""What gzip costs and saves on provd's own messages, to pick the size under which a
response goes plain (provd/rpc/compression.py, COMPRESS_MIN_BYTES).

    .venv/bin/python bench/compression.py [--repeat 2000]

For each message, as provd sends it: its encoded size, its gzipped size (level 6,
connectrpc's), and the loop time gzip takes (median of 5 rounds of --repeat calls),
side by side with what the response path costs now (plain under the threshold). The
messages: UpdateJobResponse (empty), a Job as GetJob returns it, an AcquiredJob
carrying the hello template, a JobLog line, and ListJobs pages of 10 and 50 jobs with
distinct ids (what repeats in a page compresses; ids and hashes do not).
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import emit, table, template_tar
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.rpc.compression import COMPRESS_MIN_BYTES


def _job() -> pb.Job:
    return pb.Job(
        id=str(uuid.uuid4()),
        provisioner="terraform",
        organization="default",
        file_hash=uuid.uuid4().hex * 2,
        tags={"scope": "organization", "owner": "", "os": "linux"},
        status=pb.JOB_STATUS_PENDING,
        queue_position=3,
        queue_size=10,
        initiator=pb.Initiator(user_id=str(uuid.uuid4()), user_name="alice"),
    )


def messages() -> dict[str, bytes]:
    return {
        "UpdateJobResponse": pd.UpdateJobResponse().SerializeToString(),
        "Job (GetJob)": _job().SerializeToString(),
        "JobLog line": pb.JobLog(
            id=1234, stage="Apply", output="aws_instance.web: Creating... [10s elapsed]"
        ).SerializeToString(),
        "ListJobs, 10 jobs": pb.ListJobsResponse(
            jobs=[_job() for _ in range(10)]
        ).SerializeToString(),
        "AcquiredJob (hello)": pd.AcquiredJob(
            job_id=str(uuid.uuid4()), provisioner="echo", template_source_archive=template_tar()
        ).SerializeToString(),
        "ListJobs, 50 jobs": pb.ListJobsResponse(
            jobs=[_job() for _ in range(50)]
        ).SerializeToString(),
    }


def gzip_seconds(data: bytes, repeat: int) -> float:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            gzip.compress(data, compresslevel=6)
        rounds.append((time.perf_counter() - started) / repeat)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    rows, results = [], {}
    for name, data in messages().items():
        zipped = len(gzip.compress(data, compresslevel=6))
        cost_us = gzip_seconds(data, args.repeat) * 1e6
        plain = len(data) < COMPRESS_MIN_BYTES
        rows.append(
            [
                name,
                len(data),
                zipped,
                f"{zipped / max(len(data), 1):.2f}",
                f"{cost_us:.1f}",
                "plain" if plain else "gzip",
                "0.0" if plain else f"{cost_us:.1f}",
            ]
        )
        results[name] = {"bytes": len(data), "gzipped": zipped, "gzip_us": round(cost_us, 1)}
    table(
        f"gzip on provd's messages (threshold {COMPRESS_MIN_BYTES} B)",
        ["message", "bytes", "gzipped", "ratio", "gzip µs", "now", "now µs"],
        rows,
    )
    emit({"bench": "compression", "threshold_bytes": COMPRESS_MIN_BYTES, "messages": results})


if __name__ == "__main__":
    main()
