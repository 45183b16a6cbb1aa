"""Time one ``merchant charge`` over the loopback reader: tap → server decision → result.

Starts the bundled server, registers a user, a target and a merchant, gives the target one
grant with plenty of uses, then runs the merchant and the target as two processes that
charge and pay ``--taps`` times. The merchant waits (listens) as at a counter; the target
taps once the merchant is listening again, so each figure is one tap: link up, hello,
challenge, signed means, the server's authorization, and the result back at the target.

    .venv/bin/python scripts/bench_charge.py --taps 30

Also prints the wall time of one ``nfcpay demo`` run with ``--demo``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import free_udp_port, start_server

from nfcpay.money import Money
from nfcpay.terminals import merchant as merchant_flow
from nfcpay.terminals import target as target_flow
from nfcpay.terminals.account import connect, init_terminal
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.user import Rights, grant_record, issue
from nfcpay.transport.reader import open_reader

AMOUNT = 1_000
PAUSE_BETWEEN_TAPS = 0.8


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
    with connect(terminal) as client, open_reader(device) as reader:
        for _ in range(taps):
            done = merchant_flow.charge(terminal, client, reader, Money(AMOUNT, "KRW"), timeout=30)
            if done.status != "approved":
                raise SystemExit(f"charge not approved: {done}")


def run_target(home: Path, device: str, taps: int) -> None:
    terminal = TerminalHome(home)
    timings = []
    with open_reader(device) as reader:
        for _ in range(taps):
            time.sleep(PAUSE_BETWEEN_TAPS)
            started = time.perf_counter()
            paid = target_flow.pay(terminal, reader, timeout=30)
            timings.append(time.perf_counter() - started)
            if paid.status != "approved":
                raise SystemExit(f"payment not approved: {paid.receipt}")
    print(json.dumps({"ms": [round(1000 * t, 1) for t in timings]}))


def bench(taps: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="nfcpay-bench-") as tmp:
        root = Path(tmp)
        server, url = start_server(root / "server")
        try:
            set_up(root, url, taps)
            device = f"loopback:{free_udp_port()}"
            me = [sys.executable, __file__, "--device", device, "--taps", str(taps)]
            shop = subprocess.Popen([*me, "--role", "merchant", "--home", str(root / "merchant")])
            payer = subprocess.run(
                [*me, "--role", "target", "--home", str(root / "target")],
                capture_output=True,
                text=True,
                check=True,
            )
            shop.wait(60)
        finally:
            server.terminate()
            server.wait(10)
    return list(json.loads(payer.stdout)["ms"])


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
    args = parser.parse_args()
    if args.role == "merchant":
        run_merchant(args.home, args.device, args.taps)
        return
    if args.role == "target":
        run_target(args.home, args.device, args.taps)
        return
    timings = bench(args.taps)
    print(
        f"merchant charge over loopback, tap → decision → result at the target, {len(timings)} "
        f"taps: median {statistics.median(timings):.1f} ms, min {min(timings):.1f} ms, "
        f"max {max(timings):.1f} ms"
    )
    if args.demo:
        walls = [demo_wall() for _ in range(3)]
        print(f"nfcpay demo wall time, 3 runs: median {statistics.median(walls):.2f} s "
              f"({', '.join(f'{w:.2f}' for w in walls)})")  # fmt: skip


if __name__ == "__main__":
    main()
