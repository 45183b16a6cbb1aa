"""Crafted requests that answered 500 (issue 13, hole 1), each now a 4xx with the API's JSON
error body and no traceback in the server log, on SQLite and on PostgreSQL:

* a body nested a thousand deep, signed or not, to POST /v1/payments: the fast path's
  ``json.loads`` raised RecursionError before anything else looked at it; the fast path now
  leaves bodies with more brackets than a payment has to FastAPI, whose parser answers 400;
* a grant instant that is legal ISO text but outside datetime's range in UTC
  (``9999-12-31T23:59:59-14:00``, ``0001-01-01T00:00:00+14:00``): OverflowError when the
  new grant was shown; the body model now refuses it (422);
* NUL (``\\u0000``, ``%00``) in any text the server stores or looks up, in a body or in the
  path or query: PostgreSQL cannot take it (psycopg's DataError); refused with 422 on both
  databases alike.

The property-based side (schemathesis and hostile generators) is tests/hardening/
test_openapi_fuzz.py; the material both use is tests/hardening/hostile.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from nfcpay import crypto
from nfcpay.client import signed_headers
from nfcpay.server import schemas
from nfcpay.server.app import create_app
from nfcpay.server.bodylimit import MAX_BODY_BYTES
from nfcpay.server.fastpath import PATH
from nfcpay.server.services.formats import iso, to_us
from nfcpay.testing.server import (
    InProcessServer,
    InProcessTransport,
    ServerProcess,
    payment_scene,
)
from tests.support.harness import fast_path_of
from tests.support.hostile import (
    DATABASES,
    OUT_OF_RANGE_INSTANTS,
    LogWatch,
    World,
    assert_answered,
    dump,
    hostile_server,
    instants,
    nested,
    replaced,
    send,
)


@dataclass
class Served:
    server: ServerProcess
    world: World


@pytest.fixture(scope="module", params=DATABASES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp(f"crafted-{request.param}")
    with hostile_server(request.param, data_dir) as server:
        yield Served(server, World.build(server.url))


@pytest.fixture
def world(served: Served) -> Iterator[World]:
    """The served world; after the test, no traceback in what the server logged meanwhile."""
    log = LogWatch(served.server)
    yield served.world
    log.assert_no_traceback()


def refused(world: World, method: str, target: str, body: bytes, **options: Any) -> Any:
    """Send; the answer must be a 4xx JSON error (never a 5xx): return (status, answer)."""
    sent, response = send(world, method, target, body, **options)
    assert_answered(sent, response)
    assert response.status_code >= 400, response.text
    return response.status_code, response.json()


# --- deep nesting ----------------------------------------------------------------------------

DEEP = {
    "array": nested(1000, "array"),
    "object": nested(1000, "object"),
    "unclosed": nested(50_000, "unclosed"),  # deep, and still under the body cap
}


def _deep_body(world: World, method: str, path: str, where: str, shape: str) -> bytes:
    if where == "whole":
        return dump(DEEP[shape]).encode()
    document, _ = world.body(method, path)
    return dump({**document, "x": DEEP[shape]}).encode()


# --- size ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [PATH, "/v1/grants", "/v1/terminals"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_cap_is_a_413_before_it_is_read(
    world: World, target: str, framing: str
) -> None:
    """The fast path and the FastAPI routes alike; a chunked body is counted as it comes."""
    body = b'{"x": "' + b"a" * MAX_BODY_BYTES + b'"}'
    content: bytes | Iterator[bytes] = body
    if framing == "chunked":
        content = iter([body[i : i + 8192] for i in range(0, len(body), 8192)])
    with httpx.Client(base_url=world.url, timeout=30) as http:
        response = http.post(target, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "body_too_large"
    assert str(MAX_BODY_BYTES) in response.json()["message"]


def test_a_body_at_the_cap_is_read_as_usual(world: World) -> None:
    padding = MAX_BODY_BYTES - len(b'{"x": ""}')
    body = b'{"x": "' + b"a" * padding + b'"}'
    assert len(body) == MAX_BODY_BYTES
    status, answer = refused(world, "post", "/v1/grants", body, auth="signed")
    assert status == 422, answer  # read whole and checked: it is no grant


@pytest.mark.parametrize("auth", ["signed", "unsigned"])
@pytest.mark.parametrize("where", ["whole", "inside"])
@pytest.mark.parametrize("shape", sorted(DEEP))
def test_deeply_nested_payment_is_a_400(world: World, shape: str, where: str, auth: str) -> None:
    body = _deep_body(world, "post", PATH, where, shape)
    status, answer = refused(world, "post", PATH, body, auth=auth)
    assert status == 400, answer


@pytest.mark.parametrize("auth", ["signed", "unsigned"])
@pytest.mark.parametrize(
    "operation",
    [
        ("post", "/v1/terminals"),
        ("post", "/v1/funding-sources"),
        ("patch", "/v1/funding-sources/{source_id}"),
        ("post", "/v1/grants"),
        ("post", "/v1/payments/{payment_id}/refunds"),
    ],
)
def test_deeply_nested_body_on_the_fastapi_routes_is_a_400(
    world: World, operation: tuple[str, str], auth: str
) -> None:
    method, path = operation
    target = path.format(**world.path_params())
    for where in ("whole", "inside"):
        body = _deep_body(world, method, path, where, "array")
        status, answer = refused(world, method, target, body, auth=auth)
        assert status == 400, answer


def test_fast_path_hands_deep_bodies_to_fastapi(tmp_path: Path) -> None:
    """The fast path answers exactly as FastAPI's route: it hands deep bodies over untouched,
    and both answer them alike (in process: a 500 would raise here)."""
    with InProcessServer(tmp_path / "server") as server:
        plain = create_app(server.runtime.settings, runtime=server.runtime, payment_fast_path=False)
        scene = payment_scene(server.url, http=server.http)
        world = World(  # ids of nothing: only the bodies' shapes matter here
            url=server.url,
            scene=scene,
            patch_source_id=scene.source["source_id"],
            payment_id="p_none",
            challenge=crypto.b64e(bytes(16)),
            bill_id="b_none",
            delivery_id="dl_none",
        )
        answers: list[list[tuple[int, Any]]] = [[], []]
        with httpx.Client(transport=InProcessTransport(plain), base_url=server.url) as without:
            for answered, client in zip(answers, (server.http, without), strict=True):
                for shape in sorted(DEEP):
                    body = _deep_body(world, "post", PATH, "inside", shape)
                    answered.append(_post(world, client, body))
    assert answers[0] == answers[1]
    assert {status for status, _ in answers[0]} == {400}
    fast = fast_path_of(server.app)
    assert (fast.served, fast.handed_over) == (0, len(DEEP))


def _post(world: World, client: httpx.Client, body: bytes) -> tuple[int, Any]:
    merchant = world.scene.merchant
    headers = signed_headers(merchant.terminal_id, merchant.private_key, "POST", PATH, body)
    headers |= {"Content-Type": "application/json", "Idempotency-Key": "deep"}
    response = client.post(PATH, content=body, headers=headers)
    return response.status_code, response.json()


# --- instants outside datetime's range in UTC ------------------------------------------------


def _grants(world: World) -> int:
    return len(world.scene.owner.client.list_grants())


@pytest.mark.parametrize("instant", OUT_OF_RANGE_INSTANTS)
@pytest.mark.parametrize("field", ["valid_from", "valid_until"])
def test_grant_instant_outside_the_utc_range_is_refused(
    world: World, field: str, instant: str
) -> None:
    before = _grants(world)
    document, _ = world.body("post", "/v1/grants")
    body = dump(replaced(document, ("rights", field), instant)).encode()
    status, answer = refused(world, "post", "/v1/grants", body)
    assert (status, answer["error"], answer["field"]) == (
        422,
        "validation_error",
        f"rights.{field}",
    )
    assert "UTC" in answer["message"]
    assert _grants(world) == before


#: Instants just inside the range, the field given them, and how a grant shows them.
KEPT = {
    "9999-12-31T23:59:59.999999Z": ("valid_until", "9999-12-31T23:59:59.999Z"),
    "9999-12-31T23:59:59+14:00": ("valid_until", "9999-12-31T09:59:59.000Z"),
    "0001-01-01T00:00:00Z": ("valid_from", "0001-01-01T00:00:00.000Z"),
    "0001-01-01T00:00:00-14:00": ("valid_from", "0001-01-01T14:00:00.000Z"),
}


@pytest.mark.parametrize("instant", sorted(KEPT))
def test_grant_instant_at_the_edge_of_the_utc_range_is_kept(world: World, instant: str) -> None:
    field, shown = KEPT[instant]
    document, _ = world.body("post", "/v1/grants")
    body = dump(replaced(document, ("rights", field), instant)).encode()
    sent, response = send(world, "post", "/v1/grants", body)
    assert response.status_code == 201, f"{response.text} for {sent}"
    grant = response.json()["grant"]
    assert grant["rights"][field] == shown
    owner = world.scene.owner.client
    assert owner.get_grant(grant["grant_id"])["rights"][field] == shown
    assert grant["grant_id"] in {g["grant_id"] for g in owner.list_grants()}


def _offsets() -> st.SearchStrategy[timezone]:
    limit = timedelta(hours=23, minutes=59)
    return st.builds(
        timezone, st.timedeltas(-limit, limit).map(lambda d: d - d % timedelta(minutes=1))
    )


@settings(max_examples=300, deadline=None)
@given(instants | st.datetimes(timezones=_offsets()).map(datetime.isoformat))
def test_every_instant_a_grant_accepts_can_be_shown(text: Any) -> None:
    """Whatever a grant's rights accept as an instant, the server stores and shows."""
    try:
        rights = schemas.RightsIn.model_validate({"amount_cap": 1, "valid_until": text})
    except ValidationError:
        return
    assert rights.valid_until is not None
    shown = iso(to_us(rights.valid_until))
    assert shown is not None
    assert abs(datetime.fromisoformat(shown) - rights.valid_until) < timedelta(milliseconds=1)
    assert datetime.fromisoformat(shown).tzinfo == UTC


