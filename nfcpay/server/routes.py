"""The /v1 HTTP routes: authenticate, parse, call one service inside one transaction.

Handlers are plain ``def`` (run in the thread pool, where the blocking database calls
belong); only the signature check and the notification long-poll are async.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response

from nfcpay.server.auth import verify_request
from nfcpay.server.runtime import Caller, Runtime
from nfcpay.server.schemas import (
    FundingSourceIn,
    GrantIn,
    PaymentIn,
    RefundIn,
    SourceStatusIn,
    TerminalIn,
)
from nfcpay.server.services import (
    authorization,
    grants,
    idempotency,
    notifications,
    payments,
    refunds,
    sources,
    terminals,
)

#: How often a waiting notification long-poll looks for news.
POLL_INTERVAL_S = 0.2
MAX_WAIT_S = 30.0

Json = dict[str, Any]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


async def _signed(request: Request) -> Caller:
    """The authenticated caller (dependency; the runtime is on the app's state)."""
    return (await verify_request(request, request.app.state.runtime)).caller


Signed = Annotated[Caller, Depends(_signed)]


def build_router(rt: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/health", tags=["server"])
    async def health() -> Json:
        await anyio.to_thread.run_sync(rt.db.run, lambda tx: tx.scalar("SELECT 1 AS one"))
        return {"status": "ok", "database": rt.db.dialect}

    @router.post("/terminals", status_code=201, tags=["terminals"])
    async def register_terminal(request: Request, body: TerminalIn) -> Json:
        signed_request = await verify_request(request, rt, registering=True)
        caller, key = signed_request.caller, signed_request.public_key
        return await anyio.to_thread.run_sync(
            rt.unit, caller, lambda tx: terminals.register(tx, rt.now_us(), body, key)
        )

    @router.get("/terminals/me", tags=["terminals"])
    def terminal_me(caller: Signed) -> Json:
        return rt.unit(caller, lambda tx: terminals.me(tx, caller))

    @router.post("/funding-sources", status_code=201, tags=["funding sources"])
    def add_source(body: FundingSourceIn, caller: Signed) -> Json:
        return rt.unit(caller, lambda tx: sources.add(tx, rt, caller, body))

    @router.get("/funding-sources", tags=["funding sources"])
    def list_sources(caller: Signed) -> Json:
        return rt.unit(caller, lambda tx: sources.list_own(tx, rt, caller))

    @router.patch("/funding-sources/{source_id}", tags=["funding sources"])
    def set_source_status(source_id: str, body: SourceStatusIn, caller: Signed) -> Json:
        return rt.unit(
            caller, lambda tx: sources.set_status(tx, rt, caller, source_id, body.status)
        )

    @router.post("/grants", status_code=201, tags=["grants"])
    def issue_grant(body: GrantIn, caller: Signed) -> Json:
        return rt.unit(caller, lambda tx: grants.issue(tx, rt, caller, body))

    @router.get("/grants", tags=["grants"])
    def list_grants(caller: Signed) -> Json:
        return rt.unit(caller, lambda tx: grants.list_visible(tx, rt, caller))

    @router.get("/grants/{grant_id}", tags=["grants"])
    def get_grant(grant_id: str, caller: Signed) -> Json:
        return rt.unit(caller, lambda tx: grants.get(tx, rt, caller, grant_id))

    @router.post("/grants/{grant_id}/revoke", tags=["grants"])
    def revoke_grant(grant_id: str, caller: Signed) -> Json:
        return rt.unit(caller, lambda tx: grants.revoke(tx, rt, caller, grant_id))

    @router.post("/payments", tags=["payments"])
    def authorize_payment(body: PaymentIn, caller: Signed, key: IdempotencyKey = None) -> Json:
        key = idempotency.check_key(key)
        digest = idempotency.request_hash("/v1/payments", body.model_dump(mode="json"))
        return rt.unit(
            caller, lambda tx: authorization.authorize(tx, rt, caller, body, key, digest)
        )

    @router.get("/payments", tags=["payments"])
    def list_payments(caller: Signed) -> Json:
        return rt.unit(caller, lambda tx: payments.list_own(tx, caller))

    @router.get("/payments/{payment_id}", tags=["payments"])
    def get_payment(payment_id: str, caller: Signed) -> Json:
        return rt.unit(caller, lambda tx: payments.get(tx, caller, payment_id))

    @router.post("/payments/{payment_id}/refunds", status_code=201, tags=["payments"])
    def refund_payment(
        payment_id: str,
        body: RefundIn,
        caller: Signed,
        response: Response,
        key: IdempotencyKey = None,
    ) -> Json:
        key = idempotency.check_key(key)
        path = f"/v1/payments/{payment_id}/refunds"
        digest = idempotency.request_hash(path, body.model_dump(mode="json"))
        status, answer = rt.unit(
            caller, lambda tx: refunds.refund(tx, rt, caller, payment_id, body, key, digest)
        )
        response.status_code = status
        return answer

    @router.get("/notifications", tags=["notifications"])
    async def list_notifications(
        caller: Signed,
        after: str | None = None,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0,
    ) -> Json:
        owner = caller.terminal_id

        def first(tx: Any) -> tuple[int, list[Json]]:
            seq = notifications.after_seq(tx, owner, after)
            return seq, notifications.newer_than(tx, owner, seq)

        seq, items = await anyio.to_thread.run_sync(rt.unit, caller, first)
        deadline = anyio.current_time() + wait
        while not items and anyio.current_time() < deadline:
            await anyio.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - anyio.current_time())))
            items = await anyio.to_thread.run_sync(
                rt.db.run, lambda tx: notifications.newer_than(tx, owner, seq)
            )
        return {"notifications": items}

    return router
