"""What the PostgreSQL store's callers see for psycopg's errors (no server needed)."""

from __future__ import annotations

import pytest

from provd.errors import InvalidArgument

psycopg = pytest.importorskip("psycopg")


def test_text_with_nul_is_invalid_argument_without_the_dsn() -> None:
    from provd.store.postgres import translate

    refused = psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    error = translate(refused, "postgresql://provd:s3cret@db/provd")
    assert isinstance(error, InvalidArgument)
    assert "NUL" in str(error) and "s3cret" not in str(error)
    assert error.__cause__ is None
