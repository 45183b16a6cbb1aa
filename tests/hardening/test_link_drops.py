"""The NFC link drops at every message of the give, pay and group flows (issue 6).

Each case runs the two terminals as real ``nfcpay`` processes over the loopback reader
against a real server process, with ``NFCPAY_FAULT_LINK_DROP`` (see
:mod:`nfcpay.transport.faults`) set on one side: the link goes silent just before that
side sends, or just after it receives, its N-th message. Then:

* both processes end with the NFC status (4) or the outcome the README documents for it;
* every home and the server agree (server state via ``state_snapshot``): no grant half
  handed over, no payment charged but unrecorded, nothing pending after ``merchant
  settle`` and a wallet refresh (a target receipt whose means never reached the server
  stays ``unknown``: the server has no payment for it so far);
* the retry a person would make (the command again, or what the error message says)
  completes, and in the end exactly one grant was issued / one payment charged.

Terminal homes are created in-process against the server (registration is not under test);
each case has its own homes and loopback port, and the server is shared by the module, so
server state is compared on the rows of the case's own terminals. 30 cases: give 6, pay 8,
group join 8, bill payment 8.
"""

from __future__ import annotations

import re
import subprocess
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from nfcpay import crypto
from nfcpay.records import GrantRecord
from nfcpay.split import plan_explicit
from nfcpay.terminals import bill as bills
from nfcpay.terminals.account import connect, init_terminal
from nfcpay.terminals.held import held_entry
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.merchant import receipts as merchant_receipts
from nfcpay.terminals.merchant import settle
from nfcpay.terminals.user import Rights, grant_record, issue
from nfcpay.terminals.wallet import refresh
from nfcpay.testing.server import DEFAULT_MERCHANT, ServerProcess, state_snapshot
from nfcpay.transport.faults import ENV
from tests.support.cli import Cli, Done, finish, free_udp_port

pytestmark = [pytest.mark.slow, pytest.mark.nfc_sim]
T = TypeVar("T")

TAP_TIMEOUT = "15"
#: The collector waits for three taps (the member, the member again, Bo).
COLLECT_TIMEOUT = "45"
#: Cases of one side run this many at a time: all of them (3-4), so that the waits for a
#: vanished peer overlap; 2 cores stay busy with the processes' start-up.
LANES = 4
NFC = 4
#: A person taps again after exit 4. The retries carry no fault, but the loopback stack
#: itself can lose a link on a starved machine; the retry is then simply repeated.
RETRIES = 3
#: Each side's messages in order, per conversation (see nfcpay.terminals.exchange).
GIVE = {"target": ("send", "recv", "send"), "user": ("recv", "send", "recv")}
PAY = {"target": ("send", "recv", "send", "recv"), "merchant": ("recv", "send", "recv", "send")}
SPLIT = {"member": ("send", "recv", "send", "recv"), "collector": ("recv", "send", "recv", "send")}


def drops(pattern: tuple[str, ...]) -> list[str]:
    """One fault per message of a side: ``("send", "recv", "send")`` → send:1, recv:1, send:2."""
    return [f"{kind}:{pattern[: i + 1].count(kind)}" for i, kind in enumerate(pattern)]


def run_cases(
    root: Path, server: ServerProcess, side: str, pattern: tuple[str, ...], case: Case
) -> None:
    """Run ``case`` once per message of ``side``, :data:`LANES` at a time (each on its own
    loopback port and homes); report every failing fault."""

    def one(spec: str) -> None:
        counter = Counter(root / spec.replace(":", "-"), server, (side, spec))
        try:
            case(counter, spec)
        finally:
            counter.close()

    specs = drops(pattern)
    with ThreadPoolExecutor(LANES) as pool:
        futures = {spec: pool.submit(one, spec) for spec in specs}
    failures = [
        f"{ENV}={spec} on the {side}:\n" + "".join(traceback.format_exception(error)[-2:])
        for spec, future in futures.items()
        if (error := future.exception()) is not None
    ]
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


