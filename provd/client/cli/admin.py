"""`provd daemons …`, `provd quota …` and `provd version`: `provd.v1.DaemonService`,
`provd.v1.QuotaService`, and what this build of provd is."""

from __future__ import annotations

import click

from provd.buildinfo import build_info
from provd.client.cli.context import Connection, Failure, server_options
from provd.client.cli.output import (
    ALLOWANCE_HEADERS,
    DAEMON_HEADERS,
    allowance_row,
    daemon_row,
    json_option,
    print_fields,
    print_json,
    print_table,
)
from provd.gen.provd.v1 import daemons_pb2 as dpb
from provd.gen.provd.v1 import quota_pb2 as qpb

# -- provd daemons -------------------------------------------------------------------


@click.group("daemons")
def daemons() -> None:
    """The provisioner daemons provd has seen."""


@daemons.command("list")
@click.option("--organization", default="", help="Only this organization's daemons.")
@json_option
@server_options
def daemons_list(connection: Connection, organization: str, as_json: bool) -> None:
    """List every daemon provd has seen, connected or not.

    STATE is waiting (holding an acquire stream open), running (has a job), idle
    (seen lately, neither) or stale (not seen for three heartbeat intervals).

    \b
    Example:
      provd daemons list
    """
    listing = connection.daemons().list_daemons(dpb.ListDaemonsRequest(organization=organization))
    if as_json:
        print_json(listing)
        return
    print_table(
        DAEMON_HEADERS,
        [daemon_row(daemon) for daemon in listing.daemons],
        empty="No daemons have connected.",
    )


# -- provd quota ---------------------------------------------------------------------

ORGANIZATION = click.option(
    "--organization", default="", help="The allowance's organization  [default: default]"
)
INT32 = click.IntRange(0, 2**31 - 1)


def _subject(user: str | None, group: str | None) -> dict[str, str]:
    """The oneof `subject` of an allowance: exactly one of --user and --group."""
    if (user is None) == (group is None):
        raise click.UsageError("give exactly one of --user ID and --group NAME")
    return {"user_id": user} if user is not None else {"group": group or ""}


def _describe(subject: dict[str, str]) -> str:
    return f"user {subject['user_id']}" if "user_id" in subject else f"group {subject['group']}"


@click.group("quota")
def quota() -> None:
    """Workspace quota: daily credit allowances per user and group.

    A user's budget is their own allowance plus those of their groups. An
    organization without any allowance has no quota.
    """


@quota.command("set")
@click.option("--user", "user", metavar="ID", help="A user's allowance.")
@click.option("--group", "group", metavar="NAME", help="A group's allowance.")
@click.argument("amount", type=INT32)
@ORGANIZATION
@json_option
@server_options
def quota_set(
    connection: Connection,
    user: str | None,
    group: str | None,
    amount: int,
    organization: str,
    as_json: bool,
) -> None:
    """Set a user's or a group's allowance to AMOUNT credits a day.

    Creates the allowance or replaces it.

    \b
    Example:
      provd quota set --group developers 100
    """
    allowance = qpb.Allowance(organization=organization, allowance=amount, **_subject(user, group))
    stored = connection.quota().set_allowance(qpb.SetAllowanceRequest(allowance=allowance))
    if as_json:
        print_json(stored)
    else:
        print_table(ALLOWANCE_HEADERS, [allowance_row(stored)], empty="")


@quota.command("list")
@ORGANIZATION
@json_option
@server_options
def quota_list(connection: Connection, organization: str, as_json: bool) -> None:
    """List an organization's allowances.

    \b
    Example:
      provd quota list
    """
    listing = connection.quota().list_allowances(
        qpb.ListAllowancesRequest(organization=organization)
    )
    if as_json:
        print_json(listing)
        return
    print_table(
        ALLOWANCE_HEADERS,
        [allowance_row(allowance) for allowance in listing.allowances],
        empty="No allowances: this organization has no quota.",
    )


@quota.command("delete")
@click.option("--user", "user", metavar="ID", help="A user's allowance.")
@click.option("--group", "group", metavar="NAME", help="A group's allowance.")
@ORGANIZATION
@click.option("--ignore", is_flag=True, help="Exit 0 even if there was no such allowance.")
@json_option
@server_options
def quota_delete(
    connection: Connection,
    user: str | None,
    group: str | None,
    organization: str,
    ignore: bool,
    as_json: bool,
) -> None:
    """Delete the allowance of a user or a group.

    Exits 1 if there was no such allowance, unless --ignore.

    \b
    Example:
      provd quota delete --user u-1
    """
    subject = _subject(user, group)
    outcome = connection.quota().delete_allowance(
        qpb.DeleteAllowanceRequest(organization=organization, **subject)
    )
    if as_json:
        print_json(outcome)
    elif outcome.deleted:
        click.echo(f"Deleted the allowance of {_describe(subject)}.")
    if not outcome.deleted and not ignore:
        raise Failure(
            f"{_describe(subject)} has no allowance in organization {organization or 'default'}"
        )


@quota.command("get")
@click.option("--user", "user", metavar="ID", required=True, help="The user.")
@click.option(
    "--group",
    "groups",
    metavar="NAME",
    multiple=True,
    help="A group of the user's, whose allowance counts (repeatable).",
)
@ORGANIZATION
@json_option
@server_options
def quota_get(
    connection: Connection,
    user: str,
    groups: tuple[str, ...],
    organization: str,
    as_json: bool,
) -> None:
    """Show what a user consumes (credits a day) and their budget.

    \b
    Example:
      provd quota get --user u-1 --group developers
    """
    usage = connection.quota().get_user_quota(
        qpb.GetUserQuotaRequest(organization=organization, user_id=user, groups=groups)
    )
    if as_json:
        print_json(usage)
        return
    unlimited = usage.budget < 0
    print_fields(
        [
            ("user", user),
            ("consumed", usage.credits_consumed),
            ("budget", "unlimited (no quota in this organization)" if unlimited else usage.budget),
            ("remaining", "" if unlimited else usage.budget - usage.credits_consumed),
        ]
    )


# -- provd version -------------------------------------------------------------------


@click.command("version")
@json_option
def version(as_json: bool) -> None:
    """Print provd's version and the platform it runs on.

    A release build also prints the commit and date it was built from.
    """
    info = build_info()
    if as_json:
        document = {"version": info.version, "platform": info.platform}
        document.update({"commit": info.commit} if info.commit else {})
        document.update({"buildDate": info.build_date} if info.build_date else {})
        print_json(document)
        return
    click.echo(f"provd {info.version}")
    fields = [("platform", info.platform)]
    if info.commit or info.build_date:
        fields += [("commit", info.commit), ("built", info.build_date)]
    print_fields(fields)
