"""Tampering (issue 6): change any field of any record or API body and nothing is charged.

The field lists are derived at test time — from each record class's ``wire_fields()``
(nested structs and list items included) and from the pydantic request schemas — so a field
added later is tampered automatically. Each field gets the changes its kind allows: bit
flips and short or inverted bytes, ±1 / zero / negative / too-large integers, another real
terminal's, merchant's or grant's id, another or an unknown currency, another enum member,
a dropped, doubled or added list item; optional fields left out are put in.

Already covered elsewhere and not repeated: one hand-picked change per decline code
(tests/server/acceptance/test_declines.py: other key, other counter, amount after signing,
wrong usage-auth, ...), tampered request signatures and headers (test_access.py), random
bytes through the decoders (tests/records/test_fuzz.py).

Added here, all on real code paths:

* every bit flip and every field change of every record type decodes to a different
  record or is refused — never to the original;
* grant (user → target), challenge (merchant → target) and means (target → merchant)
  records changed in flight: tampered at the CBOR level, re-framed, decoded by
  ``decode_one``, kept and answered by a real target home (``held_entry``,
  ``choose_shares``, ``sign_means``: the target signs over what it received), forwarded by
  the merchant's ``api_means`` and signed client to one ``nfcpay server run`` process;
* means changed and signed again by the target itself (a dishonest target);
* every request body field changed after signing (in transit), and every payment body
  field changed by the merchant that signs the request.

A change ends refused on the wire (DecodeError), refused by the merchant terminal, rejected
by the API (4xx) or declined, and :func:`full_snapshot` shows nothing changed but the
documented owner notifications: a usage-auth mismatch (and, at the fifth, the grant's lock),
or a genuine usage-auth under a signature that no longer verifies (``forged_presentation``).
Exceptions are listed with their reason: HARMLESS and TARGET_MAY.

Hello, ack, split and result records carry no authority the server sees (the merchant takes
amount, currency and nonce from its own challenge, the identity from the signed means): they
get the byte-level test only.
"""

from __future__ import annotations

import copy
import json
import secrets
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import cbor2
import httpx
import pytest
from pydantic import BaseModel

from nfcpay import crypto
from nfcpay.client import PaymentClient
from nfcpay.errors import ApiError, Declined, DecodeError, EncodeError
from nfcpay.records import (
    RECORD_CLASSES,
    ChallengeRecord,
    GrantRecord,
    MeansRecord,
    NfcpayRecord,
    decode_message,
    decode_one,
    encode_message,
    presentation,
)
from nfcpay.records.base import WireStruct
from nfcpay.records.fields import (
    Binary,
    Choice,
    Currency,
    Flag,
    Integer,
    Items,
    Kind,
    Nested,
    Text,
    Time,
)
from nfcpay.records.samples import sample_records
from nfcpay.server import schemas
from nfcpay.terminals import merchant, target
from nfcpay.terminals.account import connect, init_terminal
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.open_amount import price
from nfcpay.terminals.user import Rights, grant_record, issue
from nfcpay.testing.server import DEFAULT_MERCHANT, PaymentScene, ServerProcess, Terminal
from tests.support.harness import Snapshot, changed_tables, full_snapshot, start_server
from tests.support.records import framed
from tests.support.signing import sign

Json = dict[str, Any]
Path_ = tuple[Any, ...]
#: Notifications a tampered payment may leave: the usage-auth brute-force counter and its
#: lock, and the owner told that a genuine usage-auth came without its terminal's signature.
COUNTER_KINDS = {"usage_auth_mismatch", "grant_locked", "forged_presentation"}
AMOUNT = 1_000

# --- mutations, by field kind --------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    """One change to one field: ``path`` of CBOR keys / list indexes, the new wire value."""

    field: str
    label: str
    path: Path_
    value: Any  # DROP removes the key

    @property
    def id(self) -> str:
        return f"{self.field}-{self.label}"


DROP = object()


@dataclass
class Others:
    """Real values from elsewhere in the world: another terminal's id, another grant, ..."""

    ids: dict[str, str]

    def like(self, value: str) -> str:
        """Another id of the same kind as ``value`` (``t_…`` → another real terminal)."""
        prefix = value.split("_", 1)[0]
        return self.ids.get(prefix) or crypto.new_id(prefix)


def changed_text(value: str) -> str:
    """``value`` with its middle character changed to a digit every text kind allows.

    The middle, not the last: the last base64url character of a 16-byte value carries only
    two bits, and a change to the other four decodes to the same bytes.
    """
    i = len(value) // 2
    return value[:i] + ("1" if value[i : i + 1] != "1" else "2") + value[i + 1 :]