class Counter:
    """Homes of one case, and its terminal processes (one of them with the fault)."""

    def __init__(self, root: Path, server: ServerProcess, fault: tuple[str, str]) -> None:
        self.root = root
        self.server = server
        self.cli = Cli(root, server.url)
        self.faulty = Cli(root, server.url)
        self.faulty.env[ENV] = fault[1]
        self.fault_side = fault[0]
        self.device = f"loopback:{free_udp_port()}"
        self.processes: list[subprocess.Popen[str]] = []
        self.ids: set[str] = set()

    def home(self, name: str, role: str) -> TerminalHome:
        home = TerminalHome(self.root / name)
        identity, _ = init_terminal(
            home,
            role=role,
            label=name,
            server_url=self.server.url,
            merchant=DEFAULT_MERCHANT if role == "merchant" else None,
        )
        self.ids.update(filter(None, (identity.terminal_id, identity.merchant_id)))
        return home

    def start(
        self, name: str, *args: str, fault: bool = False, timeout: str = TAP_TIMEOUT
    ) -> subprocess.Popen[str]:
        runner = self.faulty if fault else self.cli
        process = runner.start(name, *args, "--timeout", timeout, device=self.device)
        self.processes.append(process)
        return process

    def close(self) -> None:
        """Kill what a failed assertion left running."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            if process.stdout is not None and not process.stdout.closed:
                process.communicate()

    def tap(self, waiting: tuple[str, ...], tapping: tuple[str, ...]) -> tuple[Done, Done]:
        """One tap between a waiting and a tapping terminal (each named by its home); the
        one whose home is named like the fault's side carries the fault."""
        first = self.start(*waiting, fault=waiting[0] == self.fault_side)
        second = self.start(*tapping, fault=tapping[0] == self.fault_side)
        return finish(first), finish(second)

    def clean_tap(self, waiting: tuple[str, ...], tapping: tuple[str, ...]) -> tuple[Done, Done]:
        first, second = self.start(*waiting), self.start(*tapping)
        return finish(first), finish(second)

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """``state_snapshot`` cut down to the rows of this case's terminals (other cases run
        at the same time): their sources, grants, payments, and every row naming one."""
        snapshot = self.server.query(state_snapshot)
        ids = set(self.ids)
        for table in ("funding_sources", "grants", "payments"):  # each names the one before
            ids.update(row[0] for row in snapshot[table] if ids.intersection(map(str, row)))
        return {
            table: [row for row in rows if any(i in str(cell) for cell in row for i in ids)]
            for table, rows in snapshot.items()
        }


Case = Callable[[Counter, str], None]


def retried(tap: Callable[[], T], done: Callable[[T], bool]) -> T:
    """Tap again until ``done``, as a person would after the NFC status (at most RETRIES)."""
    for _ in range(RETRIES - 1):
        outcome = tap()
        if done(outcome):
            return outcome
    return tap()


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Table → number of rows added or changed."""
    return {
        table: len(set(after[table]) - set(before[table]))
        for table in after
        if after[table] != before[table]
    }


def server_grants(server: ServerProcess, issuer: str) -> list[dict[str, Any]]:
    rows = server.query(
        lambda tx: tx.all(
            "SELECT grant_id, remaining_amount, remaining_uses, max_uses, bill_id, status "
            "FROM grants WHERE issuing_terminal = ? ORDER BY created_at",
            (issuer,),
        )
    )
    keys = ("grant_id", "remaining_amount", "remaining_uses", "max_uses", "bill_id", "status")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def server_payments(server: ServerProcess, merchant_id: str) -> list[str]:
    rows = server.query(
        lambda tx: tx.all("SELECT payment_id FROM payments WHERE merchant_id = ?", (merchant_id,))
    )
    return [row[0] for row in rows]


def assert_complete(entry: dict[str, Any], issuer: TerminalHome, holder: str) -> None:
    """A held grant is whole: its record parses and its usage-auth is the issuer's."""
    record = GrantRecord.from_json(entry["record"])
    auth_code = crypto.b64d(issuer.get("grants", record.grant_id)["auth_code"])
    expected = crypto.usage_auth(auth_code, record.grant_id, issuer.identity().terminal_id, holder)
    assert record.allowed_terminal == holder and record.usage_auth == expected


