"""Bad input (issue 6): schemathesis generates requests from the OpenAPI document a REAL
server process publishes and sends them SIGNED (so they reach the handlers, not just the
401 gate), as a user, target or merchant terminal depending on the operation.

Checks: no 5xx, status codes and bodies as documented (the app documents its error answers
— 401/403/404/409/422/429/503 with the one error body — see nfcpay.server.app._openapi),
content types. Excluded on purpose: ``positive_data_acceptance`` (every schema-valid request
must be accepted) — the API refuses schema-valid requests by business rules a JSON schema
cannot state (an unknown currency, a Luhn-invalid card, per_use_cap > amount_cap, ids that do
not exist or belong to another terminal), with a documented 4xx. Bounded: few examples per
operation, the notification long-poll's ``wait`` clamped, the run well under a minute.

Hostile requests (issue 13), material from :mod:`tests.support.hostile`: for each
operation, the schema's cases (valid and invalid, by schemathesis) or a valid body naming
real objects, with one hostile change — deep nesting, integers past 64 bits, NaN, instants
at and past the UTC range, NUL, lone surrogates, huge strings, duplicate keys — in odd
encodings (BOM, UTF-16/32, invalid UTF-8, truncated) under odd content types, with hostile
path and query values, signed, forged or unsigned; and for each field of each valid body,
hostile values of that field's kind. Any 5xx, any refusal that is not the API's JSON error
body, or a traceback in the server log fails. A short derandomized run (SQLite, about 10 s)
is in the default suite; longer random runs on SQLite and PostgreSQL, and the documented-
answers run above, are marked slow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import positive_data_acceptance

from nfcpay import crypto
from nfcpay.client import PaymentClient, signed_headers
from nfcpay.testing.server import ServerProcess, Terminal, register_terminal
from tests.support.hostile import (
    CONTENT_TYPES,
    DATABASES,
    OF_KIND,
    LogWatch,
    Sent,
    World,
    assert_answered,
    at,
    dump,
    encoded,
    hostile_server,
    kind,
    mutated,
    paths,
    replaced,
    send,
    url_values,
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with hostile_server("sqlite", tmp_path_factory.mktemp("fuzz")) as server:
        yield server


@pytest.fixture(scope="module")
def terminals(fuzz_server: ServerProcess) -> dict[str, Terminal]:
    return {role: register_terminal(fuzz_server.url, role) for role in ("user", "merchant")}


def _signed(terminal: Terminal, method: str, path: str, body: bytes) -> dict[str, str]:
    return signed_headers(terminal.terminal_id, terminal.private_key, method, path, body)


def _operations(server: ServerProcess) -> list[Any]:
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    return [result.ok() for result in api.get_all_operations()]


@pytest.mark.slow
def test_api_answers_as_documented(
    fuzz_server: ServerProcess, terminals: dict[str, Terminal]
) -> None:
    log = LogWatch(fuzz_server)
    operations = _operations(fuzz_server)
    assert len(operations) >= 14
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            _send_signed(case, fuzz_server.url, terminals)

        try:
            fuzz()
        except Exception as exc:  # collect every operation's finding, then fail once
            failures.append(f"{operation.label}: {exc}")
    assert failures == [], "\n\n".join(failures)
    log.assert_no_traceback()


def _send_signed(case: Any, base_url: str, terminals: dict[str, Terminal]) -> None:
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool):
        case.query["wait"] = min(wait, 0.1)  # a valid wait holds the call open up to 30 s
    kwargs = case.as_transport_kwargs(base_url=base_url)
    request = httpx.Request(kwargs["method"], kwargs["url"], params=kwargs.get("params"))
    body = b""
    if "json" in kwargs:
        body = json.dumps(kwargs["json"]).encode()
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        body = data if isinstance(data, bytes) else str(data).encode()
    headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if isinstance(v, str)}
    if body:
        headers.setdefault("Content-Type", "application/json")
    raw_path = request.url.raw_path.decode("ascii")
    if case.path == "/v1/terminals":
        # Registration is signed by the key being registered, as terminal "new".
        key = crypto.generate_terminal_key()
        newcomer = Terminal(PaymentClient(base_url, "new", key), key)
        headers.update(_signed(newcomer, case.method.upper(), raw_path, body))
    elif case.path != "/v1/health":
        role = "merchant" if case.path.startswith("/v1/payments") else "user"
        headers.update(_signed(terminals[role], case.method.upper(), raw_path, body))
    response = httpx.request(
        case.method.upper(), str(request.url), content=body, headers=headers, timeout=30
    )
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


# --- hostile requests ---------------------------------------------------------------------

#: ``wait`` values that are refused or short: a valid one holds the long-poll open.
_WAITS = ["nan", "NaN", "inf", "-inf", "1e999", "-0", "-1", "31", "30.000001", "0x10", "", "0.05"]
_WAITS += ["9" * 5000, "%00", "0.05%00"]
_AUTH = ["signed"] * 8 + ["forged", "unsigned"]


def _query_value(value: Any) -> str:
    return quote(json.dumps(value) if isinstance(value, bool) else str(value), safe="")


Answer = tuple[Sent, httpx.Response]


def _hostile_request(data: st.DataObject, operation: Any, world: World) -> Answer:
    """One request to ``operation``: a schemathesis case, its body often replaced by a valid
    one, mostly with a hostile change, path and query values real, generated or hostile."""
    mode = data.draw(st.sampled_from(list(GenerationMode)), label="mode")
    case = data.draw(operation.as_strategy(generation_mode=mode))
    params = {}
    for name, generated in (case.path_parameters or {}).items():
        how = data.draw(st.sampled_from(["real", "generated", "hostile"]), label=name)
        real = quote(world.path_params()[name], safe="")
        params[name] = {"real": real, "generated": str(generated)}.get(how) or url_values(data)
    query = [(k, _query_value(v)) for k, v in (case.query or {}).items() if v is not None]
    if data.draw(st.booleans(), label="hostile query"):
        query.append((data.draw(st.sampled_from(["after", "x"])), url_values(data)))
    query = [(k, data.draw(st.sampled_from(_WAITS)) if k == "wait" else v) for k, v in query]
    target = operation.path.format(**params)
    target += "?" + "&".join(f"{quote(k, safe='')}={v}" for k, v in query) if query else ""

    valid, new_key = world.body(operation.method, operation.path)
    document = case.body if case.body is not NOT_SET else valid
    if valid is not None and data.draw(st.integers(0, 9), label="valid base") < 7:
        document = valid
    if data.draw(st.integers(0, 9), label="mutate") < 8:
        document = mutated(data, document)
    body = b"" if document is None and case.body is NOT_SET else encoded(data, document)
    return send(
        world,
        operation.method,
        target,
        body,
        content_type=data.draw(st.sampled_from(CONTENT_TYPES), label="content type"),
        auth=data.draw(st.sampled_from(_AUTH), label="auth"),
        new_key=new_key,
    )


Field = tuple[tuple[str, str], tuple[Any, ...]]


def _fields(world: World) -> list[Field]:
    """Every place in every operation's valid body: (method, path), place."""
    found = []
    for operation in world.with_bodies():
        document, _ = world.body(*operation)
        found += [(operation, place) for place in paths(document)]
    return found


