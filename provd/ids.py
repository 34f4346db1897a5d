"""Job ids: what the service accepts as one, in one place for every caller."""

from __future__ import annotations

import uuid

from provd.errors import InvalidArgument


def parse_job_id(value: str, field: str) -> str:
    """`value` as a job id (a UUID) in canonical lower-case form; `InvalidArgument`
    naming `field` (its JSON name) if it is missing or not a UUID."""
    if not value:
        raise InvalidArgument(f"{field}: a job id is required")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"{field}: {value[:80]!r} is not a job id (a UUID)") from None
