"""The payment server's ASGI application, built by :func:`create_app` (no work at import).

Domain errors become HTTP answers in ONE table, :data:`EXCEPTION_HANDLERS`. Starlette looks
handlers up along the exception's MRO, so the ``PaymentError`` entry covers the whole family
(each subclass carries its own ``status`` and ``code``). 429 and 503 answers carry
``Retry-After``.

The OpenAPI document names these error answers for every operation (:func:`_openapi`), with
the one error body the API uses, so a client generator or a schema fuzzer sees the truth.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nfcpay import __version__
from nfcpay.crypto import FieldCipher
from nfcpay.errors import DatabaseUnavailable, PaymentError
from nfcpay.server import fastpath
from nfcpay.server.bodylimit import BodySizeLimit
from nfcpay.server.routes import build_router
from nfcpay.server.runtime import (
    Runtime,
    purge_idempotency_keys,
    purge_interval_s,
    server_clock,
    sleep_on,
)
from nfcpay.server.settings import ServerSettings, load_master_key
from nfcpay.server.store import migrate, open_database

log = logging.getLogger(__name__)


def _error(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


async def _payment_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PaymentError)
    retry = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(retry)} if retry is not None else None
    return _error(exc.status, exc.code, exc.message, getattr(exc, "field", None), headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ())]
    field = ".".join(loc[1:] if loc and loc[0] in {"body", "query", "path", "header"} else loc)
    message = f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
    return _error(422, "validation_error", message, field or None)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette still logs the traceback; the caller learns only that it may retry.
    return _error(500, "internal_error", "the payment server failed; the request may be retried")


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Any]] = {
    PaymentError: _payment_error,
    RequestValidationError: _validation_error,
    StarletteHTTPException: _http_error,
    Exception: _internal_error,
}


#: The error answers every signed operation may give (the OpenAPI document lists them).
_SIGNED_ERRORS = {
    "401": "Missing, bad, stale or replayed request signature (authentication_failed)",
    "403": "The calling terminal's role may not do this (forbidden)",
    "404": "No such object visible to the calling terminal (not_found)",
    "409": "The request clashes with current state or an idempotency key",
    "422": "Invalid request; `field` names the offending field (validation_error, ...)",
    "429": "Too many requests or failed authentications; see Retry-After (rate_limited)",
    "503": "The database is unavailable and nothing was written (database_unavailable), or "
    "the connection was lost while saving and the outcome is unknown: repeat with the same "
    "Idempotency-Key (database_outcome_unknown); see Retry-After",
}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable code"},
        "message": {"type": "string"},
        "field": {"type": "string"},
    },
}


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's document with the API's real error answers (its default 422 body, a
    ``detail`` list, is not what this server sends)."""
    original = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Error"] = _ERROR_SCHEMA
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in schema.get("paths", {}).items():
            codes = {"503": _SIGNED_ERRORS["503"]} if path == "/v1/health" else _SIGNED_ERRORS
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in codes.items():
                    responses[status] = {"description": description, "content": error}
        app.openapi_schema = schema
        return schema

    return document


async def _purge_idempotency_keys_forever(rt: Runtime) -> None:
    """The periodic task that enforces the idempotency retention period (on the server's
    clock, so a test clock moved past the retention purges without a real wait)."""
    while True:
        await sleep_on(rt.clock, purge_interval_s(rt.settings))
        try:
            purged = await anyio.to_thread.run_sync(purge_idempotency_keys, rt)
        except DatabaseUnavailable as exc:
            log.warning("idempotency purge skipped: %s", exc.message)
        except Exception:
            # A maintenance task must not take the server down; the next round retries.
            log.exception("idempotency purge failed")
        else:
            log.debug("purged %d expired idempotency keys", purged)


def create_runtime(settings: ServerSettings, environ: Mapping[str, str] | None = None) -> Runtime:
    """Pick the clock, load the master key, open the database and bring its schema up to date.

    ``environ`` is the server process's environment, which only the entry point passes: a
    test clock is allowed only when it names the same file (no environment: never). A refused
    test clock (:meth:`ServerSettings.checked_test_clock`) fails before anything is opened."""
    clock = server_clock(settings, environ or {})
    cipher = FieldCipher(load_master_key(settings.master_key_path))
    db = open_database(
        settings.database_url, timeout_s=settings.db_timeout_s, pool_size=settings.db_pool_size
    )
    try:
        version = migrate(db)
    except BaseException:
        db.close()
        raise
    log.debug("%s database ready at schema version %d", db.dialect, version)
    return Runtime(settings=settings, db=db, cipher=cipher, clock=clock)


#: Container objects allocated (net) before the youngest generation is collected; Python's
#: default is 700, which one payment's request allocates about half of.
GC_YOUNG_THRESHOLD = 20_000


def settle_garbage_collector() -> None:
    """Tune this process's garbage collector for serving, once the app is built.

    With Python's defaults the youngest generation is collected every couple of requests and
    the oldest, which holds every object the app and its libraries made at start, every few
    hundred: pauses of milliseconds that land on whichever requests are in flight. Measured
    (`bench_server.py --concurrency 32 --duration 10`, SQLite, alternating): p99 32 ms
    against 49 and 50 ms, approvals/s 1,298 and 1,264 against 1,253 and 1,229. The objects
    made at start are moved out of the collector's sight (``gc.freeze``), and collections
    come less often; garbage cycles are still collected, only in larger batches.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)


def migrate_database(settings: ServerSettings) -> None:
    """Bring the database's schema up to date, then close it: what a parent process does
    before it forks the workers that open it themselves (each then only reads the version;
    a database that cannot be reached or migrated fails the start before any fork)."""
    db = open_database(settings.database_url, timeout_s=settings.db_timeout_s)
    try:
        migrate(db)
    finally:
        db.close()


def create_app(
    settings: ServerSettings,
    *,
    runtime: Runtime | None = None,
    environ: Mapping[str, str] | None = None,
    payment_fast_path: bool = True,
) -> FastAPI:
    """The ASGI app for ``settings``. Pass ``runtime`` to share one (e.g. a test clock), or
    the process's ``environ`` for :func:`create_runtime`. Without ``payment_fast_path``
    every payment goes through FastAPI's route (tests compare the two)."""
    rt = runtime or create_runtime(settings, environ)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_purge_idempotency_keys_forever, rt)
            yield
            tasks.cancel_scope.cancel()
        rt.db.close()

    app = FastAPI(
        title="nfcpay payment server",
        version=__version__,
        summary="Temporary, usage-limited payment grants and their authorization",
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit)
    if payment_fast_path:  # added last: the outermost of the app's own middleware
        app.add_middleware(fastpath.PaymentFastPath, rt=rt, answer_error=_payment_error)
    app.state.runtime = rt
    app.include_router(build_router(rt))
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app
