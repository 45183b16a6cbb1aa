"""What every command shares: the context object, output rendering and exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

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
    "Exit status: 0 ok/approved, 1 other error, 2 usage error or input the server refused, "
    "3 payment declined, 4 NFC/reader failure or tap timeout, 5 server unreachable or failed, "
    "6 bad configuration or home directory, 130 interrupted (Ctrl-C)."
)


#: A server's answers that refuse what was asked: a value (400, 422), an id nothing has
#: (404), a request the current state does not allow (409). Not 401/403 (authentication,
#: permission), nor any answer worth retrying (429, 409 "in progress", 5xx).
REFUSED_STATUSES = frozenset({400, 404, 409, 422})


def refused_input(error: errors.NfcPayError) -> TypeGuard[errors.ApiError]:
    """The server answered and refused the input: the person's to fix, not an outage."""
    return (
        isinstance(error, errors.ApiError)
        and error.status in REFUSED_STATUSES
        and not error.retryable
    )


def exit_code_for(error: errors.NfcPayError) -> int:
    """The documented exit status for an nfcpay error."""
    if isinstance(error, errors.Declined):
        return EXIT_DECLINED
    if refused_input(error) or isinstance(error, errors.AmountRefused):
        return EXIT_USAGE
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
    #: Where reader locks and virtual fields live: ``$XDG_RUNTIME_DIR`` (None: the per-user
    #: fallback in the temporary directory, see :mod:`nfcpay.transport.rundir`).
    runtime_dir: Path | None = None

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
        from nfcpay.transport.rundir import runtime_dir_in

        resolved_home = home or Path(os.environ.get("NFCPAY_HOME") or Path.home() / ".nfcpay")
        return cls(
            resolved_home,
            server_url,
            device,
            as_json,
            verbose,
            ca,
            runtime_dir=runtime_dir_in(os.environ),
        )

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
        return report(error, as_json=as_json)
    except click.exceptions.Abort:
        click.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    except click.UsageError as error:
        if as_json:
            _say(as_json, *_usage_failure(error))
        else:
            error.show()
        return error.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    return status if isinstance(status, int) else EXIT_OK


def report(error: errors.NfcPayError, *, as_json: bool) -> int:
    """Say what went wrong (a refused field as the option it came from) and return the exit
    status."""
    option, message = None, error.message
    if refused_input(error):
        from nfcpay.cli.params import refusal

        option, message = refusal(error.field, error.code, error.message)
    _say(as_json, error.code, message, option)
    return exit_code_for(error)


def _say(as_json: bool, code: str, message: str, option: str | None = None) -> None:
    """A failed command's one line: JSON on stdout (``field``: the option at fault, if one
    is), else the message on stderr."""
    if as_json:
        data = {"ok": False, "error": code, "message": message}
        click.echo(json.dumps(data | ({"field": option} if option else {})))
    else:
        click.echo(click.style(f"Error: {message}", fg="red"), err=True)


def _usage_failure(error: click.UsageError) -> tuple[str, str, str | None]:
    """(code, message, option) of a usage error for --json: a refused value is a
    ``validation_error`` naming its option (``--expiry``) or argument (``GRANT_IDS``), as a
    value the server refuses is."""
    message = error.format_message()
    if not isinstance(error, click.BadParameter) or isinstance(error, click.MissingParameter):
        return "usage_error", message, None
    if isinstance(error.param, click.Option):
        return "validation_error", message, max(error.param.opts, key=len)
    return "validation_error", message, error.param.human_readable_name if error.param else None
