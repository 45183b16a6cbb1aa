"""The user terminal (card owner): funding sources, grants, and handing a grant over NFC.

``give`` waits for the target terminal's tap (FIG. 5, steps 510-545): the target introduces
itself with a hello, the server issues a grant bound to that terminal (or an existing grant
is used), and the grant with its usage-auth goes back in the same tap. The auth code never
leaves this terminal; only the usage-auth derived for the one allowed terminal does.

Whoever taps only *says* who it is, and a relay with a registered terminal of its own could
tap in the target's place. So a grant issued to whoever tapped is issued *unconfirmed*: the
server checks that the fingerprint the hello claims is that terminal's registered key's and
answers with the terminal's registered label and fingerprint; once the tap is over (a tap
never waits for a person), :func:`confirm_given` shows them to the owner, who compares the
fingerprint with the one on the target's screen. Yes confirms the grant; anything else
revokes it. Labels are chosen by their owners: the fingerprint is what tells two terminals
apart. A grant bound ahead (``to``, or ``issue`` then ``give --grant``) needs no confirmation.

Grants issued here are kept in the home's ``grants/`` collection with their auth code
(``{"grant": <server view>, "auth_code": <b64url>}``) so that ``give --grant ID`` can hand
over a grant issued ahead of time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from nfcpay import crypto
from nfcpay.allowance import Period
from nfcpay.client import PaymentClient
from nfcpay.errors import ApiError, ConfigError, Declined, NfcPayError, TransportError
from nfcpay.records import AckRecord, GrantRecord, HelloRecord, Role, encode_message
from nfcpay.terminals import exchange
from nfcpay.terminals.exchange import Status, quiet
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.transport.channel import Channel
from nfcpay.transport.reader import Reader

Json = dict[str, Any]


@dataclass(frozen=True)
class Allowance:
    """A cap that renews: at most ``amount`` (minor units) per ``period``, counted in the IANA
    zone ``time_zone``."""

    period: Period
    amount: int
    time_zone: str

    def to_json(self) -> Json:
        """As the server's API takes it (``rights.allowance``)."""
        return {"period": self.period.value, "amount": self.amount, "time_zone": self.time_zone}


@dataclass(frozen=True)
class Rights:
    """What a grant allows (amounts in minor units of the terminal's currency)."""

    amount_cap: int
    max_uses: int = 1
    per_use_cap: int | None = None
    expires_in: timedelta | None = None
    purposes: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    merchants: tuple[str, ...] = ()
    allowance: Allowance | None = None


class Confirmation(StrEnum):
    """Whether the owner confirmed the terminal a grant was handed to."""

    #: Bound ahead to a terminal the owner named: nothing to confirm.
    NOT_NEEDED = "not_needed"
    #: Handed to whoever tapped; the owner has not answered yet (the grant pays nothing).
    PENDING = "pending"
    CONFIRMED = "confirmed"
    #: The owner said no: the grant is revoked.
    DECLINED = "declined"
    #: No answer in time: the grant is revoked.
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class Tapped:
    """The terminal that tapped, as the server has it registered: what the owner compares."""

    terminal_id: str
    label: str
    key_fingerprint: bytes

    @classmethod
    def from_json(cls, data: Json) -> Tapped:
        """From the server's ``tapped`` answer (the fingerprint in hex)."""
        return cls(data["terminal_id"], data["label"], bytes.fromhex(data["key_fingerprint"]))

    @property
    def shown_fingerprint(self) -> str:
        return crypto.format_fingerprint(self.key_fingerprint)

    def to_json(self) -> Json:
        return {
            "terminal_id": self.terminal_id,
            "label": self.label,
            "key_fingerprint": self.shown_fingerprint,
        }