def kind_mutations(kind: Kind, value: Any, others: Others) -> list[tuple[str, Any]]:
    """(label, new wire value) for a present field of ``kind`` whose wire value is ``value``."""
    if isinstance(kind, Binary):
        return [
            ("first_bit", bytes([value[0] ^ 0x01]) + value[1:]),
            ("last_bit", value[:-1] + bytes([value[-1] ^ 0x80])),
            ("short", value[:-1]),
            ("inverted", bytes(b ^ 0xFF for b in value)),
        ]
    if isinstance(kind, Integer):
        return [
            ("plus_1", value + 1),
            ("minus_1", value - 1),
            ("zero", 0),
            ("negative", -max(value, 1)),
            ("too_large", kind.high + 1),
            ("huge", 2**64),
        ]
    if isinstance(kind, Currency):
        return [("other", "USD" if value != "USD" else "EUR"), ("unknown", "XXX")]
    if isinstance(kind, Flag):
        return [("negated", not value)]
    if isinstance(kind, Choice):
        others_codes = [(f"as_{m.value}", c) for c, m in kind.members.items() if c != value]
        return [*others_codes, ("unknown_code", max(kind.members) + 1)]
    if isinstance(kind, Time):
        return [("later", value + 86_400), ("earlier", value - 1)]
    if isinstance(kind, Text):
        out = [("changed", changed_text(value)), ("empty", "")]
        if "_" in value:
            out.insert(0, ("other_real", others.like(value)))
        return out
    raise AssertionError(f"no mutations for {type(kind).__name__}: add them here")


def plausible(kind: Kind, others: Others) -> Any:
    """A wire value of ``kind`` for an optional field that was left out."""
    if isinstance(kind, Binary):
        return bytes(range(kind.min_len))
    if isinstance(kind, Integer):
        return max(kind.low, 1)
    if isinstance(kind, Choice):
        return max(kind.members)
    if isinstance(kind, Time):
        return 4_102_444_800
    if isinstance(kind, Text):
        probe = kind.pattern.pattern.split("_", 1)[0]
        return others.like(probe) if probe.isalpha() else "7995"
    if isinstance(kind, Items):
        return [plausible(kind.item, others)]
    if isinstance(kind, Currency):
        return "USD"
    if isinstance(kind, Nested):
        return {
            spec.key: plausible(spec.kind, others)
            for spec in kind.struct.wire_fields()
            if spec.required
        }
    raise AssertionError(f"no plausible value for {type(kind).__name__}: add one here")


def struct_mutations(
    struct: type[WireStruct], wire: Json, others: Others, prefix: str = "", path: Path_ = ()
) -> list[Mutation]:
    """Every mutation of every field of ``struct`` (recursing into lists and nested structs)."""
    out = []
    for spec in struct.wire_fields():
        name, where = f"{prefix}{spec.name}", (*path, spec.key)
        if spec.key not in wire:
            out.append(Mutation(name, "put_in", where, plausible(spec.kind, others)))
            continue
        value = wire[spec.key]
        if not spec.required:
            out.append(Mutation(name, "left_out", where, DROP))
        if isinstance(spec.kind, Items):
            out += items_mutations(spec.kind, value, others, name, where)
        else:
            out += [
                Mutation(name, lbl, where, v) for lbl, v in kind_mutations(spec.kind, value, others)
            ]
    return out


def items_mutations(
    kind: Items, value: list[Any], others: Others, name: str, path: Path_
) -> list[Mutation]:
    out = [Mutation(name, "emptied", path, [])]
    if value:
        out.append(Mutation(name, "first_twice", path, [*value, value[0]]))
        item = kind.item
        if isinstance(item, Nested):
            out += struct_mutations(item.struct, value[0], others, f"{name}[0].", (*path, 0))
        else:
            out += [
                Mutation(f"{name}[0]", lbl, (*path, 0), v)
                for lbl, v in kind_mutations(item, value[0], others)
            ]
    out.append(Mutation(name, "added", path, [*value, plausible(kind.item, others)]))
    return out


def apply(wire: Json, mutation: Mutation) -> Json:
    out = copy.deepcopy(wire)
    *parents, last = mutation.path
    node: Any = out
    for key in parents:
        node = node[key]
    if mutation.value is DROP:
        del node[last]
    else:
        node[last] = mutation.value
    return out


