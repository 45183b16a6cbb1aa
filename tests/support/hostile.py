"""Hostile requests for the API (issue 13) and the checks every answer to them must pass.

The material: JSON no well-behaved client sends — nested thousands deep, integers past 64
bits and past Python's 4,300-digit limit, NaN and Infinity, floats where integers belong,
instants at and beyond the UTC range with odd offsets and leap seconds, NUL, lone
surrogates, gigantic strings, duplicate keys — in odd encodings (BOM, UTF-16/32, invalid
UTF-8, truncated, empty) under odd content types, on path and query values too.

The checks (:func:`assert_answered`, :class:`LogWatch`): never a 5xx; every 4xx is the
API's one JSON error body (``error`` and ``message`` strings); no traceback in the server
log. A client's mistake is a 4xx; a 500 stays for the server's own bugs.

:class:`World` holds real terminals, a funding source, a grant and a payment of one server
process, so that mutated *valid* bodies get past the id look-ups to the code behind them
(a grant's dates are only formatted once its source and terminals exist).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import strategies as st

from nfcpay import crypto
from nfcpay.client import signed_headers
from nfcpay.money import MAX_MINOR
from nfcpay.testing.server import (
    PaymentScene,
    ServerProcess,
    Terminal,
    payment_scene,
)
from tests.support.harness import server_on


@dataclass(frozen=True)
class Raw:
    """JSON text put into a document as it is: what ``json.dumps`` cannot write (nesting
    without recursing, integers past 4,300 digits, a key twice)."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """A JSON object written with its pairs in order, duplicate keys included."""

    items: tuple[tuple[str, Any], ...]


def dump(value: Any, *, ascii_only: bool = True) -> str:
    """JSON text for ``value`` (which may hold :class:`Raw` and :class:`Pairs`); NaN and the
    infinities come out as ``NaN`` and ``Infinity``, as Python's json writes them."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs | dict):
        items = value.items if isinstance(value, Pairs) else tuple(value.items())
        inner = ",".join(
            f"{json.dumps(k, ensure_ascii=ascii_only)}:{dump(v, ascii_only=ascii_only)}"
            for k, v in items
        )
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_only=ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def nested(depth: int, shape: str) -> Raw:
    """``depth`` levels of arrays, objects, or unclosed arrays."""
    if shape == "array":
        return Raw("[" * depth + "]" * depth)
    if shape == "object":
        return Raw('{"a":' * depth + "0" + "}" * depth)
    return Raw("[" * depth)


#: The issue's named instants (legal ISO text, outside datetime's range in UTC), then their
#: neighbours just inside it and texts at the edges of what ISO 8601 allows.
OUT_OF_RANGE_INSTANTS = ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00")
EDGE_INSTANTS = (
    *OUT_OF_RANGE_INSTANTS,
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59.999999-00:01",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+00:01",
    "0000-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "+002030-01-01T00:00:00Z",
    "2030-06-30T23:59:60Z",
    "2030-12-31T23:59:60.5+00:00",
    "2030-01-01T24:00:00Z",
    "2030-01-01T00:00:00+23:59",
    "2030-01-01T00:00:00-23:59",
    "2030-01-01T00:00:00+24:00",
    "2030-01-01T00:00:00+05:30:15",
    "2030-01-01T00:00:00+0530",
    "2030-02-29T00:00:00Z",
    "2028-02-29T00:00:00Z",
    "2030-01-01T00:00:00.1234567890123Z",
    "2030-01-01",
    "2030-01-01T00:00:00",
    "20300101T000000Z",
    "",
)

integers = st.one_of(
    st.sampled_from(
        [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, MAX_MINOR + 1]
    ),
    st.integers(-(2**80), 2**80),
)
#: In range for most integer fields, so they reach the code behind the schema.
plausible_integers = st.sampled_from([1, 2, 10**6, 2**31 - 1, 2**31, MAX_MINOR - 1, MAX_MINOR])
number_texts = st.sampled_from(
    ["9" * 4300, "9" * 4301, "-" + "9" * 5000, "1e400", "-1e400", "1e-400", "-0", "0.0", "1.0"]
).map(Raw)
floats = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e308]) | st.floats()


def _edge_day(last: bool, minutes: int, offset: int) -> str:
    """The first or last day of datetime's range at a time of day, with an offset (both in
    minutes) that pushes it out of range in UTC when it is large enough: about half do."""
    sign = "-" if last else "+"
    day = "9999-12-31" if last else "0001-01-01"
    clock = f"{minutes // 60:02d}:{minutes % 60:02d}:59"
    return f"{day}T{clock}{sign}{offset // 60:02d}:{offset % 60:02d}"


