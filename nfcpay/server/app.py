"""The payment server's ASGI application, built by :func:`create_app` (no work at import).

Domain errors become HTTP answers in ONE table, :data:`EXCEPTION_HANDLERS`. Starlette looks
handlers up along the exception's MRO, so the ``PaymentError`` entry covers the whole family
(each subclass carries its own ``status`` and ``code``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nfcpay import __version__
from nfcpay.crypto import FieldCipher
from nfcpay.errors import PaymentError
from nfcpay.server.routes import build_router
from nfcpay.server.runtime import Runtime
from nfcpay.server.settings import ServerSettings, load_master_key
from nfcpay.server.store import migrate, open_database

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


async def _payment_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PaymentError)
    return _error(exc.status, exc.code, exc.message, getattr(exc, "field", None))


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
    return _error(exc.status_code, code, str(exc.detail))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette still logs the traceback; the caller learns only that it may retry.
    return _error(500, "internal_error", "the payment server failed; the request may be retried")


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Any]] = {
    PaymentError: _payment_error,
    RequestValidationError: _validation_error,
    StarletteHTTPException: _http_error,
    Exception: _internal_error,
}


def create_runtime(settings: ServerSettings) -> Runtime:
    """Load the master key, open the database and bring its schema up to date."""
    cipher = FieldCipher(load_master_key(settings.master_key_path))
    db = open_database(settings.database_url)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return Runtime(settings=settings, db=db, cipher=cipher)


def create_app(settings: ServerSettings, *, runtime: Runtime | None = None) -> FastAPI:
    """The ASGI app for ``settings``. Pass ``runtime`` to share one (e.g. a test clock)."""
    rt = runtime or create_runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        rt.db.close()

    app = FastAPI(
        title="nfcpay payment server",
        version=__version__,
        summary="Temporary, usage-limited payment grants and their authorization",
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.include_router(build_router(rt))
    return app