@dataclass(frozen=True)
class Given:
    """A grant handed over: the server's view of it and the terminal that now holds it, and
    for a grant handed to whoever tapped, that terminal and the owner's answer."""

    grant: Json
    target_terminal: str
    tapped: Tapped | None = None
    confirmation: Confirmation = Confirmation.NOT_NEEDED

    @property
    def ok(self) -> bool:
        return self.confirmation in {Confirmation.NOT_NEEDED, Confirmation.CONFIRMED}

    def to_json(self) -> Json:
        out: Json = {
            "ok": self.ok,
            "grant": self.grant,
            "target_terminal": self.target_terminal,
            "confirmation": self.confirmation.value,
        }
        if self.tapped is not None:
            out["tapped"] = self.tapped.to_json()
        return out


#: Asked once the tap is over: the owner's answer on :attr:`Given.tapped` (CONFIRMED,
#: DECLINED or TIMED_OUT).
Ask = Callable[[Given], Confirmation]


def always_confirm(_: Given) -> Confirmation:
    """An :data:`Ask` for scripts that confirm without asking (``--yes``)."""
    return Confirmation.CONFIRMED


def default_source(client: PaymentClient, currency: str) -> str:
    """The first active funding source in ``currency``."""
    for source in client.list_sources():
        if source["status"] == "active" and source["currency"] == currency:
            return str(source["source_id"])
    raise ConfigError(
        f"no active {currency} funding source: add one with `nfcpay user add-card` "
        "(or add-wallet / add-bank)"
    )


def issue(
    home: TerminalHome,
    client: PaymentClient,
    *,
    to: str,
    rights: Rights,
    source_id: str | None = None,
    tap_fingerprint: bytes | None = None,
) -> Json:
    """Have the server issue a grant for terminal ``to``; keep it and its auth code here.

    ``tap_fingerprint``: ``to`` only tapped (its hello claimed this key fingerprint), so the
    grant waits for the owner's confirmation; the stored entry keeps ``tapped``."""
    identity = home.require_role("user")
    valid_until = datetime.now(UTC) + rights.expires_in if rights.expires_in else None
    try:
        answer = client.issue_grant(
            source_id or default_source(client, identity.currency),
            [to],
            amount_cap=rights.amount_cap,
            currency=identity.currency,
            max_uses=rights.max_uses,
            per_use_cap=rights.per_use_cap,
            valid_until=valid_until,
            purposes=list(rights.purposes) or None,
            regions=list(rights.regions) or None,
            merchants=list(rights.merchants) or None,
            tap_fingerprint=tap_fingerprint,
            allowance=rights.allowance.to_json() if rights.allowance else None,
        )
    except ApiError as exc:
        raise _older_server(exc) from exc
    grant: Json = answer["grant"]
    entry = {"grant": grant, "auth_code": answer["auth_code"]}
    home.put("grants", grant["grant_id"], entry | _only(tapped=answer.get("tapped")))
    return grant


def _older_server(exc: ApiError) -> ApiError:
    """A server that does not know ``tap_fingerprint`` cannot hold a grant for confirmation."""
    if exc.status != 422 or exc.field != "tap_fingerprint":
        return exc
    return ApiError(
        "the payment server runs an older nfcpay that cannot hold a grant until you confirm "
        "who tapped: upgrade nfcpay on the server, or bind the grant ahead with --to",
        code="upgrade_server",
        status=exc.status,
        request_id=exc.request_id,
    )


def _only(**values: Any) -> Json:
    return {key: value for key, value in values.items() if value is not None}


