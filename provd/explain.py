"""Why is my job pending? Words for the answer, from what connected daemons offer:
those that are live on any process serving the database (`DaemonRegistry.live_daemons`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from provd.model import UNTAGGED, Daemon, Queue, tags_match


def describe_tags(tags: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) + "}"


def capable_daemons(queue: Queue, daemons: Sequence[Daemon]) -> list[Daemon]:
    return [daemon for daemon in daemons if daemon.can_run(queue)]


def explain_unroutable(queue: Queue, daemons: Sequence[Daemon]) -> str | None:
    """None if a connected daemon can run jobs of `queue`; otherwise what is missing,
    naming the closest daemon so the fix is obvious."""
    if capable_daemons(queue, daemons):
        return None
    wanted = (
        f"provisioner {queue.provisioner!r} with tags {describe_tags(queue.tags)}"
        f" in organization {queue.organization!r}"
    )
    in_org = [d for d in daemons if d.organization == queue.organization]
    if not in_org:
        return f"no daemon is connected in organization {queue.organization!r} (it needs {wanted})"
    with_provisioner = [d for d in in_org if queue.provisioner in d.provisioners]
    if not with_provisioner:
        offered = sorted({p for d in in_org for p in d.provisioners})
        return (
            f"no connected daemon offers provisioner {queue.provisioner!r}"
            f" (connected daemons offer {', '.join(offered)}); it needs {wanted}"
        )
    closest = min(with_provisioner, key=lambda d: (len(_tag_gaps(queue.tags, d.tags)), d.name))
    gaps = _tag_gaps(queue.tags, closest.tags)
    return (
        f"no connected daemon has the tags it needs: it needs {wanted};"
        f" the closest, {closest.name!r}, has {describe_tags(closest.tags)} ({'; '.join(gaps)})"
    )


def _tag_gaps(job_tags: Mapping[str, str], daemon_tags: Mapping[str, str]) -> list[str]:
    if dict(job_tags) == UNTAGGED:
        extra = {k: v for k, v in daemon_tags.items() if k not in UNTAGGED}
        gaps = (
            []
            if tags_match(job_tags, daemon_tags)
            else ["an untagged job needs an untagged daemon"]
        )
        if extra:
            gaps.append(f"extra tags {describe_tags(extra)}")
        return gaps or ["different scope or owner"]
    return [
        f"{key}={value!s} missing"
        if key not in daemon_tags
        else f"{key}={daemon_tags[key]} instead of {value}"
        for key, value in sorted(job_tags.items())
        if daemon_tags.get(key) != value
    ]