# --- give: user give (waits) <-> target receive (taps) -------------------------------------


@pytest.mark.parametrize("side", GIVE)
def test_give(tmp_path: Path, server: ServerProcess, side: str) -> None:
    run_cases(tmp_path, server, side, GIVE[side], give_case)


def give_case(counter: Counter, spec: str) -> None:
    server = counter.server
    user = counter.home("user", "user")
    with connect(user) as client:
        client.add_card("4111111111111111", "12/39", 500_000, "KRW")
    target = counter.home("target", "target")
    target_id = target.identity().terminal_id
    user_id = user.identity().terminal_id
    give_args = ("give", "--amount", "30,000", "--uses", "2", "--yes")
    before = counter.snapshot()

    give, receive = counter.tap(("user", "user", *give_args), ("target", "target", "receive"))
    assert give.status == NFC, give
    # Only an ack that arrived before the user's link dropped lets the target finish.
    ack_delivered = (counter.fault_side, spec) == ("user", "recv:2")
    assert receive.status in ((0, NFC) if ack_delivered else (NFC,)), receive
    issued = server_grants(server, user_id)
    assert len(issued) <= 1 and all(g["remaining_uses"] == g["max_uses"] for g in issued)
    assert sorted(e["grant"]["grant_id"] for e in user.items("grants")) == sorted(
        g["grant_id"] for g in issued
    )
    held = list(target.items("grants"))
    assert {e["grant_id"] for e in held} <= {g["grant_id"] for g in issued}
    for entry in held:
        assert_complete(entry, user, target_id)
    if receive.status == 0:
        assert [e["grant_id"] for e in held] == [receive.data["grant"]["grant_id"]]
    assert set(changed(before, counter.snapshot())) <= {"grants"}

    # The retry: the same command, or handing over the grant the error message names.
    if issued:
        assert given_grant(give) == issued[0]["grant_id"], give.data
    for _ in range(RETRIES):
        grant_id = given_grant(give)
        args = ("give", "--grant", grant_id, "--yes") if grant_id else give_args
        give, receive = counter.clean_tap(("user", "user", *args), ("target", "target", "receive"))
        if give.status == receive.status == 0:
            break
    assert (give.status, receive.status) == (0, 0), (give, receive)
    [grant] = server_grants(server, user_id)
    assert [e["grant_id"] for e in target.items("grants")] == [grant["grant_id"]]
    assert_complete(target.get("grants", grant["grant_id"]), user, target_id)
    assert changed(before, counter.snapshot()) == {"grants": 1}


def given_grant(give: Done) -> str | None:
    """The grant a `user give` handed over, or says (on exit 4) to hand over again."""
    if give.status == 0:
        return str(give.data["grant"]["grant_id"])
    named = re.search(r"give --grant (g_\w+)", give.data.get("message", ""))
    return named.group(1) if named else None


# --- pay: merchant charge (waits) <-> target pay (taps) -------------------------------------


def pay_scene(counter: Counter) -> tuple[TerminalHome, TerminalHome, str]:
    """A merchant and a target holding a 50,000 KRW / 3-use grant; returns the grant id."""
    user = counter.home("user", "user")
    target = counter.home("target", "target")
    merchant = counter.home("merchant", "merchant")
    target_id = target.identity().terminal_id
    with connect(user) as client:
        client.add_card("4111111111111111", "12/39", 500_000, "KRW")
        grant = issue(user, client, to=target_id, rights=Rights(amount_cap=50_000, max_uses=3))
    record = grant_record(user.get("grants", grant["grant_id"]), user.identity(), target_id)
    target.put("grants", record.grant_id, held_entry(record))
    return merchant, target, record.grant_id


def settle_both(merchant: TerminalHome, target: TerminalHome) -> None:
    """What the terminals do after a failed tap: `merchant settle`, `target wallet`."""
    with connect(merchant) as client:
        settle(merchant, client)
    with connect(target) as client:
        refresh(target, client)