def give(
    home: TerminalHome,
    client: PaymentClient,
    reader: Reader,
    what: Rights | str,
    *,
    source_id: str | None = None,
    to: str | None = None,
    timeout: float | None = None,
    status: Status = quiet,
) -> Given:
    """Wait for the target's tap and hand it a grant: a new one with these :class:`Rights`,
    or the grant with this id issued earlier. With ``to`` a new grant is issued before the
    tap, and any other terminal that taps is refused.

    A new grant issued in the tap comes back :attr:`Confirmation.PENDING`: settle it with
    :func:`confirm_given` (left alone, the server withdraws it after its window)."""
    identity = home.require_role("user")
    entry = None
    if isinstance(what, str) or to is not None:
        entry = obtain(home, client, what, to, source_id)
    expected = to or (entry["grant"]["allowed_terminals"][0] if entry else None)
    with exchange.tap(
        reader, exchange.GIVE_SERVICE, offer=True, timeout=timeout, status=status, what="give"
    ) as channel:
        hello = exchange.receive(channel, HelloRecord)
        target = _check_hello(channel, hello, expected)
        if entry is None:
            status(f"Target {target} tapped; asking the server for a grant ...")
            entry = _obtain_in_tap(channel, home, client, what, hello, source_id)
        try:
            exchange.send(channel, grant_record(entry, identity, target))
            ack = exchange.receive(channel, AckRecord)
        except TransportError as exc:
            raise _unconfirmed(exc, entry["grant"]["grant_id"], target) from exc
    if not ack.accepted:
        raise Declined(f"target {target} refused the grant: {ack.message}", code=str(ack.code))
    return _handed_over(entry, target)


def _handed_over(entry: Json, target: str) -> Given:
    """What was given: a grant issued to whoever tapped and not confirmed yet is pending."""
    if "tapped" not in entry or entry["grant"]["status"] != "unconfirmed":
        return Given(entry["grant"], target)
    return Given(entry["grant"], target, Tapped.from_json(entry["tapped"]), Confirmation.PENDING)


def confirm_given(home: TerminalHome, client: PaymentClient, given: Given, ask: Ask) -> Given:
    """Settle a grant handed to whoever tapped, with the link already down: ``ask`` the owner
    about :attr:`Given.tapped`; a yes confirms the grant on the server, anything else (no, no
    answer in time, Ctrl-C) revokes it. Any other :class:`Given` is returned as it is."""
    if given.confirmation is not Confirmation.PENDING:
        return given
    grant_id = given.grant["grant_id"]
    try:
        answer = ask(given)
    except BaseException:
        with contextlib.suppress(NfcPayError):  # unconfirmed, it lapses on the server anyway
            client.revoke_grant(grant_id)
        raise
    if answer is Confirmation.CONFIRMED:
        grant = client.confirm_grant(grant_id)
    else:
        grant = client.revoke_grant(grant_id)
    home.put("grants", grant_id, {**home.get("grants", grant_id), "grant": grant})
    return replace(given, grant=grant, confirmation=answer)


def give_by_tag(
    home: TerminalHome,
    client: PaymentClient,
    reader: Reader,
    what: Rights | str,
    *,
    to: str | None,
    source_id: str | None = None,
    timeout: float | None = None,
    status: Status = quiet,
) -> Given:
    """Write a grant bound ahead to ``to`` (or the grant with this id) on the next tag.

    For two readers that can only poll: the target reads it later with
    ``target receive --carrier tag``. A tag carries no hello, so the target is named
    first; a copy of the sticker is worthless elsewhere (the server checks the binding)
    and any other terminal that tries it alarms the owner.
    """
    from nfcpay.transport.tag import write_tag

    identity = home.require_role("user")
    if to is None and not isinstance(what, str):
        raise ConfigError("a grant on a tag is bound ahead: name its target with --to")
    entry = obtain(home, client, what, to, source_id)
    target = str(entry["grant"]["allowed_terminals"][0])
    if to is not None and to != target:
        raise ConfigError(f"grant {entry['grant']['grant_id']} is bound to {target}, not {to}")
    status(f"Hold an NFC tag (NTAG215/216, FeliCa Lite-S) to the reader: grant for {target}")
    record = grant_record(entry, identity, target)
    write_tag(reader, encode_message([record]), timeout=timeout)
    return Given(entry["grant"], target)


