"""Request authentication: unsigned, wrongly signed, stale and replayed calls are refused
with 401 and change nothing."""

from __future__ import annotations

import json
import secrets
import time

import pytest

from nfcpay import crypto
from tests.support.harness import Api
from tests.support.signing import BODY, PATH, headers_for


def post(api: Api, headers: dict[str, str], body: bytes = BODY) -> tuple[int, dict[str, object]]:
    response = api.http.post(PATH, content=body, headers=headers)
    return response.status_code, response.json()


def test_signed_request_is_accepted(api: Api) -> None:
    user = api.terminal()
    status, answer = post(api, headers_for(user))
    assert status == 201, answer


@pytest.mark.parametrize(
    "case", ["missing", "bad_signature", "other_key", "stale", "future", "unknown_terminal", "body"]
)
def test_refused_requests_change_nothing(api: Api, case: str) -> None:
    user = api.terminal()
    before = api.snapshot()
    headers = headers_for(user)
    body = BODY
    if case == "missing":
        del headers["X-Nfcpay-Signature"]
    elif case == "bad_signature":
        headers["X-Nfcpay-Signature"] = crypto.b64e(b"\0" * 64)
    elif case == "other_key":
        headers = headers_for(user, key=crypto.generate_terminal_key())
    elif case == "stale":
        headers = headers_for(user, timestamp=int(time.time()) - 301)
    elif case == "future":
        headers = headers_for(user, timestamp=int(time.time()) + 301)
    elif case == "unknown_terminal":
        headers["X-Nfcpay-Terminal"] = "t_doesnotexist"
    elif case == "body":
        body = BODY.replace(b"1000", b"9999")
    status, answer = post(api, headers, body)
    assert status == 401
    assert answer["error"] == "authentication_failed"
    assert api.snapshot() == before


def test_replayed_nonce_is_refused(api: Api) -> None:
    user = api.terminal()
    headers = headers_for(user)
    assert post(api, headers)[0] == 201
    before = api.snapshot()
    status, answer = post(api, headers)
    assert status == 401
    assert "replayed" in str(answer["message"])
    assert api.snapshot() == before
    assert len(user.client.list_sources()) == 1


def test_query_string_is_signed(api: Api) -> None:
    user = api.terminal()
    headers = headers_for(user, method="GET", path="/v1/notifications?wait=0", body=b"")
    ok = api.http.get("/v1/notifications?wait=0", headers=headers)
    assert ok.status_code == 200
    tampered = headers_for(user, method="GET", path="/v1/notifications?wait=0", body=b"")
    response = api.http.get("/v1/notifications?wait=1", headers=tampered)
    assert response.status_code == 401


def test_registration_needs_proof_of_the_key(api: Api) -> None:
    key, impostor = crypto.generate_terminal_key(), crypto.generate_terminal_key()
    body = json.dumps(
        {
            "role": "user",
            "label": "alice",
            "public_key": crypto.b64e(crypto.public_key_bytes(key)),
        }
    ).encode()
    ts, nonce = int(time.time()), secrets.token_urlsafe(18)
    message = crypto.request_message("POST", "/v1/terminals", ts, nonce, "new", body)
    headers = {
        "X-Nfcpay-Terminal": "new",
        "X-Nfcpay-Timestamp": str(ts),
        "X-Nfcpay-Nonce": nonce,
        "Content-Type": "application/json",
    }
    forged = {**headers, "X-Nfcpay-Signature": crypto.b64e(impostor.sign(message))}
    assert api.http.post("/v1/terminals", content=body, headers=forged).status_code == 401
    genuine = {**headers, "X-Nfcpay-Signature": crypto.b64e(key.sign(message))}
    assert api.http.post("/v1/terminals", content=body, headers=genuine).status_code == 201
    assert api.http.post("/v1/terminals", content=body, headers=genuine).status_code == 401


def test_health_and_openapi_need_no_auth(api: Api) -> None:
    health = api.http.get("/v1/health").json()
    assert health["status"] == "ok"
    assert health["database"] in {"sqlite", "postgresql"}
    spec = api.http.get("/openapi.json").json()
    assert "/v1/payments" in spec["paths"]
    missing = api.http.get("/v1/nowhere")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