edge_instants = st.sampled_from(EDGE_INSTANTS) | st.builds(
    _edge_day, st.booleans(), st.integers(0, 24 * 60 - 1), st.integers(0, 24 * 60 - 1)
)
instants = st.one_of(
    edge_instants,
    st.builds(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}{}".format,
        st.integers(0, 10_000) | st.sampled_from([0, 1, 1970, 9999, 10_000]),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.sampled_from(["", ".5", ".999999", ".9999999", ".000000001"]),
        st.sampled_from(["Z", "z", "+00:00", "-00:00", "+14:00", "-14:00", "+23:59", ""]),
    ),
    # Numbers are read as Unix time (seconds, or milliseconds past 2e10).
    st.sampled_from([2e10, 2e10 + 1, 253402300799, 253402300800, -62135596801, 1e20]),
)
strings = st.one_of(
    st.sampled_from(
        (
            *("", "\x00", "a\x00b", "\ud800", "\udfff\ud800", "\ufeff", "\u2028", "\u202e"),
            *("%00", "\U0001d7d7\U0001d7d7", "\u0663\u0664", "' OR '1'='1", "a" * 65, "a" * 201),
        )
    ),
    st.text(max_size=40),
    st.integers(10_000, 1_000_000).map(lambda n: "x" * n),
)
#: Short enough for most text fields, so they reach the code behind the schema.
plausible_strings = st.sampled_from(
    ["\u00e9", "\u202eabc", "\ufeffabc", "\u65e5\u672c", "\U0001f600", "a b", "\u0663\u0664\u0665"]
)
#: Past Python's recursion limit (1,000 frames, less what the server stands on) most often.
depths = st.one_of(
    st.sampled_from([1000, 5000, 100_000]), st.integers(950, 1100), st.integers(0, 100)
)
deep = st.builds(nested, depths, st.sampled_from(["array", "object", "unclosed"]))
leaves = st.one_of(
    deep, integers, number_texts, floats, instants, strings, st.booleans(), st.none()
)
hostile_values = (
    leaves | st.lists(leaves, max_size=3) | st.dictionaries(strings, leaves, max_size=3)
)
_INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT")


def kind(value: Any) -> str:
    """What a value in a valid body is, for :data:`OF_KIND`."""
    if isinstance(value, bool) or value is None:
        return "other"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "instant" if _INSTANT.match(value) else "text"
    return "container" if isinstance(value, dict | list) else "other"


#: Hostile values for a place holding a value of each kind, so that they get past the type
#: checks to the code behind them: edge instants for an instant, nesting for a container.
OF_KIND: dict[str, st.SearchStrategy[Any]] = {
    "integer": plausible_integers | integers | number_texts | floats,
    "instant": edge_instants | instants,
    "text": plausible_strings | strings,
    "container": deep | hostile_values,
    "other": hostile_values,
}


