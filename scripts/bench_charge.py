"""Time one ``merchant charge`` over the loopback reader or virtual chips: tap → server
decision → result.

Starts the bundled server, registers a user, a target and a merchant, gives the target one
grant with plenty of uses, then runs the merchant and the target as two processes that
charge and pay ``--taps`` times. The merchant waits (listens) as at a counter; the target
taps 0.8 s after the previous charge, so the merchant is listening again.

What each figure spans, all measured in the target process from the moment ``pay()`` is
called, i.e. when the tapping side starts polling:

  charge    until ``pay()`` returns: link up, hello, challenge, signed means, the merchant's
            pending receipt, the server's authorization, the result at the target, the link
            torn down and the target's receipt and grant saved (the headline figure)
  result    until the result message has arrived at the target
  link      until the LLCP connection to the merchant is open (poll, activation, CONNECT)
  merchant  from the means sent to the result received: the merchant's turn (receipt
            writes, server call, result over NFC)
  close     from the result received to the tap closed (LLCP/NFC-DEP tear-down)

    .venv/bin/python scripts/bench_charge.py --taps 20 [--json]
    .venv/bin/python scripts/bench_charge.py --virtual [--rate 106]   # RC-S380 ← ACR122U

``--virtual`` runs the merchant on a virtual RC-S380 and the target on a virtual ACR122U
(emulated chips behind nfcpy's own drivers, air time modelled), NFC-DEP at ``--rate`` kbps.

``--json`` ends the output with one line ``{"charge_p50_ms": …, "charge_p95_ms": …, …}``.
Also prints the wall time of one ``nfcpay demo`` run with ``--demo``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchlib import free_udp_port, start_server

from nfcpay.money import Money
from nfcpay.terminals import merchant as merchant_flow
from nfcpay.terminals import target as target_flow
from nfcpay.terminals.account import connect, init_terminal
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.user import Rights, grant_record, issue
from nfcpay.transport.channel import Channel
from nfcpay.transport.reader import Reader, open_reader
from nfcpay.transport.rundir import runtime_dir_in

AMOUNT = 1_000
PAUSE_BETWEEN_TAPS = 0.8
#: Where the virtual fields live: this process's environment, which its terminals inherit.
RUNTIME_DIR = runtime_dir_in(os.environ)


def set_up(root: Path, url: str, taps: int) -> None:
    user, target = TerminalHome(root / "user"), TerminalHome(root / "target")
    owner, _ = init_terminal(user, role="user", label="bench owner", server_url=url)
    held, _ = init_terminal(target, role="target", label="bench target", server_url=url)
    shop = {"name": "Bench", "category": "5812", "region": "KR-11", "settlement_account": "B-1"}
    init_terminal(
        TerminalHome(root / "merchant"), role="merchant", label="bench", server_url=url,
        merchant=shop,
    )  # fmt: skip
    with connect(user) as client:
        client.add_card("4111111111111111", "12/39", 10_000_000, "KRW")
        rights = Rights(amount_cap=AMOUNT * (taps + 1), max_uses=taps + 1)
        grant = issue(user, client, to=held.terminal_id, rights=rights)
    record = grant_record(user.get("grants", grant["grant_id"]), owner, held.terminal_id)
    target.put("grants", grant["grant_id"], target_flow.held_entry(record))


def run_merchant(home: Path, device: str, taps: int) -> None:
    terminal = TerminalHome(home)
    with connect(terminal) as client, open_reader(device, runtime_dir=RUNTIME_DIR) as reader:
        for _ in range(taps):
            done = merchant_flow.charge(terminal, client, reader, Money(AMOUNT, "KRW"), timeout=30)
            if done.status != "approved":
                raise SystemExit(f"charge not approved: {done}")


class StampedChannel(Channel):
    """The tap's channel, noting when each send returned and each message arrived."""

    def __init__(self, channel: Channel, stamps: list[tuple[str, float]]) -> None:
        self.carrier, self.role = channel.carrier, channel.role
        self._channel, self._stamps = channel, stamps

    def send(self, message: bytes, timeout: float = 3.0) -> None:
        self._channel.send(message, timeout)
        self._stamps.append(("sent", time.perf_counter()))

    def receive(self, timeout: float) -> bytes:
        message = self._channel.receive(timeout)
        self._stamps.append(("received", time.perf_counter()))
        return message


