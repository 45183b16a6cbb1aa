"""Merchant refunds whose answer was lost are finished by running the same command again."""

from __future__ import annotations

import httpx
import pytest

from nfcpay.errors import ApiError, ConfigError, ServerUnavailable
from nfcpay.terminals import merchant, refunds
from nfcpay.terminals.account import connect
from nfcpay.terminals.user import Rights
from tests.support.scenes import Scene, SharedTransport, pending_charge


class AnswersLost(httpx.BaseTransport):
    """The server handles every refund, but its answer never reaches the merchant."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/refunds"):
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


def paid(scene: Scene, amount: int) -> str:
    scene.give(Rights(amount_cap=20_000, max_uses=3))
    receipt = pending_charge(scene, amount)
    with scene.client(scene.merchant) as client:
        merchant._authorize(scene.merchant, client, receipt)
    assert receipt.payment_id is not None
    return receipt.payment_id


def refunded(scene: Scene, payment_id: str) -> int:
    """What the server says has been refunded of ``payment_id``."""
    with scene.client(scene.merchant) as client:
        [payment] = [p for p in client.list_payments() if p["payment_id"] == payment_id]
    return int(payment["refunded"])


def test_rerun_after_a_lost_answer_refunds_once(scene: Scene) -> None:
    payment_id = paid(scene, 8_000)
    lossy = AnswersLost(SharedTransport(scene.server.transport))
    answer_lost = pytest.raises(ServerUnavailable, match="run the same command again")
    with connect(scene.merchant, transport=lossy) as client, answer_lost:
        refunds.refund(scene.merchant, client, payment_id, 2_000)
    assert refunds.pending(scene.merchant, payment_id) is not None
    assert refunded(scene, payment_id) == 2_000  # made once, whatever the retries did

    with scene.client(scene.merchant) as client:
        again = refunds.refund(scene.merchant, client, payment_id, 2_000)
    assert again["amount"] == 2_000 and again["remaining_refundable"] == 6_000
    assert refunds.pending(scene.merchant, payment_id) is None
    assert refunded(scene, payment_id) == 2_000

    with scene.client(scene.merchant) as client:  # a deliberate second refund is a new one
        refunds.refund(scene.merchant, client, payment_id, 2_000)
    assert refunded(scene, payment_id) == 4_000
    assert scene.server.audit() == []


def test_a_different_refund_waits_for_the_unanswered_one(scene: Scene) -> None:
    payment_id = paid(scene, 8_000)
    lossy = AnswersLost(SharedTransport(scene.server.transport))
    with connect(scene.merchant, transport=lossy) as client, pytest.raises(ServerUnavailable):
        refunds.refund(scene.merchant, client, payment_id, None)
    with scene.client(scene.merchant) as client:
        with pytest.raises(ConfigError, match=f"merchant refund {payment_id}` again"):
            refunds.refund(scene.merchant, client, payment_id, 1_000)
        assert refunded(scene, payment_id) == 8_000
        refunds.refund(scene.merchant, client, payment_id, None)  # the same: replayed
    assert refunded(scene, payment_id) == 8_000
    assert refunds.pending(scene.merchant, payment_id) is None


def test_a_refused_refund_leaves_nothing_pending(scene: Scene) -> None:
    payment_id = paid(scene, 3_000)
    with scene.client(scene.merchant) as client, pytest.raises(ApiError) as refused:
        refunds.refund(scene.merchant, client, payment_id, 5_000)
    assert refused.value.code == "over_refundable"
    assert refunds.pending(scene.merchant, payment_id) is None
    assert refunded(scene, payment_id) == 0
