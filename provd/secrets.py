"""Where provd keeps its files, and the admin token and daemon PSK: from the
environment, or generated once and kept beside the database (mode 0600) where the
CLI on the same machine finds them."""

from __future__ import annotations

import os
from pathlib import Path

ADMIN_TOKEN_FILE = "admin-token"
DAEMON_PSK_FILE = "daemon-psk"


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/provd`, else `~/.local/share/provd`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "provd"


def default_db_path() -> Path:
    return default_data_dir() / "provd.db"


POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(value: str) -> bool:
    """Whether `value` (what `--db` got) names a PostgreSQL database, not a file."""
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.lower() in POSTGRES_SCHEMES


def credentials_db_path(db: str | None) -> Path:
    """The database file beside which the generated credentials live, for `--db`: the
    file itself, or for none or a PostgreSQL URL the default data directory's (where
    `provd serve --db postgresql://...` keeps them)."""
    if not db or is_postgres_url(db):
        return default_db_path().expanduser().resolve()
    return Path(db).expanduser().resolve()


def read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def load_or_create_secret(path: Path) -> str:
    """The secret stored at `path`, creating it (0600, never overwritten) if absent."""
    existing = read_secret(path)
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    # Imported here: `secrets` pulls in hashlib (OpenSSL) and random, ~19 ms, which the
    # commands that only read a secret (every admin command) do not need.
    import secrets

    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its secret
        raced = read_secret(path)
        if raced is None:
            raise RuntimeError(f"{path} exists but holds no secret; remove it") from None
        return raced
    with os.fdopen(fd, "w") as file:
        file.write(value + "\n")
        file.flush()
        os.fsync(file.fileno())
    return value


def secret_path(db_path: Path, name: str) -> Path:
    return db_path.parent / name
