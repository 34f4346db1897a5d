"""Every hypercorn fix, installed together: `apply()` before serving."""

from __future__ import annotations

from provd._compat import hypercorn_h2, hypercorn_h11, hypercorn_tasks, hypercorn_tcp


def apply() -> None:
    """Install all fixes (idempotent)."""
    hypercorn_h2.apply()
    hypercorn_h11.apply()
    hypercorn_tasks.apply()
    hypercorn_tcp.apply()