def _unconfirmed(exc: TransportError, grant_id: str, target: str) -> TransportError:
    """The link went while grant ``grant_id`` was on its way: the target may or may not
    hold it, so a retry must hand over this grant, not issue a second one."""
    return type(exc)(
        f"{exc.message}; grant {grant_id} may not have reached {target}: hand it over with "
        f"`nfcpay user give --grant {grant_id}` (or `nfcpay user revoke {grant_id}`), "
        "do not issue another",
        code=exc.code,
    )


def obtain(
    home: TerminalHome,
    client: PaymentClient,
    what: Rights | str,
    target: str | None,
    source_id: str | None,
    tap_fingerprint: bytes | None = None,
) -> Json:
    """The stored entry of grant ``what``, or of a new grant with rights ``what``."""
    if isinstance(what, str):
        return home.get("grants", what)
    if target is None:
        raise ValueError("a new grant needs its target terminal")
    grant = issue(
        home, client, to=target, rights=what, source_id=source_id, tap_fingerprint=tap_fingerprint
    )
    return home.get("grants", grant["grant_id"])


def _check_hello(channel: Channel, hello: HelloRecord, expected: str | None) -> str:
    if hello.role is not Role.TARGET:
        message = f"a {hello.role.value} terminal tapped; only a target terminal can hold a grant"
        exchange.refuse(channel, "wrong_role", message)
        raise Declined(message, code="wrong_role")
    if expected is not None and hello.terminal_id != expected:
        message = f"terminal {hello.terminal_id} tapped, but this grant is for {expected}"
        exchange.refuse(channel, "terminal_not_allowed", message)
        raise Declined(message, code="terminal_not_allowed")
    return hello.terminal_id


def _obtain_in_tap(
    channel: Channel,
    home: TerminalHome,
    client: PaymentClient,
    what: Rights | str,
    hello: HelloRecord,
    source_id: str | None,
) -> Json:
    """A new grant for the terminal whose ``hello`` this is, pending the owner's confirmation."""
    try:
        return obtain(home, client, what, hello.terminal_id, source_id, hello.key_fingerprint)
    except NfcPayError as exc:
        exchange.refuse(channel, "issue_failed", f"the owner's server refused: {exc.message}")
        raise


def grant_record(entry: Json, identity: Identity, target: str) -> GrantRecord:
    """The wire record for ``entry`` (a stored grant), with usage-auth for ``target``."""
    grant = entry["grant"]
    rights = grant["rights"]
    usage_auth = crypto.usage_auth(
        crypto.b64d(entry["auth_code"]), grant["grant_id"], identity.terminal_id, target
    )
    valid_until = rights.get("valid_until")
    allowance = rights.get("allowance") or {}
    return GrantRecord(
        grant_id=grant["grant_id"],
        virtual_card_number=grant["virtual_card_number"],
        issuing_terminal=identity.terminal_id,
        allowed_terminal=target,
        usage_auth=usage_auth,
        currency=grant["currency"],
        amount_cap=rights["amount_cap"],
        remaining_amount=grant["remaining_amount"],
        max_uses=rights["max_uses"],
        per_use_cap=rights.get("per_use_cap"),
        valid_until=datetime.fromisoformat(valid_until) if valid_until else None,
        purposes=tuple(rights.get("purposes") or ()),
        regions=tuple(rights.get("regions") or ()),
        merchants=tuple(rights.get("merchants") or ()),
        bill_id=grant.get("bill_id"),
        allowance_period=allowance.get("period"),
        allowance_amount=allowance.get("amount"),
        time_zone=allowance.get("time_zone"),
    )


def follow_notifications(
    client: PaymentClient, after: str | None = None, wait: float = 25.0
) -> Iterator[Json]:
    """Every notification newer than ``after``, forever (long-polls the server)."""
    while True:
        for item in client.notifications(after=after, wait=wait):
            after = item["notification_id"]
            yield item


def revoke(client: PaymentClient, grant_ids: Sequence[str]) -> list[Json]:
    return [client.revoke_grant(grant_id) for grant_id in grant_ids]