def test_every_instant_in_the_api_is_range_checked() -> None:
    """Any request field that takes an instant refuses the named out-of-range ones."""
    fields = []
    for model in vars(schemas).values():
        if isinstance(model, type) and issubclass(model, BaseModel) and model is not BaseModel:
            for name, info in model.model_fields.items():
                adapter: TypeAdapter[Any] = TypeAdapter(info.annotation)
                shown = json.dumps(adapter.json_schema())
                if '"date-time"' in shown and '"properties"' not in shown:  # not a model
                    fields.append(f"{model.__name__}.{name}")
                    for instant in OUT_OF_RANGE_INSTANTS:
                        with pytest.raises(ValidationError, match="UTC"):
                            adapter.validate_python(instant)
    assert fields == ["RightsIn.valid_from", "RightsIn.valid_until"]


# --- NUL ------------------------------------------------------------------------------------

NUL_IN_BODIES = [
    ("post", "/v1/terminals", ("label",)),
    ("post", "/v1/grants", ("source_id",)),
    ("post", "/v1/grants", ("allowed_terminals", 0)),
    ("post", "/v1/grants", ("rights", "purposes", 0)),
    ("post", "/v1/grants", ("rights", "merchants", 0)),
    ("post", PATH, ("purpose",)),
    ("post", PATH, ("bill_id",)),
    ("post", PATH, ("means", "presenting_terminal")),
    ("post", PATH, ("means", "grants", 0, "grant_id")),
]


