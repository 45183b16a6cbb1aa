"""A scripted NFC peer in its own process: ``python -m nfcpay.transport.peer``.

Tests and ``scripts/bench_nfc.py`` start one of these per side so that two real OS
processes talk through the loopback reader with the whole nfcpy stack. Each tap runs the
``--step`` script and prints one JSON line; messages travel as hex.

Steps: ``send=PAYLOAD``, ``recv``, ``echo`` (send back the last message received),
``partial=PAYLOAD`` (send only the first piece, print ``{"event": "partial"}`` and hang —
for kill tests). PAYLOAD is ``hex:ABCD``, ``ndef:N`` (one NDEF record with N payload
bytes) or ``text:WORDS`` (an NDEF text record).

Example, a side waiting for 3 taps and a side tapping it::

    python -m nfcpay.transport.peer --device loopback:50123 --offer --taps 3 --step recv --step echo
    python -m nfcpay.transport.peer --device loopback:50123 --step send=ndef:600 --step recv
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ndef

from nfcpay import errors
from nfcpay.transport.channel import Channel
from nfcpay.transport.reader import Reader, open_reader

RECEIVE_TIMEOUT = 5.0


def payload(spec: str) -> bytes:
    """Bytes for a PAYLOAD spec (see the module docstring)."""
    kind, _, value = spec.partition(":")
    if kind == "hex":
        return bytes.fromhex(value)
    if kind == "text":
        return b"".join(ndef.message_encoder([ndef.TextRecord(value)]))
    if kind == "ndef":
        body = bytes((7 * i + 3) % 256 for i in range(int(value)))
        return b"".join(
            ndef.message_encoder([ndef.Record("urn:nfc:ext:nfcpay.org:test", "1", body)])
        )
    raise ValueError(f"unknown payload {spec!r}")


def emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def run_steps(channel: Channel, steps: Sequence[str]) -> list[str]:
    """Run one tap's script; return the messages received (hex)."""
    received: list[bytes] = []
    for step in steps:
        name, _, arg = step.partition("=")
        if name == "send":
            channel.send(payload(arg))
        elif name == "recv":
            received.append(channel.receive(RECEIVE_TIMEOUT))
        elif name == "echo":
            channel.send(received[-1])
        elif name == "partial":
            channel.send_partial(payload(arg))  # type: ignore[attr-defined]
            emit(event="partial")
            time.sleep(3600)
        else:
            raise ValueError(f"unknown step {step!r}")
    return [m.hex() for m in received]


def one_tap(reader: Reader, args: argparse.Namespace, index: int) -> None:
    started = time.perf_counter()
    try:
        with reader.tap(
            args.service, offer=args.offer, carrier=args.carrier, timeout=args.timeout
        ) as channel:
            linked = time.perf_counter()
            received = run_steps(channel, args.step)
            talked = time.perf_counter()
        ended = time.perf_counter()
    except errors.TransportError as exc:
        logging.getLogger(__name__).debug("tap failed", exc_info=True)
        emit(event="tap", index=index, ok=False, error=exc.code, message=exc.message)
        return
    emit(
        event="tap",
        index=index,
        ok=True,
        carrier=channel.carrier,
        role=channel.role,
        received=received,
        link_ms=round(1000 * (linked - started), 2),
        talk_ms=round(1000 * (talked - linked), 2),
        close_ms=round(1000 * (ended - talked), 2),
        total_ms=round(1000 * (ended - started), 2),
        at=round(time.time(), 4),
    )


def tag_side(reader: Reader, args: argparse.Namespace) -> None:
    from nfcpay.transport.tag import read_tag, serve_tag, write_tag

    if args.tag == "serve":
        serve_tag(
            reader,
            payload(args.tag_content) if args.tag_content else b"",
            taps=args.taps,
            timeout=args.timeout,
        )
        emit(event="tag-done")
    elif args.tag == "write":
        write_tag(reader, payload(args.step[0].partition("=")[2]), timeout=args.timeout)
        emit(event="tap", index=0, ok=True)
    else:
        emit(event="tap", index=0, ok=True, received=[read_tag(reader, timeout=args.timeout).hex()])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nfcpay.transport.peer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--device", required=True)
    parser.add_argument(
        "--runtime-dir",
        type=Path,
        help="where virtual fields (and reader locks) live, as the other side names it "
        "(default: the per-user directory in the temporary directory)",
    )
    parser.add_argument("--mode", default="auto", choices=("auto", "listen", "poll"))
    parser.add_argument("--carrier", default="auto", choices=("auto", "llcp", "tt3"))
    parser.add_argument("--service", default="test")
    parser.add_argument("--offer", action="store_true", help="wait for taps instead of tapping")
    parser.add_argument("--taps", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0, help="wait for the peer, per tap")
    parser.add_argument("--step", action="append", default=[])
    parser.add_argument(
        "--tag",
        choices=("serve", "write", "read"),
        help="be a tag (serve), or write to / read from one",
    )
    parser.add_argument("--tag-content", help="PAYLOAD the emulated tag starts with")
    parser.add_argument("-v", "--verbose", action="store_true", help="nfcpy debug log on stderr")
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(
            level=logging.DEBUG, format="%(relativeCreated)8.1f %(name)s %(message)s"
        )
        logging.getLogger("nfc").setLevel(logging.DEBUG)
    try:
        with open_reader(args.device, mode=args.mode, runtime_dir=args.runtime_dir) as reader:
            emit(event="ready", reader=reader.describe())
            if args.tag:
                tag_side(reader, args)
                return 0
            for index in range(args.taps):
                one_tap(reader, args, index)
    except errors.NfcPayError as exc:
        emit(event="error", error=exc.code, message=exc.message)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
