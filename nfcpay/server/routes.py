"""The /v1 HTTP routes: authenticate, parse, call one service inside one transaction.

Handlers are ``async``: the transaction runs on the database's side (the SQLite writer
thread, or a worker thread for PostgreSQL) via :meth:`Runtime.unit_async`, so a request
costs no thread-pool hop of its own. POST /v1/payments also has a lean path in front of
FastAPI (:mod:`nfcpay.server.fastpath`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.routing import APIRoute

from nfcpay.errors import InvalidRequest
from nfcpay.server.auth import verify_request
from nfcpay.server.fastpath import pay
from nfcpay.server.runtime import Caller, Runtime
from nfcpay.server.schemas import (
    BillIn,
    CategoriesIn,
    DeliveryIn,
    FundingSourceIn,
    GrantIn,
    PaymentIn,
    RefundIn,
    SourceStatusIn,
    TerminalIn,
    refuse_nul,
)
from nfcpay.server.services import (
    bills,
    deliveries,
    grants,
    idempotency,
    merchants,
    notifications,
    payments,
    presentations,
    profiles,
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


async def _no_nul_in_url(request: Request) -> None:
    """Refuse (422) a path parameter or declared query parameter holding NUL (``%00``): the
    routes look such values up as text, which PostgreSQL cannot take (psycopg raises
    DataError, a 500); the body models refuse it in body fields alike (:func:`refuse_nul`).
    Undeclared query parameters are ignored, as everywhere (the payment fast path too)."""
    route = request.scope.get("route")
    declared = (
        {p.alias for p in route.dependant.query_params} if isinstance(route, APIRoute) else ()
    )
    query = [(k, v) for k, v in request.query_params.multi_items() if k in declared]
    for name, value in [*request.path_params.items(), *query]:
        try:
            refuse_nul(str(value))
        except ValueError as exc:
            raise InvalidRequest(f"{name}: {exc}", code="validation_error", field=name) from None


async def _long_poll(
    rt: Runtime, items: list[Json], wait: float, again: Callable[[Any], list[Json]]
) -> list[Json]:
    """``items``, or while there are none and ``wait`` seconds have not passed, what
    ``again`` finds (run every :data:`POLL_INTERVAL_S`)."""
    deadline = anyio.current_time() + wait
    while not items and anyio.current_time() < deadline:
        await anyio.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - anyio.current_time())))
        items = await rt.db.run_async(again)
    return items


def build_router(rt: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(_no_nul_in_url)])

    @router.get("/health", tags=["server"])
    async def health() -> Json:
        await rt.db.run_async(lambda tx: tx.scalar("SELECT 1 AS one"))
        return {"status": "ok", "database": rt.db.dialect}

    @router.post("/terminals", status_code=201, tags=["terminals"])
    async def register_terminal(request: Request, body: TerminalIn) -> Json:
        signed_request = await verify_request(request, rt, registering=True)
        caller, key = signed_request.caller, signed_request.public_key
        return await rt.unit_async(
            caller, lambda tx: terminals.register(tx, rt.now_us(), body, key)
        )

    @router.get("/terminals/me", tags=["terminals"])
    async def terminal_me(caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: terminals.me(tx, caller))

    @router.get("/terminals/{terminal_id}/profile", tags=["terminals"])
    async def terminal_profile(terminal_id: str, caller: Signed) -> Json:
        """Another terminal's label, role, merchant name and key fingerprint, for a party
        with it (a grant, payment or bill between the two); 404 as for an unknown terminal
        to anyone else."""
        return await rt.unit_async(caller, lambda tx: profiles.terminal(tx, caller, terminal_id))

    @router.get("/merchants/{merchant_id}/profile", tags=["merchants"])
    async def merchant_profile(merchant_id: str, caller: Signed) -> Json:
        """The profile of a merchant's terminal, by merchant id (as ``GET
        /v1/terminals/{terminal_id}/profile``)."""
        return await rt.unit_async(caller, lambda tx: profiles.merchant(tx, caller, merchant_id))

    @router.get("/merchants/me/categories", tags=["merchants"])
    async def merchant_categories(caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: merchants.mine(tx, caller))

    @router.put("/merchants/me/categories", tags=["merchants"])
    async def change_merchant_categories(body: CategoriesIn, caller: Signed) -> Json:
        return await rt.unit_async(
            caller, lambda tx: merchants.change(tx, rt.now_us(), caller, body.categories)
        )

    @router.post("/funding-sources", status_code=201, tags=["funding sources"])
    async def add_source(body: FundingSourceIn, caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: sources.add(tx, rt, caller, body))

    @router.get("/funding-sources", tags=["funding sources"])
    async def list_sources(caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: sources.list_own(tx, rt, caller))

    @router.patch("/funding-sources/{source_id}", tags=["funding sources"])
    async def set_source_status(source_id: str, body: SourceStatusIn, caller: Signed) -> Json:
        return await rt.unit_async(
            caller, lambda tx: sources.set_status(tx, rt, caller, source_id, body.status)
        )

    @router.post("/grants", status_code=201, tags=["grants"])
    async def issue_grant(body: GrantIn, caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: grants.issue(tx, rt, caller, body))

    @router.get("/grants", tags=["grants"])
    async def list_grants(caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: grants.list_visible(tx, rt, caller))

    @router.get("/grants/{grant_id}", tags=["grants"])
    async def get_grant(grant_id: str, caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: grants.get(tx, rt, caller, grant_id))

    @router.post("/grants/{grant_id}/revoke", tags=["grants"])
    async def revoke_grant(grant_id: str, caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: grants.revoke(tx, rt, caller, grant_id))

    @router.post("/grants/{grant_id}/confirm", tags=["grants"])
    async def confirm_grant(grant_id: str, caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: grants.confirm(tx, rt, caller, grant_id))

    @router.post("/bills", status_code=201, tags=["bills"])
    async def open_bill(body: BillIn, caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: bills.open_bill(tx, rt, caller, body))

    @router.get("/bills/{bill_id}", tags=["bills"])
    async def get_bill(bill_id: str, caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: bills.get(tx, caller, bill_id))

    @router.post("/payments", tags=["payments"])
    async def authorize_payment(
        body: PaymentIn, caller: Signed, key: IdempotencyKey = None
    ) -> Json:
        return await pay(rt, caller, body, key)

    @router.get("/payments", tags=["payments"])
    async def list_payments(caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: payments.list_own(tx, caller))

    @router.get("/payments/{payment_id}", tags=["payments"])
    async def get_payment(payment_id: str, caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: payments.get(tx, caller, payment_id))

    @router.get("/presentations/{merchant_id}/{challenge}", tags=["payments"])
    async def presentation_outcome(merchant_id: str, challenge: str, caller: Signed) -> Json:
        """The payment made with the means the caller presented for this merchant's challenge
        (base64url, as the payment body carries it); 404 ``no_payment_yet`` when none so far."""
        return await rt.unit_async(
            caller, lambda tx: presentations.outcome(tx, caller, merchant_id, challenge)
        )

    @router.post("/payments/{payment_id}/refunds", status_code=201, tags=["payments"])
    async def refund_payment(
        payment_id: str,
        body: RefundIn,
        caller: Signed,
        response: Response,
        key: IdempotencyKey = None,
    ) -> Json:
        key = idempotency.check_key(key)
        path = f"/v1/payments/{payment_id}/refunds"
        digest = idempotency.request_hash(path, body.model_dump(mode="json"))
        status, answer = await rt.unit_async(
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

        seq, items = await rt.unit_async(caller, first)
        items = await _long_poll(
            rt, items, wait, lambda tx: notifications.newer_than(tx, owner, seq)
        )
        return {"notifications": items}

    @router.post("/deliveries", status_code=201, tags=["deliveries"])
    async def send_grant(body: DeliveryIn, caller: Signed, response: Response) -> Json:
        """Keep a grant's hand-off record for its target terminal (201; 200 when the same
        grant already waits for it)."""
        status, answer = await rt.unit_async(
            caller, lambda tx: deliveries.send(tx, rt, caller, body)
        )
        response.status_code = status
        return answer

    @router.get("/deliveries", tags=["deliveries"])
    async def list_deliveries(
        caller: Signed, wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0
    ) -> Json:
        """The grants waiting for the calling terminal, each with its record, until it
        acknowledges them; with ``wait``, held open until one arrives."""
        items = await rt.unit_async(caller, lambda tx: deliveries.inbox(tx, rt, caller))
        items = await _long_poll(rt, items, wait, lambda tx: deliveries.inbox(tx, rt, caller))
        return {"deliveries": items}

    @router.get("/deliveries/{delivery_id}", tags=["deliveries"])
    async def get_delivery(delivery_id: str, caller: Signed) -> Json:
        return await rt.unit_async(caller, lambda tx: deliveries.get(tx, rt, caller, delivery_id))

    @router.post("/deliveries/{delivery_id}/ack", tags=["deliveries"])
    async def ack_delivery(delivery_id: str, caller: Signed) -> Json:
        """The target kept the grant: the server deletes the record and tells the owner."""
        return await rt.unit_async(caller, lambda tx: deliveries.ack(tx, rt, caller, delivery_id))

    return router