@pytest.mark.parametrize(("method", "path", "place"), NUL_IN_BODIES)
def test_nul_in_a_body_field_is_refused(
    world: World, method: str, path: str, place: tuple[Any, ...]
) -> None:
    document, new_key = world.body(method, path)
    body = dump(replaced(document, place, "a\x00b")).encode()
    status, answer = refused(world, method, path, body, new_key=new_key)
    field = ".".join(str(step) for step in place)
    assert (status, answer["error"], answer["field"]) == (422, "validation_error", field)
    assert "NUL" in answer["message"]


#: Request lines with NUL in a path or query value, and the parameter a refusal names.
NUL_IN_URLS = {
    "GET /v1/grants/a%00b": "grant_id",
    "POST /v1/grants/%00/revoke": "grant_id",
    "PATCH /v1/funding-sources/%00": "source_id",
    "GET /v1/payments/%00": "payment_id",
    "POST /v1/payments/%00/refunds": "payment_id",
    "GET /v1/notifications?after=%00": "after",
}


@pytest.mark.parametrize("line", sorted(NUL_IN_URLS))
def test_nul_in_the_path_or_query_is_refused(world: World, line: str) -> None:
    method, target = line.split()
    field = NUL_IN_URLS[line]
    body = b'{"status": "active"}' if method == "PATCH" else b"{}" if method == "POST" else b""
    status, answer = refused(world, method, target, body)
    assert (status, answer["error"], answer["field"]) == (422, "validation_error", field)


# --- card digits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("number", "\uff14\uff11\uff11\uff11" * 3 + "1111"), ("expiry", "12/\u0663\u0669")],
)
def test_card_digits_are_ascii(world: World, field: str, value: str) -> None:
    document, _ = world.body("post", "/v1/funding-sources")
    body = dump({**document, field: value}).encode()
    status, answer = refused(world, "post", "/v1/funding-sources", body)
    assert (status, answer["error"], answer["field"]) == (422, "validation_error", field)