class StampedReader:
    """The reader as ``target.pay`` uses it (plan, describe, tap), with the tap's stamps."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self.stamps: list[tuple[str, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    @contextmanager
    def tap(self, *args: Any, **kwargs: Any) -> Iterator[Channel]:
        with self._reader.tap(*args, **kwargs) as channel:
            self.stamps.append(("linked", time.perf_counter()))
            yield StampedChannel(channel, self.stamps)
        self.stamps.append(("closed", time.perf_counter()))


def phases(started: float, stamps: list[tuple[str, float]], ended: float) -> dict[str, float]:
    """One charge's figures (seconds, see the module docstring) from the stamps of its tap."""
    last = {name: t for name, t in stamps}  # the last stamp of each kind
    return {
        "charge": ended - started,
        "result": last["received"] - started,
        "link": last["linked"] - started,
        "merchant": last["received"] - last["sent"],
        "close": last["closed"] - last["received"],
    }


def run_target(home: Path, device: str, taps: int) -> None:
    terminal = TerminalHome(home)
    figures = []
    with open_reader(device, runtime_dir=RUNTIME_DIR) as opened:
        reader = StampedReader(opened)
        for _ in range(taps):
            time.sleep(PAUSE_BETWEEN_TAPS)
            reader.stamps.clear()
            started = time.perf_counter()
            paid = target_flow.pay(terminal, reader, timeout=30)  # type: ignore[arg-type]
            figures.append(phases(started, reader.stamps, time.perf_counter()))
            if paid.status != "approved":
                raise SystemExit(f"payment not approved: {paid.receipt}")
    print(json.dumps({name: [round(1000 * f[name], 1) for f in figures] for name in figures[0]}))


def bench(taps: int, rate: int | None = None) -> dict[str, list[float]]:
    """Charge ``taps`` times; ``rate``: over virtual chips at that NFC-DEP rate (kbps)."""
    with tempfile.TemporaryDirectory(prefix="nfcpay-bench-") as tmp:
        root = Path(tmp)
        server, url = start_server(root / "server")
        field = f"bench-charge-{os.getpid()}"  # a valid field name, unlike a temp dir's
        try:
            set_up(root, url, taps)
            if rate is None:
                shop_device = payer_device = f"loopback:{free_udp_port()}"
            else:
                shop_device = f"virtual:rcs380@{field}"
                payer_device = f"virtual:acr122u@{field}?rate={rate}"
            me = [sys.executable, __file__, "--taps", str(taps)]
            shop = subprocess.Popen([*me, "--device", shop_device, "--role", "merchant",
                                     "--home", str(root / "merchant")])  # fmt: skip
            payer = subprocess.run(
                [*me, "--device", payer_device, "--role", "target", "--home", str(root / "target")],
                capture_output=True,
                text=True,
                check=True,
            )
            shop.wait(60)
        finally:
            server.terminate()
            server.wait(10)
            if rate is not None:
                from nfcpay.transport.virtual.broker import default_field_dir, stop_field

                stop_field(field, directory=default_field_dir(RUNTIME_DIR))
    figures: dict[str, list[float]] = json.loads(payer.stdout)
    return figures


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def demo_wall() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nfcpay", "--json", "demo"], check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--taps", type=int, default=20)
    parser.add_argument("--role", choices=("merchant", "target"))
    parser.add_argument("--home", type=Path)
    parser.add_argument("--device")
    parser.add_argument("--demo", action="store_true", help="also time `nfcpay demo` (3 runs)")
    parser.add_argument(
        "--virtual", action="store_true", help="virtual RC-S380 (merchant) and ACR122U (target)"
    )
    parser.add_argument("--rate", type=int, choices=(106, 212, 424), default=424)
    parser.add_argument("--json", action="store_true", help="end with one JSON summary line")
    args = parser.parse_args()
    if args.role == "merchant":
        run_merchant(args.home, args.device, args.taps)
        return
    if args.role == "target":
        run_target(args.home, args.device, args.taps)
        return
    figures = bench(args.taps, args.rate if args.virtual else None)
    charge = figures["charge"]
    over = f"virtual chips at {args.rate} kbps" if args.virtual else "loopback"
    print(
        f"merchant charge over {over}, {len(charge)} taps, target's pay() from its first poll "
        f"to return (tap → decision → result → link down → receipt saved): median "
        f"{statistics.median(charge):.1f} ms, min {min(charge):.1f} ms, max {max(charge):.1f} ms"
    )
    for name, values in figures.items():
        print(f"  {name:9} p50 {statistics.median(values):6.1f} ms  p95 {p95(values):6.1f} ms")
    summary = {}
    for name, values in figures.items():
        summary[f"{name}_p50_ms"] = round(statistics.median(values), 1)
        summary[f"{name}_p95_ms"] = round(p95(values), 1)
    if args.demo:
        walls = [demo_wall() for _ in range(3)]
        print(f"nfcpay demo wall time, 3 runs: median {statistics.median(walls):.2f} s "
              f"({', '.join(f'{w:.2f}' for w in walls)})")  # fmt: skip
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