def _field_request(data: st.DataObject, world: World, field: Field) -> Answer:
    """The operation's valid body with ``field`` holding a hostile value of its kind (edge
    instants for an instant, nesting for a container, ...)."""
    (method, path), place = field
    document, new_key = world.body(method, path)
    new = data.draw(OF_KIND[kind(at(document, place))], label="value")
    target = path.format(**{k: quote(v, safe="") for k, v in world.path_params().items()})
    return send(
        world, method, target, dump(replaced(document, place, new)).encode(), new_key=new_key
    )


def _examples(examples: int, derandomize: bool, request: Callable[[Any], Answer]) -> None:
    @given(data=st.data())
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=derandomize,
        database=None,
    )
    def hostile(data: st.DataObject) -> None:
        sent, response = request(data)
        event(str(response.status_code))
        assert_answered(sent, response)

    hostile()


def _run_hostile(
    server: ServerProcess, per_operation: int, per_field: int, *, derandomize: bool
) -> None:
    """``per_operation`` hostile requests to each operation, and ``per_field`` for each
    field of each valid body; every finding, then the server log."""
    world = World.build(server.url)
    log = LogWatch(server)
    runs: list[tuple[str, int, Callable[[Any], Answer]]] = [
        (op.label, per_operation, partial(_hostile_request, operation=op, world=world))
        for op in _operations(server)
    ]
    runs += [
        (f"field {field}", per_field, partial(_field_request, world=world, field=field))
        for field in _fields(world)
    ]
    failures: list[str] = []
    for label, examples, request in runs:
        try:
            _examples(examples, derandomize, request)
        except Exception as exc:  # every run's finding, then fail once
            failures.append(f"{label}: {exc}"[:3000])
    assert failures == [], "\n\n".join(failures)
    log.assert_no_traceback()


def test_hostile_requests_answer_4xx_never_5xx(fuzz_server: ServerProcess) -> None:
    _run_hostile(fuzz_server, 12, 3, derandomize=True)


@pytest.fixture(scope="module", params=DATABASES)
def any_db_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with hostile_server(
        request.param, tmp_path_factory.mktemp(f"hostile-{request.param}")
    ) as server:
        yield server


@pytest.mark.slow
def test_hostile_requests_at_length(any_db_server: ServerProcess) -> None:
    """More hostile requests, on each database (PostgreSQL refuses NUL where SQLite stores
    it). Derandomized like the quick run, so CI passes or fails the same way every time;
    to hunt further, run it with ``derandomize=False`` and more examples."""
    _run_hostile(any_db_server, 40, 8, derandomize=True)