def tampered_octets(record: NfcpayRecord, mutation: Mutation) -> bytes:
    """The NDEF message of ``record`` with ``mutation`` applied to its CBOR map, under the
    version byte its type writes for the changed fields (a challenge whose amount is left
    out is an open one, version 2), as a careful attacker would write it."""
    wire = apply(record.to_wire(), mutation)
    return framed(
        record.type_name, bytes([written_as(record, wire)]) + cbor2.dumps(wire, canonical=True)
    )


def written_as(record: NfcpayRecord, wire: dict[int, Any]) -> int:
    """The payload version ``record``'s type writes ``wire`` with; the original's when
    ``wire`` is no record at all (the decoder refuses it whatever the version)."""
    try:
        return type(record).from_wire(wire, record.type_name).payload_version()
    except (DecodeError, EncodeError):
        return record.payload[0]


def field_names(struct: type[WireStruct], prefix: str = "") -> set[str]:
    names = set()
    for spec in struct.wire_fields():
        names.add(f"{prefix}{spec.name}")
        kind = spec.kind.item if isinstance(spec.kind, Items) else spec.kind
        if isinstance(kind, Nested):
            names |= field_names(kind.struct, f"{prefix}{spec.name}[0].")
    return names


SAMPLE_OTHERS = Others({"t": "t_othertarget", "m": "m_othershop", "g": "g_othergrant"})


@pytest.mark.parametrize("name", sorted(RECORD_CLASSES))
def test_every_field_of_every_record_type_gets_mutations(name: str) -> None:
    """Every declared field, nested ones included, is changed (a field of a kind with no
    mutations yet fails here, in kind_mutations or plausible)."""
    record = sample_records()[name]
    mutations = struct_mutations(type(record), record.to_wire(), SAMPLE_OTHERS)
    assert {m.field for m in mutations} >= field_names(type(record))


@pytest.mark.parametrize("name", sorted(RECORD_CLASSES))
def test_no_single_bit_flip_or_field_change_decodes_to_the_same_record(name: str) -> None:
    """Flip every bit of the encoded record, and apply every field mutation: each result is
    refused (DecodeError) or decodes to a different, canonical record — never the original."""
    record = sample_records()[name]
    octets = encode_message([record])
    variants = [
        octets[:i] + bytes([octets[i] ^ (1 << bit)]) + octets[i + 1 :]
        for i in range(len(octets))
        for bit in range(8)
    ]
    mutations = struct_mutations(type(record), record.to_wire(), SAMPLE_OTHERS)
    variants += [tampered_octets(record, m) for m in mutations]
    refused = 0
    for variant in variants:
        try:
            decoded = decode_message(variant)
        except DecodeError:
            refused += 1
            continue
        assert decoded != [record], variant.hex()
        assert encode_message(decoded) == variant
    assert 0 < refused < len(variants)


# --- the world: a server process and terminal homes ---------------------------------------


@dataclass
class World:
    """A server process and terminal homes (user, target, shop; a stranger and another shop)
    with one signed client each; ``others`` are real ids to swap in."""

    server: ServerProcess
    homes: dict[str, TerminalHome]
    clients: dict[str, PaymentClient]
    others: Others = field(default_factory=lambda: Others({}))
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def snapshot(self) -> Snapshot:
        return self.server.query(full_snapshot)

    def terminal_id(self, name: str) -> str:
        return self.homes[name].identity().terminal_id

    def give(self, **rights: Any) -> GrantRecord:
        """The user terminal has a grant issued for the target: its NFC record."""
        rights.setdefault("amount_cap", 50_000)
        rights.setdefault("max_uses", 5)
        user, target_id = self.homes["user"], self.terminal_id("target")
        grant = issue(user, self.clients["user"], to=target_id, rights=Rights(**rights))
        return grant_record(user.get("grants", grant["grant_id"]), user.identity(), target_id)

    def challenge(self, amount: int = AMOUNT) -> ChallengeRecord:
        """What the merchant terminal sends (as in ``merchant._converse``)."""
        return ChallengeRecord(
            merchant_id=str(self.homes["shop"].identity().merchant_id),
            currency="KRW",
            amount=amount,
            nonce=secrets.token_bytes(16),
            purpose=DEFAULT_MERCHANT["categories"][0],
        )

    def present(self, grant_octets: bytes, challenge_octets: bytes) -> bytes:
        """The target keeps the grant it received and answers the challenge it received."""
        home = self.homes["target"]
        grant = decode_one(grant_octets, GrantRecord)
        home.put("grants", grant.grant_id, target.held_entry(grant))
        received = decode_one(challenge_octets, ChallengeRecord)
        challenge = price(received, TYPED_AT_AN_OPEN_CHALLENGE if received.is_open else None)
        shares = target.choose_shares(home, challenge, [grant.grant_id])
        return encode_message([target.sign_means(home, home.identity(), challenge, shares)])

    def charge(self, challenge: ChallengeRecord, means_octets: bytes) -> Json:
        """The merchant decodes the means and asks the server, with its own challenge."""
        means = decode_one(means_octets, MeansRecord)
        request = merchant.payment_request(challenge, means)
        return merchant.ask_server(self.clients["shop"], request)


