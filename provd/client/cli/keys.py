"""`provd keys create|list|delete`: daemon keys, through `provd.v1.KeyService`
(docs/keys.md). Like every admin command, over `provd.client.connect_lite`."""

from __future__ import annotations

import click

from provd.client.cli.context import Connection, Failure, server_options
from provd.client.cli.output import (
    KEY_HEADERS,
    json_option,
    key_fields,
    key_row,
    key_values,
    print_fields,
    print_json,
    print_table,
)
from provd.gen.provd.v1 import keys_pb2 as kpb

ORGANIZATION = click.option(
    "--org",
    "--organization",
    "organization",
    default="",
    help="The key's organization  [default: default]",
)


@click.group("keys")
def keys() -> None:
    """Daemon keys: scoped, revocable credentials for provisioner daemons.

    A daemon that presents a key (provd daemon --key-file FILE) gets its
    organization, owner and tags from it and may offer only the provisioners it
    allows. Deleting a key refuses its daemons at once.
    """


@keys.command("create")
@click.argument("name")
@ORGANIZATION
@click.option(
    "--tag",
    "tags",
    metavar="KEY=VALUE",
    callback=key_values,
    multiple=True,
    help="A tag of the key's daemons (repeatable); they have exactly these.",
)
@click.option(
    "--provisioner",
    "provisioners",
    metavar="TYPE",
    multiple=True,
    help="A provisioner its daemons may offer (repeatable)  [default: any]",
)
@click.option(
    "--owner",
    default="",
    metavar="USER",
    help="A user: the key's daemons are that user's (scope=user, owner=USER).",
)
@json_option
@server_options
def keys_create(
    connection: Connection,
    name: str,
    organization: str,
    tags: list[tuple[str, str]],
    provisioners: tuple[str, ...],
    owner: str,
    as_json: bool,
) -> None:
    """Create a daemon key named NAME and print its secret, once.

    provd keeps only a hash of the secret: store it now, e.g. in the file that
    `provd daemon --key-file` reads.

    \b
    Example:
      provd keys create ci-linux --tag os=linux --provisioner echo
    """
    created = connection.keys().create_key(
        kpb.CreateKeyRequest(
            name=name,
            organization=organization,
            tags=dict(tags),
            provisioners=provisioners,
            owner=owner,
        )
    )
    if as_json:
        print_json(created)
        return
    fields = key_fields(created.key)
    print_fields(fields)
    # Aligned with the fields, but never wrapped: it is meant to be copied whole.
    width = max(len(label) for label, value in fields if value)
    click.echo(f"{'secret':<{width}}  {created.secret}")
    click.echo(
        "Store the secret now: provd keeps only its hash and cannot show it again.", err=True
    )


@keys.command("list")
@ORGANIZATION
@json_option
@server_options
def keys_list(connection: Connection, organization: str, as_json: bool) -> None:
    """List the daemon keys (never their secrets).

    DAEMONS is how many daemons that used the key are connected now; LAST USED is
    written every few seconds, not per call.

    \b
    Example:
      provd keys list
    """
    listing = connection.keys().list_keys(kpb.ListKeysRequest(organization=organization))
    if as_json:
        print_json(listing)
        return
    print_table(KEY_HEADERS, [key_row(key) for key in listing.keys], empty="No daemon keys.")


@keys.command("delete")
@click.argument("name")
@click.option("--ignore", is_flag=True, help="Exit 0 even if there was no such key.")
@json_option
@server_options
def keys_delete(connection: Connection, name: str, ignore: bool, as_json: bool) -> None:
    """Delete the daemon key NAME, at once.

    Every later call made with it is refused (unauthenticated) and its daemons'
    waiting acquire streams end; jobs its daemons were running end through the hang
    timeout. Exits 1 if there was no such key, unless --ignore.

    \b
    Example:
      provd keys delete ci-linux
    """
    outcome = connection.keys().delete_key(kpb.DeleteKeyRequest(name=name))
    if as_json:
        print_json(outcome)
    elif outcome.deleted:
        click.echo(f"Deleted daemon key {name} ({outcome.key.id}).")
    if not outcome.deleted and not ignore:
        raise Failure(f"there is no daemon key named {name}")
