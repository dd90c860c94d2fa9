"""The HTTP service: ``create_app(settings)`` builds a FastAPI app whose lifespan loads the promoted run.

Run it with ``recsys serve`` (uvicorn), or ``uvicorn serving.app:app_from_env --factory``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import traceback
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys import __version__
from recsys.config import load_config
from serving.dependencies import RateLimiter, Reader, ServingError, WorkPool
from serving.exposures import ExposureWriter
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


class UnexpectedErrorMiddleware:
    """Any exception a route did not turn into an answer: 500 JSON, and one log line naming the route
    template and the code path, never the raw path (ids) or the exception's message (it may quote
    request values; it is logged at DEBUG). Nothing is re-raised for the server to log again."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as error:
            route = getattr(scope.get("route"), "path", None) or "unmatched route"
            frames = "".join(traceback.format_tb(error.__traceback__))
            log.error(
                "unhandled %s on %s %s; traceback (message at DEBUG):\n%s",
                type(error).__name__,
                scope.get("method", ""),
                route,
                frames,
            )
            log.debug("unhandled error: %r", error)
            if started:
                raise
            answer = _error(
                500, "internal_error", f"internal error ({type(error).__name__}); see the server log"
            )
            await answer(scope, receive, send)


KNOWN_SEGMENTS = frozenset(
    {
        *("v1", "users", "items", "recommendations", "similar", "events", "batch", "admin", "reload"),
        *("healthz", "readyz", "metrics", "openapi.json", "docs", "redoc", "oauth2-redirect"),
    }
)
"""Path segments of the routes; any other segment is an id or unknown and is not logged."""
ID_AFTER = {"users": "{user_id}", "items": "{item_id}"}


def redact_path(path: str) -> str:
    """``/v1/users/u42/recommendations?q=jazz`` → ``/v1/users/{user_id}/recommendations?q=…``: the
    route's shape without ids or query values."""
    path, sep, query = path.partition("?")
    parts = path.split("/")
    for position, part in enumerate(parts):
        if part and part not in KNOWN_SEGMENTS:
            parts[position] = ID_AFTER.get(parts[position - 1], "{…}")
    names = [re.sub(r"[^A-Za-z0-9_]", "", item.partition("=")[0])[:32] for item in query.split("&") if item]
    return "/".join(parts) + (sep + "&".join(f"{name}=…" for name in names) if sep else "")


class RedactedAccessLog(logging.Filter):
    """uvicorn's access log (INFO) names the raw path and query: keep only their shape."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            client, method, path, version, status = args
            record.args = (client, method, redact_path(str(path)), version, status)
        return True


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactedAccessLog) for existing in access.filters):
        access.addFilter(RedactedAccessLog())


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
    app.state.work = WorkPool(settings.work_threads, settings.work_timeout_s)
    app.state.exposures = ExposureWriter()
    app.state.query_limiter = RateLimiter(settings.query_rate_per_s, settings.query_burst)
    metrics.cache_bytes.set_function(lambda: holder.current.cache.nbytes if holder.current else 0)
    metrics.cache_entries.set_function(lambda: len(holder.current.cache) if holder.current else 0)
    _install_error_handlers(app)
    _redact_access_log()
    for router in (
        recommendations.build_router(limits),
        items.build_router(limits),
        events.build_router(limits),
    ):
        app.include_router(router, dependencies=[Reader])
    app.include_router(admin.build_router())
    app.include_router(users.build_router())
    app.include_router(health.build_router())
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn (``--factory``): settings from the environment."""
    return create_app(ServingSettings())
