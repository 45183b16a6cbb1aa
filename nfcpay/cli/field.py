"""``nfcpay field``: virtual RF fields, where virtual readers and virtual tags meet.

A virtual reader (``--device virtual:acr122u@counter``) is an emulated chip behind nfcpy's
own driver; every process that names the field ``counter`` shares it through a small broker
that the first of them starts. These commands start and stop that broker, show who is in the
field, and lay virtual tags (an NTAG215/216 sticker, a FeliCa Lite-S card) in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from nfcpay.cli.output import CliContext, table
from nfcpay.transport.device import DEFAULT_FIELD
from nfcpay.transport.virtual.tags import KINDS as TAG_KINDS

field_option = click.option(
    "--field",
    "name",
    default=DEFAULT_FIELD,
    show_default=True,
    help="The field's name, as in --device virtual:CHIP@NAME.",
)


@click.group()
def field() -> None:
    """Virtual RF fields for virtual readers and tags (no hardware needed).

    \b
    nfcpay field start --field counter          (or let the first reader start it)
    nfcpay --device virtual:acr122u@counter …   a virtual ACR122U in it
    nfcpay field place ntag215 --field counter  lay a sticker in it
    nfcpay field show --field counter
    """


def _connect(obj: CliContext, name: str, *, start: bool) -> Any:
    from nfcpay.transport.virtual.broker import BrokerError, connect, default_field_dir
    from nfcpay.transport.virtual.readers import unreachable

    try:
        return connect(name, directory=default_field_dir(obj.runtime_dir), start=start)
    except BrokerError as exc:
        raise unreachable(name, exc) from None


@contextmanager
def _refused() -> Iterator[None]:
    """The broker's ValueError (a taken tag id, no such tag) as a usage error."""
    try:
        yield
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@field.command()
@field_option
@click.option(
    "--idle-exit",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds with nobody in the field before it closes (0: never).",
)
@click.pass_obj
def start(obj: CliContext, name: str, idle_exit: float) -> None:
    """Start a field's broker (the first virtual reader that names it starts it too)."""
    from nfcpay.transport.virtual.broker import default_field_dir, start_field

    path = start_field(
        name, directory=default_field_dir(obj.runtime_dir), idle_exit=idle_exit or None
    )
    obj.emit({"field": name, "socket": str(path)}, f"Field {name!r} is up ({path}).")


@field.command()
@field_option
@click.pass_obj
def stop(obj: CliContext, name: str) -> None:
    """Stop a field's broker: its readers lose the field and its tags are gone."""
    from nfcpay.transport.virtual.broker import default_field_dir, stop_field

    stopped = stop_field(name, directory=default_field_dir(obj.runtime_dir))
    obj.emit(
        {"field": name, "stopped": stopped},
        f"Field {name!r} stopped." if stopped else f"Field {name!r} was not running.",
    )


@field.command()
@field_option
@click.pass_obj
def show(obj: CliContext, name: str) -> None:
    """Who is in the field: readers (carrier on or listening) and tags."""
    with _connect(obj, name, start=False) as remote:
        status = remote.status()
    readers, tags = status["antennas"], status["tags"]
    rows = [
        [a["name"], "on" if a["carrier"] else "off", "yes" if a["listening"] else "no"]
        for a in readers
    ]
    lines = [f"Field {name!r} (broker pid {status['pid']}):"]
    lines.append(table(["reader", "carrier", "listening"], rows) if rows else "no readers")
    tag_rows = [[t["id"], t["kind"]] for t in tags]
    lines.append(table(["tag", "kind"], tag_rows) if tag_rows else "no tags")
    obj.emit({"field": name, "antennas": readers, "tags": tags}, "\n".join(lines))


@field.command()
@click.argument("kind", type=click.Choice(TAG_KINDS))
@field_option
@click.option("--id", "tag_id", help="Name the tag (default: a new id).")
@click.pass_obj
def place(obj: CliContext, kind: str, name: str, tag_id: str | None) -> None:
    """Lay a new, empty virtual tag in the field (it stays until removed or the field stops)."""
    with _connect(obj, name, start=True) as remote, _refused():
        placed = remote.place_tag(kind, tag_id=tag_id)
    obj.emit(
        {"field": name, "tag_id": placed, "kind": kind},
        f"Placed {kind} tag {placed} in field {name!r}.",
    )


@field.command()
@click.argument("tag_id")
@field_option
@click.pass_obj
def remove(obj: CliContext, tag_id: str, name: str) -> None:
    """Take a tag out of the field."""
    with _connect(obj, name, start=False) as remote, _refused():
        remote.remove_tag(tag_id)
    obj.emit({"field": name, "removed": tag_id}, f"Removed tag {tag_id} from field {name!r}.")
