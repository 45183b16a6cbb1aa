"""Time group payment (issue 5, acceptance 5).

1. ``--rounds`` 4-member group payments over the loopback reader, every terminal its own
   ``nfcpay`` process as people would run it: the collector's ``group collect`` while four
   members ``group join`` one after the other (collect), then ``merchant charge`` with
   ``target pay --bill`` (pay). Python start-up of each process is included; the median
   start-up of one ``nfcpay`` command is printed to put it in proportion.
2. The server-side time of one authorization: ``--requests`` payment requests against a real
   server process on localhost (keep-alive HTTP, so the figure is the server's work plus a
   fraction of a millisecond), a single-grant payment vs a 4-member group bill with the
   collector's own share.

    .venv/bin/python scripts/bench_group.py --rounds 3 --requests 40
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import free_udp_port, start_server

from nfcpay import crypto
from nfcpay.client import PaymentClient
from nfcpay.terminals.account import connect, init_terminal
from nfcpay.terminals.home import TerminalHome
from nfcpay.testing.server import signed_means

MEMBERS = 4
CARDS = ("4111111111111111", "5555555555554444", "4012888888881881", "378282246310005")
SHOP = {"name": "Bench", "category": "5812", "region": "KR-11", "settlement_account": "B-1"}


def nfcpay(root: Path, home: str, *args: str, device: str | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "nfcpay", "--json", "--home", str(root / home)]
    if device:
        command += ["--device", device]
    return subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def done(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    if process.returncode != 0:
        raise SystemExit(f"command failed ({process.returncode}): {out} {err}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def set_up_counter(root: Path, url: str) -> None:
    """A collector with a wallet, four members with cards, and a merchant."""
    home = TerminalHome(root / "col")
    init_terminal(home, role="target", label="collector", server_url=url)
    with connect(home) as client:
        client.add_wallet(10**9, "KRW")
    for i in range(MEMBERS):
        home = TerminalHome(root / f"m{i}")
        init_terminal(home, role="user", label=f"member {i}", server_url=url)
        with connect(home) as client:
            client.add_card(CARDS[i], "12/39", 10**9, "KRW")
    init_terminal(
        TerminalHome(root / "shop"), role="merchant", label="shop", server_url=url, merchant=SHOP
    )


def group_round(root: Path) -> tuple[float, float]:
    """One bill: (collect seconds, pay seconds)."""
    device = f"loopback:{free_udp_port()}"
    started = time.perf_counter()
    collector = nfcpay(
        root, "col", "group", "collect", "--total", "100,000", "--members", str(MEMBERS),
        "--timeout", "60", device=device,
    )  # fmt: skip
    for i in range(MEMBERS):
        done(nfcpay(root, f"m{i}", "group", "join", "--yes", "--timeout", "30", device=device))
    bill = done(collector)["bill"]
    collected = time.perf_counter()
    device = f"loopback:{free_udp_port()}"
    shop = nfcpay(root, "shop", "merchant", "charge", "--amount", "100,000", device=device)
    pay = nfcpay(root, "col", "target", "pay", "--bill", bill["bill_id"], device=device)
    assert done(pay)["status"] == "approved" and done(shop)["status"] == "approved"
    return collected - started, time.perf_counter() - collected


def startup(root: Path) -> float:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        done(nfcpay(root, "col", "terminal", "show"))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- server-side authorization time ----------------------------------------------------------


def register(url: str, role: str) -> tuple[PaymentClient, Any, dict[str, Any]]:
    key = crypto.generate_terminal_key()
    client, info = PaymentClient.register_terminal(
        url, key, role=role, label=role, merchant=SHOP if role == "merchant" else None
    )
    return client, key, info


def authorization_times(url: str, requests: int) -> tuple[list[float], list[float]]:
    shop, _, shop_info = register(url, "merchant")
    collector, col_key, col_info = register(url, "target")
    own = collector.add_wallet(10**12, "KRW")["source_id"]
    members = []
    for i in range(MEMBERS):
        client, _, info = register(url, "user")
        source = client.add_card(CARDS[i], "12/39", 10**12, "KRW")["source_id"]
        members.append((client, info["terminal_id"], source))
    until = datetime.now(UTC) + timedelta(hours=1)

    def grant(member: tuple[PaymentClient, str, str], share: int, bill: str | None) -> Any:
        client, owner, source = member
        answer = client.issue_grant(
            source, [col_info["terminal_id"]], amount_cap=share, currency="KRW",
            valid_until=until, bill_id=bill,
        )  # fmt: skip
        gid = answer["grant"]["grant_id"]
        usage = crypto.usage_auth(
            crypto.b64d(answer["auth_code"]), gid, owner, col_info["terminal_id"]
        )
        return gid, usage, share

    def pay(grants: list[Any], amount: int, own_amount: int | None, bill: str | None) -> float:
        challenge = secrets.token_bytes(16)
        means = signed_means(
            col_key, presenting_terminal=col_info["terminal_id"],
            merchant_id=shop_info["merchant_id"], challenge=challenge, amount=amount,
            currency="KRW", purpose=SHOP["category"], grants=grants,
            own_source_id=own if own_amount else None, own_amount=own_amount, bill_id=bill,
        )  # fmt: skip
        started = time.perf_counter()
        answer = shop.authorize_payment(
            amount=amount, currency="KRW", challenge=challenge, means=means, bill_id=bill
        )
        elapsed = time.perf_counter() - started
        assert answer["status"] == "approved", answer
        return elapsed

    single, group = [], []
    for _ in range(requests):
        single.append(pay([grant(members[0], 10_000, None)], 10_000, None, None))
        bill = collector.open_bill(total=100_000, currency="KRW")["bill_id"]
        shares = [grant(member, 20_000, bill) for member in members]
        group.append(pay(shares, 100_000, 20_000, bill))
    return single, group


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="also print a JSON summary line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server, url = start_server(root / "server")
        try:
            set_up_counter(root, url)
            rounds = [group_round(root) for _ in range(args.rounds)]
            boot = startup(root)
            single, group = authorization_times(url, args.requests)
        finally:
            server.terminate()
            server.wait()
    collect = statistics.median(r[0] for r in rounds)
    pay = statistics.median(r[1] for r in rounds)
    print(f"4-member group payment over loopback, median of {args.rounds} bills:")
    print(f"  collect (4 member taps, 5 processes): {collect:.2f} s")
    print(f"  pay (merchant charge + target pay --bill, 2 processes): {pay:.2f} s")
    print(f"  total: {collect + pay:.2f} s   (one nfcpay process start-up: {boot:.2f} s)")
    ms = 1000
    print(f"Authorization on localhost, median (p90) of {args.requests}:")
    for name, times in (("single grant", single), ("4-member group bill", group)):
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"  {name}: {statistics.median(times) * ms:.1f} ms ({p90 * ms:.1f} ms)")
    single_ms, group_ms = statistics.median(single) * ms, statistics.median(group) * ms
    print(f"  group / single: {group_ms / single_ms:.2f}")
    if args.json:
        summary = {
            "collect_s": round(collect, 3),
            "pay_s": round(pay, 3),
            "total_s": round(collect + pay, 3),
            "startup_s": round(boot, 3),
            "single_auth_p50_ms": round(single_ms, 2),
            "group4_auth_p50_ms": round(group_ms, 2),
            "group_to_single_ratio": round(group_ms / single_ms, 3),
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
