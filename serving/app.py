"""The HTTP service: ``create_app(settings)`` builds a FastAPI app whose lifespan loads the promoted run.

Run it with ``recsys serve`` (uvicorn), or ``uvicorn serving.app:app_from_env --factory``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys import __version__
from recsys.config import load_config
from serving.dependencies import ServingError
from serving.metrics import ASGIApp, Message, Metrics, MetricsMiddleware, Receive, Scope, Send
from serving.routes import admin, events, health, items, recommendations, users
from serving.schemas import Error, FieldError
from serving.settings import ServingSettings
from serving.state import StateHolder

log = logging.getLogger("recsys.serving")

HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def _error(
    status: int, code: str, message: str, fields: list[FieldError] | None = None, **kw: Any
) -> JSONResponse:
    body = Error(error=code, message=message, fields=fields or [])
    return JSONResponse(body.model_dump(), status_code=status, **kw)


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 (by Content-Length, or while reading a chunked one)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = _error(413, "body_too_large", f"request body over {self.max_bytes} bytes")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[Message] = []
        size = 0
        while True:  # no length given: read it all (bounded) before the app sees it
            message = await receive()
            chunks.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServingError)
    async def serving_error(request: Request, error: ServingError) -> JSONResponse:
        return _error(error.status, error.code, error.message, error.fields, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        fields = [
            FieldError(
                field=".".join(str(part) for part in item["loc"][1:]) or str(item["loc"][0]),
                location=str(item["loc"][0]),
                message=str(item["msg"]),
            )
            for item in error.errors()
        ]
        message = "; ".join(f"{field.field}: {field.message}" for field in fields)
        return _error(422, "invalid_request", message, fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code, f"http_{error.status_code}")
        return _error(error.status_code, code, str(error.detail), headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", f"internal error ({type(error).__name__}); see the server log")


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    """The service for ``settings`` (default: from ``RECSYS_*``); the promoted run loads at start-up."""
    settings = settings or ServingSettings()
    config = load_config(settings.config)
    limits = settings.limits(config.serving)
    metrics = Metrics()
    holder = StateHolder(settings, config)

    def reloaded(previous: str | None, run_id: str) -> None:
        metrics.reloads.labels("followed_store").inc()
        metrics.serving(run_id)
        log.info("now serving run %s (was %s)", run_id, previous)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _, run_id = await holder.reload()
        metrics.reloads.labels("startup").inc()
        metrics.serving(run_id)
        follower = asyncio.create_task(holder.follow_store(reloaded))
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            if holder.current is not None:
                holder.current.close()

    app = FastAPI(
        title="recsys",
        version=__version__,
        description="Recommendations per user, similar items and live events over the promoted run.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.limits = limits
    app.state.metrics = metrics
    app.state.holder = holder
    _install_error_handlers(app)
    app.include_router(recommendations.build_router(limits))
    app.include_router(items.build_router(limits))
    app.include_router(events.build_router(limits))
    app.include_router(admin.build_router())
    app.include_router(users.build_router())
    app.include_router(health.build_router())
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn (``--factory``): settings from the environment."""
    return create_app(ServingSettings())