def pay_with_drop(
    counter: Counter,
    merchant: TerminalHome,
    target: TerminalHome,
    charge_args: tuple[str, ...],
    pay_args: tuple[str, ...],
) -> None:
    """One faulted tap at the counter, the retry, then `merchant settle` and `target wallet`:
    one charge in all, and both terminals say so."""
    merchant_id = str(merchant.identity().merchant_id)
    before = counter.snapshot()
    charge, pay = counter.tap(charge_args, pay_args)
    assert pay.status == NFC, pay
    payments = server_payments(counter.server, merchant_id)
    if charge.status == 0:  # the server decided; only the result was lost on the way back
        assert charge.data["status"] == "approved", charge
        assert payments == [charge.data["payment_id"]]
        if counter.fault_side == "merchant":  # dropped before sending the result
            assert charge.data["delivered"] is False, charge
    else:
        assert charge.status == NFC, charge
        assert payments == [] and list(merchant.items("receipts")) == [], charge
        assert counter.snapshot() == before  # nothing at all reached the server
        # The customer taps again at once (before `target wallet`) until the merchant has
        # charged; if only its result is lost on the way, the wallet settles it below.
        charge, pay = retried(
            lambda: counter.clean_tap(charge_args, pay_args), lambda taps: taps[0].status == 0
        )
        assert charge.status == 0 and charge.data["status"] == "approved", charge
        assert pay.status in (0, NFC), pay
        if pay.status == 0:
            assert charge.data["payment_id"] == pay.data["payment_id"]

    settle_both(merchant, target)
    charges = merchant_receipts(merchant)
    assert [c.status for c in charges] == ["approved"]
    assert server_payments(counter.server, merchant_id) == [charges[0].payment_id]
    # The charged receipt is settled as approved; one whose means the server never took
    # stays unknown (no payment so far: the merchant could still send them).
    states = [r["status"] for r in target.items("receipts")]
    assert states.count("approved") == 1 and set(states) <= {"approved", "unknown"}, states
    [approved] = [r for r in target.items("receipts") if r["status"] == "approved"]
    assert approved["payment_id"] == charges[0].payment_id, approved
    assert changed(before, counter.snapshot()).get("payments") == 1
    assert counter.server.audit() == []


@pytest.mark.parametrize("side", PAY)
def test_pay(tmp_path: Path, server: ServerProcess, side: str) -> None:
    run_cases(tmp_path, server, side, PAY[side], pay_case)


def pay_case(counter: Counter, spec: str) -> None:
    merchant, target, grant_id = pay_scene(counter)
    charge_args = ("merchant", "merchant", "charge", "--amount", "12,000")
    pay_with_drop(counter, merchant, target, charge_args, ("target", "target", "pay"))
    [grant] = server_grants(counter.server, target_issuer(target, grant_id))
    assert (grant["remaining_amount"], grant["remaining_uses"]) == (38_000, 2)
    assert target.get("grants", grant_id)["last_known"]["remaining_uses"] == 2


def target_issuer(target: TerminalHome, grant_id: str) -> str:
    return str(target.get("grants", grant_id)["record"]["issuing_terminal"])


# --- group: group collect (waits) <-> group join (taps) -------------------------------------


def new_bill(collector: TerminalHome, shares: list[int], total: int) -> dict[str, Any]:
    """A bill the collector opened with the server, as ``group collect --total`` does."""
    with connect(collector) as client:
        return bills.open_bill(
            collector,
            collector.identity(),
            client,
            plan_explicit(total, shares),
            mode="exact",
            expires_in=timedelta(minutes=15),
        )


def member(counter: Counter, name: str, card: str) -> TerminalHome:
    home = counter.home(name, "user")
    with connect(home) as client:
        client.add_card(card, "12/39", 300_000, "KRW")
    return home


@pytest.mark.parametrize("side", SPLIT)
def test_group_join(tmp_path: Path, server: ServerProcess, side: str) -> None:
    run_cases(tmp_path, server, side, SPLIT[side], join_case)