#: What the target's person enters at a challenge turned open in flight: not the price the
#: merchant asked (typing exactly that is charged exactly that: see
#: :func:`test_a_challenge_turned_open_in_flight_charges_only_what_the_merchant_asked`).
TYPED_AT_AN_OPEN_CHALLENGE = AMOUNT + 1


ROLES = {
    "user": "user",
    "target": "target",
    "shop": "merchant",
    "stranger": "target",
    "other_shop": "merchant",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("tampering")
    # Many deliberately broken requests come from few terminals: lift the auth-failure
    # flood guard so every one reaches the signature check instead of a 429.
    server = start_server(root / "server", env={"NFCPAY_SERVER_AUTH_FAILURE_BURST": "100000"})
    w = World(server, {}, {})
    try:
        for name, role in ROLES.items():
            home = w.homes[name] = TerminalHome(root / name)
            details = {**DEFAULT_MERCHANT, "name": name} if role == "merchant" else None
            init_terminal(home, role=role, label=name, server_url=server.url, merchant=details)
            w.clients[name] = connect(home)
        w.clients["user"].add_card("4111111111111111", "12/39", 10_000_000, "KRW")
        other_merchant = w.homes["other_shop"].identity().merchant_id
        ids = {"t": w.terminal_id("stranger"), "m": str(other_merchant), "g": w.give().grant_id}
        w.others = Others(ids)
        yield w
        assert server.audit() == []
    finally:
        for client in w.clients.values():
            client.close()
        w.http.close()
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def outcome(attempt: Callable[[], Json]) -> str:
    """``refused`` (DecodeError), ``refused:<code>`` (the merchant terminal), ``rejected:<code>``
    (4xx) or the server's decision."""
    try:
        answer = attempt()
    except DecodeError:
        return "refused"
    except Declined as exc:  # by the merchant terminal, before the server is asked
        return f"refused:{exc.code}"
    except ApiError as exc:
        assert 400 <= exc.status < 500, exc
        return f"rejected:{exc.code}"
    if answer["status"] == "approved":
        return "approved"
    assert answer["payment_id"] is None
    return f"declined:{answer['decline_code']}"


def assert_only_counters_changed(world: World, before: Snapshot, result: str) -> None:
    """Nothing changed but usage-auth counters: mismatch notifications to the user (the
    owner), one for each ``usage_auth_mismatch`` decline, and a grant lock."""
    after = world.snapshot()
    assert set(changed_tables(before, after)) <= {"notifications", "grants"}
    new_notes = set(after["notifications"]) - set(before["notifications"])
    assert {row for row in new_notes if not (set(row) & COUNTER_KINDS)} == set()
    assert all(world.terminal_id("user") in row for row in new_notes)
    told = any("usage_auth_mismatch" in row for row in new_notes)
    assert told == (result == "declined:usage_auth_mismatch"), (result, new_notes)
    if any("forged_presentation" in row for row in new_notes):
        assert result == "declined:bad_signature", (result, new_notes)
    for row in set(after["grants"]) - set(before["grants"]):
        assert "locked" in row


# --- NDEF records through the terminals and the server -------------------------------------

#: Changes the server cannot see, with why that is harmless. Anything not listed here must
#: end refused, rejected or declined.
HARMLESS = {
    # The merchant sends the server its own bill; the target's copy only steers which held
    # grants it offers, and the target does not sign it. (The purpose is signed: a changed
    # one no longer matches the merchant's request, hole 3.)
    "challenge.bill_id": "approved",
}
#: What the server answers on each record's untampered path (the control). The grant's
#: scene breaks the real grant's per-use cap, purposes and region: a server that believed
#: the target's copy of the rights could be talked into approving it.
CONTROL = {"grant": "declined:over_per_use_cap", "challenge": "approved", "means": "approved"}
TIGHT_RIGHTS = {
    "amount_cap": 1_000,
    "max_uses": 3,
    "per_use_cap": 500,
    "expires_in": timedelta(hours=1),
    "purposes": ("5411", "5499"),
}
#: Fields of the grant record the server does check (through the means): changed, they
#: decline for that reason; any other change leaves the control's answer.
GRANT_IDENTITY = {"grant.grant_id", "grant.usage_auth"}


def scene_records(world: World, tampered: str) -> dict[str, NfcpayRecord]:
    """The grant, challenge and means of one payment; the grant scene has tight rights."""
    tight = tampered == "grant"
    grant = world.give(**TIGHT_RIGHTS) if tight else world.give()
    challenge = world.challenge(600 if tight else AMOUNT)
    means = decode_one(
        world.present(encode_message([grant]), encode_message([challenge])), MeansRecord
    )
    return {"grant": grant, "challenge": challenge, "means": means}


def record_cases() -> list[Any]:
    """(record, mutation id) for every mutation of the three records a payment passes.

    Mutation ids come from the samples, which have the same fields present as the scene's
    records (checked by :func:`test_tampered_record_charges_nothing`).
    """
    cases = []
    samples = sample_records()
    for name in CONTROL:
        record = samples[name]
        for m in struct_mutations(type(record), record.to_wire(), SAMPLE_OTHERS):
            cases.append(pytest.param(name, m.id, id=f"{name}.{m.id}"))
    return cases


def pay_with(world: World, records: dict[str, NfcpayRecord], tampered: str, octets: bytes) -> Json:
    """Run the payment with record ``tampered`` replaced by ``octets`` on its way."""
    challenge = records["challenge"]
    assert isinstance(challenge, ChallengeRecord)
    if tampered == "means":
        return world.charge(challenge, octets)
    wire = {name: encode_message([r]) for name, r in records.items()}
    wire[tampered] = octets
    return world.charge(challenge, world.present(wire["grant"], wire["challenge"]))


@pytest.mark.parametrize("record", sorted(CONTROL))
def test_untampered_payment_gives_the_control_answer(world: World, record: str) -> None:
    records = scene_records(world, record)
    octets = encode_message([records[record]])
    assert outcome(lambda: pay_with(world, records, record, octets)) == CONTROL[record]


@pytest.mark.parametrize(("record", "mutation_id"), record_cases())
def test_tampered_record_charges_nothing(world: World, record: str, mutation_id: str) -> None:
    records = scene_records(world, record)
    original = records[record]
    mutations = struct_mutations(type(original), original.to_wire(), world.others)
    (mutation,) = [m for m in mutations if m.id == mutation_id]
    before = world.snapshot()
    result = outcome(lambda: pay_with(world, records, record, tampered_octets(original, mutation)))
    key = f"{record}.{mutation.field.split('[', 1)[0]}"
    if key in HARMLESS:
        assert result in ("refused", HARMLESS[key]), result
        return
    if record != "grant":
        assert result != "approved", result
    elif key in GRANT_IDENTITY:
        assert result not in ("approved", CONTROL["grant"]), result
    else:
        assert result in ("refused", CONTROL["grant"]), result
    assert_only_counters_changed(world, before, result)


def re_signed(world: World, octets: bytes, challenge: ChallengeRecord) -> bytes:
    """``octets`` (a changed means) signed again with the target's own key, as the target
    itself could; a record that no longer decodes is passed on unchanged."""
    try:
        means = decode_one(octets, MeansRecord)
    except DecodeError:
        return octets
    return encode_message(
        [presentation.signed(challenge, means, world.homes["target"].private_key())]
    )


def test_a_challenge_turned_open_in_flight_charges_only_what_the_merchant_asked(
    world: World,
) -> None:
    """Left out, the challenge's amount makes an open challenge: the person enters an amount
    and the target signs it, but the merchant asks the server for its own challenge's amount.
    Only the very amount it asked is charged; any other is declined."""
    records = scene_records(world, "challenge")
    fixed = records["challenge"]
    assert isinstance(fixed, ChallengeRecord)
    opened = ChallengeRecord(
        merchant_id=fixed.merchant_id, currency="KRW", nonce=fixed.nonce, purpose=fixed.purpose
    )
    grant = encode_message([records["grant"]])
    before = world.snapshot()
    means = world.present(grant, encode_message([opened]))  # the person types AMOUNT + 1
    assert outcome(lambda: world.charge(fixed, means)) == "declined:shares_do_not_add_up"
    assert_only_counters_changed(world, before, "declined:shares_do_not_add_up")
    home = world.homes["target"]
    priced = opened.priced(AMOUNT)
    shares = target.choose_shares(home, priced, [records["grant"].grant_id])
    typed_right = encode_message([target.sign_means(home, home.identity(), priced, shares)])
    answer = world.charge(fixed, typed_right)
    assert answer["status"] == "approved"
    assert world.clients["shop"].get_payment(answer["payment_id"])["amount"] == AMOUNT


#: Changes the target may make to its own means and sign: allowed, and charged exactly as
#: the challenge asks (the split mode of a plain payment changes nothing).
TARGET_MAY = {"split_mode"}


def re_signed_cases() -> list[Any]:
    cases = []
    for param in record_cases():
        record, mutation_id = param.values
        field_name = mutation_id.split("-", 1)[0].split("[", 1)[0]
        if record != "means" or field_name == "signature":
            continue
        cases.append(pytest.param(mutation_id, id=mutation_id))
    return cases


@pytest.mark.parametrize("mutation_id", re_signed_cases())
def test_means_changed_and_re_signed_by_the_target_charges_nothing_else(
    world: World, mutation_id: str
) -> None:
    """A dishonest target changes its own means and signs them: declined, or charged exactly
    what the merchant's challenge asks and nothing else."""
    records = scene_records(world, "means")
    challenge, original = records["challenge"], records["means"]
    assert isinstance(challenge, ChallengeRecord)
    mutations = struct_mutations(MeansRecord, original.to_wire(), world.others)
    (mutation,) = [m for m in mutations if m.id == mutation_id]
    octets = re_signed(world, tampered_octets(original, mutation), challenge)
    before = world.snapshot()
    result = outcome(lambda: world.charge(challenge, octets))
    if mutation.field in TARGET_MAY:
        assert result in ("refused", "approved"), result
        return
    assert result != "approved", result
    assert_only_counters_changed(world, before, result)


# --- API bodies ----------------------------------------------------------------------------


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The request model inside ``annotation`` (``MeansIn``, ``list[GrantShareIn] | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = submodel(arg)
        if found is not None:
            return found
    return None


#: Values for optional body fields a request left out (a new optional field must be named).
PUT_IN: dict[str, Any] = {
    "purpose": "7995",
    "category": "7995",
    "bill_id": "b_tamperedbill",
    "own_source_id": "src_tampered",
    "own_amount": 1,
    "split_mode": "remainder",
    "amount": 1,
    "merchant": DEFAULT_MERCHANT,
    "number": "4111111111111111",
    "expiry": "12/39",
    "limit": 1,
    "balance": 1,
    "max_uses": 2,
    "per_use_cap": 1,
    "valid_from": "2020-01-01T00:00:00Z",
    "valid_until": "2200-01-01T00:00:00Z",
    "purposes": ["7995"],
    "regions": ["US-CA"],
    "merchants": ["m_tampered"],
    "allowance": {"period": "day", "amount": 1, "time_zone": "UTC"},
    "tap_fingerprint": "00" * 8,
    "grants": [{"grant_id": "g_tampered", "usage_auth": "AAAA", "amount": 1}],
}


def json_mutations(value: Any, others: Others) -> list[tuple[str, Any]]:
    if isinstance(value, bool):
        return [("negated", not value)]
    if isinstance(value, int):
        return [
            ("plus_1", value + 1),
            ("minus_1", value - 1),
            ("zero", 0),
            ("negative", -max(value, 1)),
            ("huge", 10**16),
            ("float", value + 0.5),
            ("string", str(value)),
        ]
    if isinstance(value, str):
        out = [("changed", changed_text(value)), ("empty", ""), ("number", 1)]
        if "_" in value[:4]:
            out.insert(0, ("other_real", others.like(value)))
        return out
    if isinstance(value, list):
        return [("emptied", []), ("first_twice", [*value, value[0]]), ("null", None)]
    raise AssertionError(f"no mutations for JSON {type(value).__name__}: add them here")


def body_mutations(
    model: type[BaseModel], body: Json, others: Others, prefix: str = "", path: Path_ = ()
) -> list[Mutation]:
    """Every mutation of every field ``model`` declares, as ``body`` holds it."""
    out = []
    for name, info in model.model_fields.items():
        label, where = f"{prefix}{name}", (*path, name)
        if name not in body:
            out.append(Mutation(label, "put_in", where, PUT_IN[name]))
            continue
        if not info.is_required():
            out.append(Mutation(label, "left_out", where, DROP))
        value, inner = body[name], submodel(info.annotation)
        if inner is not None and isinstance(value, dict):
            out.append(Mutation(label, "emptied", where, {}))
            out += body_mutations(inner, value, others, f"{label}.", where)
            continue
        out += [Mutation(label, lbl, where, v) for lbl, v in json_mutations(value, others)]
        if inner is not None and value:
            out += body_mutations(inner, value[0], others, f"{label}[0].", (*where, 0))
    return out


def holds_list(annotation: Any) -> bool:
    """Whether ``annotation`` is (or wraps) a ``list[...]``."""
    if typing.get_origin(annotation) is list:
        return True
    return any(holds_list(arg) for arg in typing.get_args(annotation))


def model_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every field name of ``model``, nested ones as ``means.grants[0].amount``."""
    names = set()
    for name, info in model.model_fields.items():
        names.add(f"{prefix}{name}")
        inner = submodel(info.annotation)
        if inner is not None:
            names |= model_fields(
                inner, f"{prefix}{name}{'[0]' if holds_list(info.annotation) else ''}."
            )
    return names


def as_terminal(world: World, name: str) -> Terminal:
    """An nfcpay.testing Terminal for one of the world's homes (its client and key)."""
    home = world.homes[name]
    identity = home.identity()
    info = {"merchant_id": identity.merchant_id, "merchant": {"categories": identity.categories}}
    return Terminal(world.clients[name], home.private_key(), info)


def payment_scene_of(world: World, **rights: Any) -> PaymentScene:
    """A PaymentScene on the world's user, target and shop with a fresh grant."""
    source = world.clients["user"].list_sources()[0]
    issued = world.clients["user"].issue_grant(
        source["source_id"],
        [world.terminal_id("target")],
        currency="KRW",
        **{"amount_cap": 50_000, "max_uses": 5, **rights},
    )
    return PaymentScene(
        as_terminal(world, "user"),
        as_terminal(world, "target"),
        as_terminal(world, "shop"),
        source,
        issued["grant"],
        crypto.b64d(issued["auth_code"]),
    )


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    signer: Terminal | None
    body: Json
    #: A registration is signed by the key it registers.
    key: Any = None


def calls(world: World) -> dict[str, Call]:
    """One valid signed call per request model (schemas.*In that is a route's body)."""
    scene = payment_scene_of(world)
    user, shop = as_terminal(world, "user"), as_terminal(world, "shop")
    target = as_terminal(world, "target")
    source = scene.source["source_id"]
    bill = target.client.open_bill(total=10, currency="KRW")
    paid = scene.pay(AMOUNT)
    key = crypto.generate_terminal_key()
    rights = {k: v for k, v in PUT_IN.items() if k in schemas.RightsIn.model_fields}
    handoff = world.give(amount_cap=10)
    return {
        "TerminalIn": Call(
            "POST",
            "/v1/terminals",
            None,
            {
                "role": "merchant",
                "label": "tampered",
                "public_key": crypto.b64e(crypto.public_key_bytes(key)),
                "merchant": DEFAULT_MERCHANT,
            },
            key,
        ),
        "FundingSourceIn": Call(
            "POST",
            "/v1/funding-sources",
            user,
            {
                "kind": "card",
                "currency": "KRW",
                "number": "4111111111111111",
                "expiry": "12/39",
                "limit": 5,
            },
        ),
        "SourceStatusIn": Call(
            "PATCH", f"/v1/funding-sources/{source}", user, {"status": "active"}
        ),
        "GrantIn": Call(
            "POST",
            "/v1/grants",
            user,
            {
                "source_id": source,
                "allowed_terminals": [world.terminal_id("target")],
                "currency": "KRW",
                "rights": {"amount_cap": 10, **rights, "per_use_cap": 10},
                "bill_id": bill["bill_id"],
            },
        ),
        "BillIn": Call(
            "POST", "/v1/bills", target, {"total": 10, "currency": "KRW", "mode": "remainder"}
        ),
        "PaymentIn": Call("POST", "/v1/payments", shop, scene.payment_body(AMOUNT)),
        # The shop's own set again: accepted, and it changes nothing the other cases rely on.
        "CategoriesIn": Call(
            "PUT",
            "/v1/merchants/me/categories",
            shop,
            {"categories": DEFAULT_MERCHANT["categories"]},
        ),
        "RefundIn": Call("POST", f"/v1/payments/{paid['payment_id']}/refunds", shop, {"amount": 1}),
        "DeliveryIn": Call(
            "POST",
            "/v1/deliveries",
            user,
            {
                "grant_id": handoff.grant_id,
                "to": handoff.allowed_terminal,
                "record": crypto.b64e(encode_message([handoff])),
            },
        ),
    }


def send(
    world: World, call: Call, body: Json, *, signed_body: Json | None = None
) -> httpx.Response:
    """``body`` under a signature over ``signed_body`` (default: ``body`` itself)."""
    raw = json.dumps(body).encode()
    signed = raw if signed_body is None else json.dumps(signed_body).encode()
    if call.signer is None:
        headers = sign(None, call.method, call.path, signed, key=call.key)
    else:
        headers = sign(call.signer, call.method, call.path, b"", signed_body=signed)
    headers["Idempotency-Key"] = f"k-{secrets.token_hex(8)}"
    return world.http.request(
        call.method, world.server.url + call.path, content=raw, headers=headers
    )


def request_models(world: World) -> set[str]:
    """The request body models of every route, from the server's own OpenAPI document."""
    spec = world.http.get(f"{world.server.url}/openapi.json").json()
    refs = set()
    for operations in spec["paths"].values():
        for operation in operations.values():
            schema = operation.get("requestBody", {}).get("content", {})
            for media in schema.values():
                refs.add(media["schema"]["$ref"].rsplit("/", 1)[1])
    return refs


def test_every_request_body_is_tampered(world: World) -> None:
    built = calls(world)
    assert set(built) == request_models(world)
    for name, call in built.items():
        model = getattr(schemas, name)
        tampered = {m.field for m in body_mutations(model, call.body, world.others)}
        assert tampered == model_fields(model), name


def test_untampered_calls_are_accepted(world: World) -> None:
    """The control for the in-transit cases: every body, signed as sent, is accepted."""
    for name, call in calls(world).items():
        response = send(world, call, call.body)
        assert response.status_code in (200, 201), (name, response.text)
        assert response.json().get("status") in (
            None, "approved", "active", "refunded", "open", "pending"
        ), name  # fmt: skip


def test_every_body_field_changed_in_transit_is_refused(world: World) -> None:
    """Any change after the terminal signed the body: refused (401, or 422 when the changed
    body is not even well-formed), and nothing changes. The signature covers the body's
    bytes, so one change per field is enough here (the kinds of change matter below)."""
    cases = 0
    built = calls(world)
    before = world.snapshot()
    for name, call in built.items():
        mutations = body_mutations(getattr(schemas, name), call.body, world.others)
        for mutation in {m.field: m for m in reversed(mutations)}.values():
            response = send(world, call, apply(call.body, mutation), signed_body=call.body)
            assert response.status_code in (401, 422), (name, mutation, response.text)
            cases += 1
    assert changed_tables(before, world.snapshot()) == []
    assert cases == sum(len(model_fields(getattr(schemas, name))) for name in built)


def payment_cases() -> list[str]:
    return [m.id for m in body_mutations(schemas.PaymentIn, SAMPLE_PAYMENT, SAMPLE_OTHERS)]


#: A payment body of the shape :func:`payment_body` builds, for naming the cases.
SAMPLE_PAYMENT: Json = {
    "amount": 1,
    "currency": "KRW",
    "challenge": "AAAAAAAAAAAAAAAAAAAAAA",
    "means": {
        "version": 2,
        "presenting_terminal": "t_x",
        "grants": [{"grant_id": "g_x", "usage_auth": "AAAA", "amount": 1}],
        "signature": "AAAA",
    },
}


@pytest.mark.parametrize("mutation_id", payment_cases())
def test_payment_body_changed_by_the_merchant_charges_nothing(
    world: World, mutation_id: str
) -> None:
    """The merchant signs its request itself, but not the target's means: whatever it
    changes in the body is declined (or 422) and charges nothing."""
    scene = payment_scene_of(world, purposes=[DEFAULT_MERCHANT["categories"][0]])
    body = scene.payment_body(AMOUNT)
    (mutation,) = [
        m for m in body_mutations(schemas.PaymentIn, body, world.others) if m.id == mutation_id
    ]
    before = world.snapshot()
    response = send(
        world, Call("POST", "/v1/payments", scene.merchant, body), apply(body, mutation)
    )
    assert response.status_code in (200, 422), response.text
    answer = response.json()
    assert answer.get("status") != "approved", response.text
    assert_only_counters_changed(world, before, f"declined:{answer.get('decline_code')}")
