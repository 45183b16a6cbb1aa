"""What every command shares: the context object, output rendering and exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from nfcpay import errors

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DECLINED = 3
EXIT_NFC = 4
EXIT_SERVER = 5
EXIT_CONFIG = 6
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = (
    "Exit status: 0 ok/approved, 1 other error, 2 usage error, 3 payment declined, "
    "4 NFC/reader failure or tap timeout, 5 server unreachable or failed, "
    "6 bad configuration or home directory, 130 interrupted (Ctrl-C)."
)


def exit_code_for(error: errors.NfcPayError) -> int:
    """The documented exit status for an nfcpay error."""
    if isinstance(error, errors.Declined):
        return EXIT_DECLINED
    if isinstance(error, errors.TransportError | errors.RecordError | errors.ProfileError):
        return EXIT_NFC
    if isinstance(error, errors.ApiError | errors.PaymentError):
        return EXIT_SERVER
    if isinstance(error, errors.ConfigError):
        return EXIT_CONFIG
    return EXIT_ERROR


@dataclass
class CliContext:
    """Global options, resolved once and handed to every command as ``ctx.obj``."""

    home: Path
    server_url: str | None
    device: str | None
    as_json: bool
    verbose: int
    #: ``--ca``: the CA file that verifies an https:// server (None: the system's CAs).
    ca: Path | None = None
    #: ``--carrier`` of the running tap command: auto, llcp, tt3 or tag.
    carrier: str = "auto"
    #: ``--trace FILE`` of the running NFC command, and ``--trace-secrets``.
    trace: Path | None = None
    trace_secrets: bool = False

    @classmethod
    def create(
        cls,
        *,
        home: Path | None,
        server_url: str | None,
        device: str | None,
        as_json: bool,
        verbose: int,
        ca: Path | None = None,
    ) -> CliContext:
        level = logging.WARNING - 10 * min(verbose, 2)
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        resolved_home = home or Path(os.environ.get("NFCPAY_HOME") or Path.home() / ".nfcpay")
        return cls(resolved_home, server_url, device, as_json, verbose, ca)

    def emit(self, data: Mapping[str, Any], human: str | Callable[[], None]) -> None:
        """Print ``data`` as one JSON document with --json, else the human form."""
        if self.as_json:
            click.echo(json.dumps(data, sort_keys=True, default=str))
        elif callable(human):
            human()
        else:
            click.echo(human)

    def status(self, message: str) -> None:
        """A progress line on stderr (never mixed into --json output on stdout)."""
        if not self.as_json:
            click.echo(click.style(message, dim=True), err=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def run_guarded(command: click.Command, args: Sequence[str] | None = None) -> int:
    """Run the CLI, turning nfcpay errors into a one-line message and a documented status."""
    as_json = "--json" in (args if args is not None else sys.argv[1:]) or bool(
        os.environ.get("NFCPAY_JSON")
    )
    try:
        # without standalone mode click *returns* the status of ctx.exit(n)
        status = command.main(args=args, standalone_mode=False)
    except errors.NfcPayError as error:
        code = exit_code_for(error)
        if as_json:
            click.echo(json.dumps({"ok": False, "error": error.code, "message": error.message}))
        else:
            click.echo(click.style(f"Error: {error.message}", fg="red"), err=True)
        return code
    except click.exceptions.Abort:
        click.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    return status if isinstance(status, int) else EXIT_OK
