"""The `provd daemon` command: flags and environment to `DaemonSettings`, signals
to a graceful stop.

The daemon itself (trio, connectrpc, the runner) is imported when the command runs,
so that `provd daemon --help` and the rest of the CLI do not pay for it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from provd.protocol import DEFAULT_URL, KEY_PREFIX
from provd.secrets import DAEMON_PSK_FILE, credentials_db_path, read_secret, secret_path

if TYPE_CHECKING:
    from connectrpc.errors import ConnectError

    from provd.client.daemon.runner import DaemonSettings


def _parse_tags(values: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            key, sep, tag_value = item.partition("=")
            if not sep or not key.strip():
                raise click.BadParameter(f"{item!r} is not key=value", param_hint="--tag")
            tags[key.strip()] = tag_value.strip()
    return tags


def _join_urls(values: tuple[str, ...]) -> str:
    """Repeated and comma-separated --url values as one comma-separated list."""
    urls = [url.strip() for value in values for url in value.split(",") if url.strip()]
    if not urls:
        raise click.BadParameter("no URL given", param_hint="--url")
    return ",".join(urls)


def _resolve_key(key_file: Path | None) -> str:
    """The daemon key from --key-file, else PROVD_DAEMON_KEY; "" if neither is given."""
    if key_file is not None:
        try:
            key = key_file.read_text().strip()
        except OSError as error:
            raise click.BadParameter(
                f"cannot read {key_file}: {error.strerror}", param_hint="--key-file"
            ) from None
        where, hint = str(key_file), "--key-file"
        if not key:
            raise click.BadParameter(f"{where} is empty", param_hint=hint)
    else:
        key = os.environ.get("PROVD_DAEMON_KEY", "").strip()
        where, hint = "PROVD_DAEMON_KEY", "PROVD_DAEMON_KEY"
    if key and not key.startswith(KEY_PREFIX):
        raise click.BadParameter(
            f"{where} does not hold a daemon key ({KEY_PREFIX}…, as 'provd keys create' prints it)",
            param_hint=hint,
        )
    return key


def _resolve_psk(psk: str | None, db_path: str | None) -> str:
    if psk:
        return psk
    path = secret_path(credentials_db_path(db_path), DAEMON_PSK_FILE)
    found = read_secret(path)
    if found is None:
        raise click.UsageError(
            f"no daemon key: pass --psk, set PROVD_DAEMON_PSK, or run 'provd serve' on this"
            f" machine first (it writes {path})"
        )
    return found


@click.command("daemon")
@click.option(
    "--url",
    "urls",
    multiple=True,
    envvar="PROVD_URL",
    default=(DEFAULT_URL,),
    show_default=True,
    help="The provd server to take jobs from; repeat it (or separate with commas) to"
    " name replicas in order of preference: the daemon moves to the next one when"
    " one stops answering.",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A file holding a daemon key ('provd keys create' prints it), or the key itself"
    " in PROVD_DAEMON_KEY. provd takes the organization, owner and tags from it; it is"
    " sent instead of the pre-shared key.",
)
@click.option(
    "--psk",
    envvar="PROVD_DAEMON_PSK",
    default=None,
    help="The daemon pre-shared key, when no daemon key is given"
    "  [default: the daemon-psk file beside --db]",
)
@click.option(
    "--db",
    "db_path",
    envvar="PROVD_DB",
    metavar="PATH|URL",
    default=None,
    help="Where a local 'provd serve' keeps its database, to find the key (for a"
    " postgresql:// URL, the default data directory's).",
)
@click.option(
    "--name",
    envvar="PROVD_DAEMON_NAME",
    default=None,
    help="A stable name for this daemon  [default: the host name]",
)
@click.option(
    "--provisioners",
    envvar="PROVD_DAEMON_PROVISIONERS",
    default="echo",
    show_default=True,
    help="Comma-separated provisioner types to run.",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    envvar="PROVD_DAEMON_TAGS",
    help="key=value routing tag (repeatable, or comma-separated in the env).",
)
@click.option(
    "--organization",
    envvar="PROVD_DAEMON_ORGANIZATION",
    default="",
    help="Organization  [default: default]",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="How many jobs to run at once.",
)
@click.option(
    "--transport",
    type=click.Choice(["connect", "websocket"]),
    default="connect",
    envvar="PROVD_DAEMON_TRANSPORT",
    show_default=True,
    help="How to wait for jobs: an HTTP/2 stream, or provd's WebSocket route"
    " (for networks without HTTP/2).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
def daemon_command(
    urls: tuple[str, ...],
    key_file: Path | None,
    psk: str | None,
    db_path: str | None,
    name: str | None,
    provisioners: str,
    tags: tuple[str, ...],
    organization: str,
    jobs: int,
    transport: str,
    verbose: bool,
) -> None:
    """Run a provisioner daemon with the built-in echo provisioner.

    SIGINT or SIGTERM stops taking jobs (CancelAcquire), lets running jobs finish,
    then exits 0; a second signal stops at once.
    """
    import trio
    from connectrpc.errors import ConnectError

    from provd.client.daemon.runner import DaemonSettings

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s provd daemon: %(message)s",
        datefmt="%H:%M:%S",
    )
    key = _resolve_key(key_file)
    settings = DaemonSettings(
        url=_join_urls(urls),
        key=key,
        psk="" if key else _resolve_psk(psk, db_path),
        name=name or socket.gethostname(),
        provisioners=tuple(p.strip() for p in provisioners.split(",") if p.strip()),
        tags=_parse_tags(tags),
        organization=organization,
        jobs=jobs,
        transport=transport,
    )
    try:
        trio.run(_run_until_signalled, settings)
    except* ConnectError as group:
        error = _first_connect_error(group)
        click.echo(
            f"Error: provd at {settings.url} refused this daemon:"
            f" {error.code.value}: {error.message}",
            err=True,
        )
        _exit_at_once(1)


def _exit_at_once(status: int) -> NoReturn:
    """Exit without the interpreter's finalization. A refusal cancels the other slots'
    calls, whose worker threads are abandoned inside the HTTP client's native code;
    finalizing while one of them returns aborts the process ("PyGILState_Release:
    thread state must be current"), turning exit status 1 into a SIGABRT. Everything
    worth keeping is written: the log flushes each line, and std streams are flushed
    here."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _first_connect_error(group: BaseExceptionGroup[ConnectError]) -> ConnectError:
    """The first ConnectError in `group`, however deep (nurseries nest groups)."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first_connect_error(error)
        return error
    raise AssertionError("an empty exception group")


def _key_id(key: str) -> str:
    """The id part of a daemon key (never its secret), for the log."""
    return key[len(KEY_PREFIX) :].partition("_")[0]


async def _run_until_signalled(settings: DaemonSettings) -> None:
    import trio

    from provd.client.daemon.runner import run_daemon

    stop = trio.Event()
    log = logging.getLogger("provd.client.daemon")
    async with trio.open_nursery() as nursery:

        async def watch_signals(task_status: trio.TaskStatus[None]) -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for signum in signals:
                    if stop.is_set():
                        log.warning("%s again: stopping now", signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()
                        return
                    log.info(
                        "%s: no new jobs; finishing the running ones", signal.Signals(signum).name
                    )
                    stop.set()

        await nursery.start(watch_signals)
        log.info(
            "%r takes %s jobs from %s (%d at a time)%s",
            settings.name,
            ",".join(settings.provisioners),
            ", then ".join(settings.urls),
            settings.jobs,
            f", with daemon key {_key_id(settings.key)}" if settings.key else "",
        )
        await run_daemon(settings, stop)
        log.info("stopped")
        nursery.cancel_scope.cancel()