def join_case(counter: Counter, spec: str) -> None:
    server = counter.server
    side = counter.fault_side
    collector = counter.home("collector", "target")
    ann = member(counter, "member", "4111111111111111")
    member(counter, "bo", "5555555555554444")
    bill = new_bill(collector, [30_000, 30_000], 90_000)
    ann_id = ann.identity().terminal_id
    collect = ("collector", "group", "collect", "--bill", bill["bill_id"])
    join = ("group", "join", "--yes")
    before = counter.snapshot()

    collecting = counter.start(*collect, fault=side == "collector", timeout=COLLECT_TIMEOUT)
    joined = finish(counter.start("member", *join, fault=side == "member"))
    assert joined.status == NFC, joined
    issued = server_grants(server, ann_id)
    assert len(issued) <= 1 and [e["grant"]["grant_id"] for e in ann.items("grants")] == [
        g["grant_id"] for g in issued
    ]
    kept = bills.load(collector, bill["bill_id"])
    taken = [s["grant_id"] for s in bills.joined(kept)]
    assert taken in ([], [g["grant_id"] for g in issued])
    assert [e["grant_id"] for e in collector.items("grants")] == taken
    for entry in collector.items("grants"):
        assert_complete(entry, ann, collector.identity().terminal_id)

    # The member taps again (the collector still waits for the second slot), then Bo.
    again = retried(lambda: finish(counter.start("member", *join)), lambda d: d.status == 0)
    assert again.status == 0, again
    bo = retried(lambda: finish(counter.start("bo", *join)), lambda d: d.status == 0)
    assert bo.status == 0, bo
    done = finish(collecting)
    assert done.status == 0 and done.data["bill"]["status"] == "ready", done
    [ann_grant] = server_grants(server, ann_id)
    assert ann_grant["bill_id"] == bill["bill_id"]
    assert again.data["grant"]["grant_id"] == ann_grant["grant_id"]
    slots = {s["member"]: s["grant_id"] for s in done.data["bill"]["slots"]}
    assert slots[ann_id] == ann_grant["grant_id"]
    assert changed(before, counter.snapshot()) == {"grants": 2}


# --- the collector pays the bill: merchant charge <-> target pay --bill -----------------------


@pytest.mark.parametrize("side", PAY)
def test_bill_pay(tmp_path: Path, server: ServerProcess, side: str) -> None:
    run_cases(tmp_path, server, side, PAY[side], bill_pay_case)


def bill_pay_case(counter: Counter, spec: str) -> None:
    collector = counter.home("target", "target")
    merchant = counter.home("merchant", "merchant")
    ann = member(counter, "ann", "4111111111111111")
    collector_id = collector.identity().terminal_id
    with connect(collector) as client:
        own = client.add_wallet(200_000, "KRW")["source_id"]
    bill = new_bill(collector, [30_000], 70_000)
    with connect(ann) as client:
        answer = client.issue_grant(
            client.list_sources()[0]["source_id"],
            [collector_id],
            amount_cap=30_000,
            currency="KRW",
            max_uses=1,
            bill_id=bill["bill_id"],
        )
    ann.put("grants", answer["grant"]["grant_id"], answer)
    record = grant_record(answer, ann.identity(), collector_id)
    collector.put("grants", record.grant_id, held_entry(record))
    bills.record_join(bill, bills.open_slots(bill)[0], ann.identity().terminal_id, record.grant_id)
    bills.save(collector, bill)
    charge_args = ("merchant", "merchant", "charge", "--amount", "70,000")
    pay_args = ("target", "target", "pay", "--bill", bill["bill_id"], "--own-source", own)
    pay_with_drop(counter, merchant, collector, charge_args, pay_args)
    [payment_id] = server_payments(counter.server, str(merchant.identity().merchant_id))
    kept = bills.load(collector, bill["bill_id"])
    paid_by = collector.get("receipts", kept["payment"]["receipt_id"])
    assert kept["status"] == "paid" and paid_by["status"] == "approved", kept
    assert kept["payment"]["payment_id"] in (payment_id, None)  # None: settled, not told
