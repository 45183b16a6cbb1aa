"""``nfcpay readers`` and ``nfcpay doctor``: which readers are here, and what blocks them."""

from __future__ import annotations

from typing import Any

import click

from nfcpay import errors
from nfcpay.cli.output import EXIT_NFC, CliContext, table
from nfcpay.cli.terminal import trace_options


class ReaderProblem(click.ClickException):
    """A reader check found a problem (exit status 4, as every NFC failure)."""

    exit_code = EXIT_NFC


@click.command()
@click.pass_obj
def readers(obj: CliContext) -> None:
    """List NFC readers with their firmware profile and abilities.

    With --device (e.g. loopback:54321?as=acr122u) the named reader is opened and shown.
    """
    from nfcpay.transport import discovery, open_reader

    rows: list[dict[str, Any]] = []
    if obj.device:
        with open_reader(obj.device, runtime_dir=obj.runtime_dir) as reader:
            rows.append(_row(reader.path, reader.profile, _simulated(reader)))
        obj.emit({"readers": rows}, lambda: click.echo(_render(rows)))
        return
    virtual = _virtual_rows()
    try:
        found = discovery.usb_readers()
    except errors.ReaderNotFound as exc:
        obj.emit(
            {"readers": [], "virtual": virtual, "problem": exc.message},
            _none_found(exc.message) + "\n\n" + _render(virtual),
        )
        return
    for usb in found:
        detail = "" if usb.accessible else "no permission (run `nfcpay doctor`)"
        rows.append(_row(usb.path, usb.profile, detail, usb_id=usb.usb_id))
    human = (_render(rows) if rows else _none_found("")) + "\n\n" + _render(virtual)
    obj.emit({"readers": rows, "virtual": virtual}, human)


def _simulated(reader: Any) -> str:
    if reader.spec.kind == "virtual":
        driver = type(reader.clf.device).__module__
        return f"virtual: emulated chip behind nfcpy's {driver}, field {reader.spec.field!r}"
    return "simulated (nfcpy udp driver)" if reader.spec.is_simulated else ""


def _virtual_rows() -> list[dict[str, Any]]:
    """The emulated readers any command can open (no hardware), apart from real ones."""
    from nfcpay.transport.device import EMULATED_CHIPS
    from nfcpay.transport.profiles import profile_by_name

    note = "virtual (no hardware): FIELD is any name; readers naming it share it"
    return [_row(f"virtual:{chip}@FIELD", profile_by_name(chip), note) for chip in EMULATED_CHIPS]


def _row(path: str, profile: Any, detail: str, usb_id: str | None = None) -> dict[str, Any]:
    return {
        "path": path,
        "usb_id": usb_id,
        "profile": profile.id if profile else None,
        "name": profile.name if profile else "unknown reader",
        "abilities": profile.abilities() if profile else {},
        "detail": detail,
    }


def _render(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        abilities = row["abilities"]
        listens = "listen+poll" if "target" in abilities.get("p2p_roles", []) else "poll only"
        emulates = ",".join(abilities.get("emulates", [])) or "-"
        carriers = "/".join(abilities.get("carriers", []))
        lines.append([row["path"], row["name"], listens, emulates, carriers, row["detail"]])
    return table(["device", "reader", "p2p", "emulates", "carriers", "note"], lines)


def _none_found(reason: str) -> str:
    hint = (
        "No NFC readers found.\n"
        "  - plug in a supported reader (RC-S380, ACR122U, SCL3711, ...) and run "
        "`nfcpay doctor` if it still does not show\n"
        "  - serial PN532 boards are not auto-detected: --device tty:USB0:pn532\n"
        "  - to try nfcpay without hardware: a virtual reader (below) on each terminal"
    )
    return f"{hint}\n  ({reason})" if reason else hint


@click.command()
@click.pass_obj
def doctor(obj: CliContext) -> None:
    """Check this host for NFC reader problems and print the fix for each."""
    from nfcpay.transport import discovery

    checks = discovery.doctor_checks(obj.runtime_dir)
    problems = [c for c in checks if c.status == "problem"]
    data = {
        "ok": not problems,
        "checks": [
            {"name": c.name, "status": c.status, "detail": c.detail, "fixes": list(c.fixes)}
            for c in checks
        ],
    }

    def human() -> None:
        marks = {
            "ok": click.style("ok", fg="green"),
            "problem": click.style("PROBLEM", fg="red"),
            "info": click.style("info", fg="yellow"),
        }
        for check in checks:
            click.echo(f"[{marks[check.status]}] {check.name}: {check.detail}")
            for fix in check.fixes:
                click.echo(f"      fix: {fix}")
        if not problems:
            click.echo("No problems found.")

    obj.emit(data, human)
    if problems:
        raise ReaderProblem(f"{len(problems)} problem(s) found; apply the fixes above")


@click.command()
@click.option(
    "--other",
    help="A second reader on this laptop (e.g. usb:072f:2200): it taps the --device one. "
    "Without it, the one reader writes, reads back and wipes a tag held to it.",
)
@click.option("--timeout", type=click.FloatRange(min=0.5), default=15.0, show_default=True,
              help="Seconds to wait for each tap.")  # fmt: skip
@trace_options
@click.pass_obj
def selftest(obj: CliContext, other: str | None, timeout: float) -> None:
    """First time at a real counter: check your readers work together, and how fast.

    \b
    nfcpay --device usb:054c:06c1 selftest --other usb:072f:2200   two readers, held together
    nfcpay --device usb:072f:2200 selftest                         one reader and a tag

    Each step prints its time, and the fix for any problem. No server is needed. With
    --trace FILE, the frames of --device go to FILE and those of --other to FILE-other.
    """
    from nfcpay.cli.terminal import quiet_nfcpy, traced
    from nfcpay.transport import open_reader, selftest

    quiet_nfcpy(obj)
    with open_reader(obj.device, runtime_dir=obj.runtime_dir) as first:
        traced(obj, first)
        obj.status(f"Reader: {first.describe()}")
        if other is None:
            report = selftest.one_reader(first, timeout=timeout, on_wait=obj.status)
        else:
            with open_reader(other, runtime_dir=obj.runtime_dir) as second:
                traced(obj, second, suffix="-other")
                obj.status(f"Other reader: {second.describe()}")
                obj.status("Hold the two readers together (antennas facing, 1-2 cm apart).")
                report = selftest.two_readers(first, second, timeout=timeout)
    data = {"ok": report.ok, "steps": [step.to_json() for step in report.steps]}
    obj.emit(data, lambda: click.echo(_render_steps(report)))
    if not report.ok:
        raise ReaderProblem("a step failed; apply the fix shown above")


def _render_steps(report: Any) -> str:
    lines = []
    for step in report.steps:
        mark = click.style("ok", fg="green") if step.ok else click.style("FAILED", fg="red")
        lines.append(f"[{mark}] {step.name}: {step.ms:.0f} ms  {step.detail}".rstrip())
        if step.fix:
            lines.append(f"      fix: {step.fix}")
    return "\n".join(lines)