ENCODINGS = ("utf-8",) * 12 + (
    "utf-8 unescaped",
    "utf-8 with BOM",
    "utf-16",
    "utf-16-be",
    "utf-32",
    "invalid utf-8",
    "truncated",
    "empty",
    "blank",
)
CONTENT_TYPES = ("application/json",) * 12 + (
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "application/problem+json",
    "APPLICATION/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    'application/json; charset="',
    None,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document, the document itself first."""
    places = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            places += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            places += paths(item, (*prefix, index))
    return places


def at(value: Any, place: tuple[Any, ...]) -> Any:
    """The value at ``place`` (keys and indexes from :func:`paths`)."""
    for step in place:
        value = value[step]
    return value


def replaced(value: Any, place: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with ``new`` at ``place`` (whose last key may be new)."""
    if not place:
        return new
    head, *rest = place
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = replaced(copy[head], tuple(rest), new) if rest else new
    return copy


def mutated(data: st.DataObject, document: Any) -> Any:
    """``document`` with one hostile change: a value anywhere replaced (most often by one of
    its kind), a key added or given twice (the second value hostile), or the whole document
    replaced."""
    how = data.draw(st.sampled_from(["like"] * 6 + ["any", "add", "twice", "whole"]), label="how")
    if how == "whole" or not isinstance(document, dict):
        return data.draw(hostile_values)
    if how in {"like", "any"}:
        places = paths(document)
        leaves_only = [p for p in places if not isinstance(at(document, p), dict | list)]
        place = data.draw(st.sampled_from(leaves_only or places) | st.sampled_from(places))
        new = data.draw(OF_KIND[kind(at(document, place))] if how == "like" else hostile_values)
        return replaced(document, place, new)
    key = data.draw(st.sampled_from(sorted(document)) if how == "twice" and document else strings)
    return Pairs((*document.items(), (key, data.draw(hostile_values))))


def encoded(data: st.DataObject, document: Any) -> bytes:
    """``document`` as body bytes, in a drawn encoding (most often plain UTF-8 JSON); bytes
    stay as they are."""
    if isinstance(document, bytes):
        return document
    how = data.draw(st.sampled_from(ENCODINGS), label="encoding")
    text = dump(document, ascii_only=how in {"utf-8", "utf-8 with BOM", "invalid utf-8"})
    codec = {"utf-16": "utf-16", "utf-16-be": "utf-16-be", "utf-32": "utf-32"}.get(how, "utf-8")
    body = text.encode(codec, "surrogatepass")
    if how == "utf-8 with BOM":
        return b"\xef\xbb\xbf" + body
    if how == "invalid utf-8":
        where = data.draw(st.integers(0, len(body)))
        bad = data.draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82"]))
        return body[:where] + bad + body[where:]
    if how == "truncated":
        return body[: data.draw(st.integers(0, max(0, len(body) - 1)))]
    return {"empty": b"", "blank": b" \r\n\t"}.get(how, body)


def url_values(data: st.DataObject) -> str:
    """A hostile path segment or query value, percent-encoded as it goes on the wire."""
    raw = data.draw(st.sampled_from(["%00", "a%00b", "%ff", "%ed%a0%80", "%c0%80", "%2e%2e"]))
    short = st.text(max_size=40) | st.sampled_from(["\x00", "\ud800", "\ufeff", "x" * 5000])
    text = data.draw(short | instants.map(str) | integers.map(str) | floats.map(str))
    return data.draw(st.sampled_from([raw, quote(text, safe="", errors="surrogatepass")]))


# --- sending and checking --------------------------------------------------------------------


@dataclass
class World:
    """Real objects on one server for mutated valid bodies to name."""

    url: str
    scene: PaymentScene
    patch_source_id: str
    payment_id: str
    #: The merchant's challenge the payment's means answered (base64url).
    challenge: str
    bill_id: str
    #: The scene's grant, sent through the server to its target.
    delivery_id: str

    @classmethod
    def build(cls, url: str) -> World:
        scene = payment_scene(
            url, source={"kind": "wallet", "balance": 10**12}, amount_cap=10**12, max_uses=10**6
        )
        spare = scene.owner.client.add_wallet(10, scene.currency)["source_id"]
        challenge = secrets.token_bytes(16)
        payment = scene.pay(1, idempotency_key=secrets.token_hex(8), challenge=challenge)
        bill = scene.target.client.open_bill(total=10**6, currency=scene.currency)
        sent = scene.owner.client.send_grant(
            scene.grant_id, scene.target.terminal_id, scene.handoff()
        )
        return cls(
            url, scene, spare, payment["payment_id"], crypto.b64e(challenge), bill["bill_id"],
            sent["delivery_id"],
        )  # fmt: skip

    def path_params(self) -> dict[str, str]:
        return {
            "terminal_id": self.scene.target.terminal_id,
            "source_id": self.patch_source_id,
            "grant_id": self.scene.grant_id,
            "payment_id": self.payment_id,
            "merchant_id": str(self.scene.merchant.merchant_id),
            "challenge": self.challenge,
            "bill_id": self.bill_id,
            "delivery_id": self.delivery_id,
        }

    def body(self, method: str, path: str) -> tuple[Any, Ed25519PrivateKey | None]:
        """A fresh valid body for the operation (None without one) and, for registration,
        the key it registers (which signs it)."""
        if (method, path) == ("post", "/v1/terminals"):
            key = crypto.generate_terminal_key()
            public_key = crypto.b64e(crypto.public_key_bytes(key))
            return {"role": "user", "label": "fuzz", "public_key": public_key}, key
        make = self._bodies().get((method, path))
        return (make() if make else None), None

    def with_bodies(self) -> list[tuple[str, str]]:
        """The (method, path) of every operation that takes a body."""
        return [("post", "/v1/terminals"), *self._bodies()]

    def _bodies(self) -> dict[tuple[str, str], Callable[[], Any]]:
        scene = self.scene
        return {
            ("post", "/v1/funding-sources"): lambda: {
                "kind": "card",
                "number": "4111111111111111",
                "expiry": "12/39",
                "limit": 1000,
                "currency": scene.currency,
            },
            ("patch", "/v1/funding-sources/{source_id}"): lambda: {"status": "active"},
            ("post", "/v1/grants"): lambda: {
                "source_id": scene.source["source_id"],
                "allowed_terminals": [scene.target.terminal_id],
                "currency": scene.currency,
                "rights": {
                    "amount_cap": 10,
                    "max_uses": 2,
                    "per_use_cap": 5,
                    "valid_from": "2020-01-01T00:00:00Z",
                    "valid_until": "2999-01-01T00:00:00+09:00",
                    "purposes": ["food"],
                    "regions": ["KR-11"],
                    "merchants": [scene.merchant.merchant_id],
                },
                "bill_id": self.bill_id,
            },
            ("post", "/v1/bills"): lambda: {
                "total": 10**6,
                "currency": scene.currency,
                "mode": "remainder",
            },
            ("post", "/v1/payments"): lambda: scene.payment_body(1),
            ("post", "/v1/payments/{payment_id}/refunds"): lambda: {"amount": 1},
            ("post", "/v1/deliveries"): lambda: {
                "grant_id": scene.grant_id,
                "to": scene.target.terminal_id,
                "record": crypto.b64e(scene.handoff()),
            },
        }

    def signer(self, path: str) -> Terminal:
        scene = self.scene
        if path.startswith(("/v1/presentations", "/v1/bills", "/v1/deliveries/")):
            return scene.target
        return scene.merchant if path.startswith("/v1/payments") else scene.owner


@dataclass(frozen=True)
class Sent:
    method: str
    target: str
    body: bytes
    content_type: str | None
    auth: str

    def __str__(self) -> str:
        shown = self.body[:300] + (b"..." if len(self.body) > 300 else b"")
        return f"{self.method} {self.target} [{self.auth}, {self.content_type}] {shown!r}"


def send(
    world: World,
    method: str,
    target: str,
    body: bytes,
    *,
    content_type: str | None = "application/json",
    auth: str = "signed",
    new_key: Ed25519PrivateKey | None = None,
) -> tuple[Sent, httpx.Response]:
    """Send one request; ``target`` is the path with its query, percent-encoded as sent.
    ``auth``: "signed" (by the operation's terminal, or as "new" by ``new_key`` or a fresh
    key for registration), "forged" (a zero signature) or "unsigned"."""
    method = method.upper()
    url = httpx.URL(world.url + target)
    headers = {"Idempotency-Key": secrets.token_hex(8)}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if auth != "unsigned":
        path = url.raw_path.decode("ascii")
        if url.path == "/v1/terminals":
            terminal_id, key = "new", new_key or crypto.generate_terminal_key()
        else:
            terminal = world.signer(path)
            terminal_id, key = terminal.terminal_id, terminal.private_key
        headers |= signed_headers(terminal_id, key, method, path, body)
        if auth == "forged":
            headers["X-Nfcpay-Signature"] = crypto.b64e(bytes(64))
    response = httpx.request(method, url, content=body, headers=headers, timeout=60)
    return Sent(method, target, body, content_type, auth), response


def assert_answered(sent: Sent, response: httpx.Response) -> None:
    """No 5xx; a refusal is the API's JSON error body."""
    status = response.status_code
    assert status < 500, f"{status} {response.text[:300]} for {sent}"
    if status >= 400:
        try:
            answer = response.json()
        except ValueError:
            raise AssertionError(f"{status} not JSON: {response.text[:300]!r} for {sent}") from None
        assert isinstance(answer, dict), f"{status} {answer!r} for {sent}"
        assert isinstance(answer.get("error"), str), f"{status} {answer!r} for {sent}"
        assert isinstance(answer.get("message"), str), f"{status} {answer!r} for {sent}"


#: Failed authentications are part of a hostile run; the failure budget must not turn the
#: rest of it into 429s.
UNLIMITED_FAILURES = {"NFCPAY_SERVER_AUTH_FAILURE_BURST": "1000000"}
#: Parameters for a fixture that runs on SQLite, then on PostgreSQL where one is configured.
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextlib.contextmanager
def hostile_server(database: str, data_dir: Path) -> Iterator[ServerProcess]:
    """A server process on ``database`` (see :func:`tests.support.harness.database_url`)
    with :data:`UNLIMITED_FAILURES`."""
    with server_on(database, data_dir, env=UNLIMITED_FAILURES) as server:
        yield server


class LogWatch:
    """What a server process logs from now on: :meth:`assert_no_traceback` after a run."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.start = len(server.log())

    def new(self) -> str:
        return self.server.log()[self.start :]

    def assert_no_traceback(self) -> None:
        logged = self.new()
        assert "Traceback" not in logged, logged[-8000:]
