"""The ``nfcpay`` command: a root group whose subcommands are imported only when used.

Importing nfcpy, uvicorn or the server at start-up would make ``nfcpay --help`` slow and
would drag hardware libraries into commands that never touch a reader, hence the LazyGroup.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from nfcpay import __version__
from nfcpay.cli.output import EXIT_CODES_HELP, CliContext, run_guarded

#: subcommand name → "module:attribute"
LAZY_COMMANDS: dict[str, str] = {
    "doctor": "nfcpay.cli.readers:doctor",
    "readers": "nfcpay.cli.readers:readers",
    "selftest": "nfcpay.cli.readers:selftest",
    "ndef": "nfcpay.cli.ndef:ndef",
    "server": "nfcpay.cli.server:server",
    "terminal": "nfcpay.cli.terminal:terminal",
    "user": "nfcpay.cli.user:user",
    "target": "nfcpay.cli.target:target",
    "merchant": "nfcpay.cli.merchant:merchant",
    "demo": "nfcpay.cli.demo:demo",
    "group": "nfcpay.cli.group:group",
    "field": "nfcpay.cli.field:field",
    "ui": "nfcpay.cli.ui:ui",
}


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module on first use."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module_name, attribute = self._lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self._lazy[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup,
    lazy=LAZY_COMMANDS,
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "NFCPAY"},
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="NFCPAY_HOME",
    help="This terminal's state directory [env NFCPAY_HOME; default ~/.nfcpay].",
)
@click.option(
    "--server",
    "server_url",
    envvar="NFCPAY_SERVER",
    help="Payment server URL [env NFCPAY_SERVER; default: the one saved at terminal init].",
)
@click.option(
    "--device",
    envvar="NFCPAY_DEVICE",
    help="NFC reader: usb, usb:072f:2200, tty:USB0:pn532, loopback:PORT, virtual:acr122u@FIELD"
    " … [env NFCPAY_DEVICE].",
)
@click.option(
    "--json", "as_json", is_flag=True, envvar="NFCPAY_JSON", help="Machine-readable JSON output."
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="NFCPAY_CA",
    help="CA certificate file that signed an https:// server's certificate [env NFCPAY_CA].",
)
@click.version_option(__version__, prog_name="nfcpay")
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path | None,
    server_url: str | None,
    device: str | None,
    as_json: bool,
    verbose: int,
    ca: Path | None,
) -> None:
    """nfcpay: let someone pay for you over NFC without handing over your card.

    Run `nfcpay demo` to see the whole story on this machine with no reader.
    """
    _fault_hook_from_environment()
    ctx.obj = CliContext.create(
        home=home,
        server_url=server_url,
        device=device,
        as_json=as_json,
        verbose=verbose,
        ca=ca.resolve() if ca is not None else None,
    )


def _fault_hook_from_environment() -> None:
    """The crash-safety tests start terminals with ``NFCPAY_FAULT_LINK_DROP=send:N|recv:N``
    (see :mod:`nfcpay.transport.faults`); a malformed value stops the command."""
    from nfcpay.transport import faults

    drop = faults.parse(os.environ.get(faults.ENV, ""))
    if drop is not None:
        faults.enable(drop)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_guarded(cli))
