"""What routes share: the state being served, the tokens, work off the event loop, the text-query
rate limit, and errors as JSON naming the problem.

The dependencies here are ``async``: they only compare strings, and a plain ``def`` dependency would
cost every request a hop through the thread pool.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, cast

import anyio
import anyio.to_thread
from cachetools import LRUCache
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from feature_store.online import STORE_UNAVAILABLE
from serving.schemas import FieldError
from serving.settings import ServingSettings
from serving.state import ServingState

T = TypeVar("T")


class ServingError(Exception):
    """An answer other than 2xx: HTTP status, a short code and a message (and the fields at fault)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or []
        self.headers = headers


def invalid(field: str, location: str, message: str) -> ServingError:
    """A 422 naming the parameter or body field at fault."""
    return ServingError(
        422,
        "invalid_request",
        f"{field}: {message}",
        [FieldError(field=field, location=location, message=message)],
    )


async def current_state(request: Request) -> ServingState:
    """The state this request uses to its end (a reload swaps the reference, never this object)."""
    state: ServingState | None = request.app.state.holder.current
    if state is None:
        raise ServingError(503, "not_ready", "no run is loaded yet")
    return state


# -- tokens ---------------------------------------------------------------------------------------

bearer = HTTPBearer(
    auto_error=False,
    description="RECSYS_API_TOKEN (admin: every route), RECSYS_READ_TOKEN (/v1 reads, when set) "
    "or RECSYS_METRICS_TOKEN (/metrics, when set)",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
AUTHENTICATE = {"WWW-Authenticate": "Bearer"}
HEADER = FieldError(field="Authorization", location="header", message="Bearer token")


def _given(credentials: HTTPAuthorizationCredentials | None, *tokens: SecretStr | None) -> bool:
    """The bearer token given is one of ``tokens`` (compared in constant time)."""
    if credentials is None:
        return False
    given = credentials.credentials.encode()
    return any(
        token is not None and secrets.compare_digest(given, token.get_secret_value().encode())
        for token in tokens
    )


def _token_guard(name: str, what: str, token: Callable[[ServingSettings], SecretStr | None]) -> Any:
    """A dependency: when ``token(settings)`` is set, the request needs it or the admin token."""

    async def guard(request: Request, credentials: Credentials) -> None:
        settings: ServingSettings = request.app.state.settings
        required = token(settings)
        if required is None or _given(credentials, required, settings.api_token):
            return
        problem = "missing" if credentials is None else "wrong"
        raise ServingError(
            401,
            "unauthorized",
            f"{what} needs a bearer token ({problem}): Authorization: Bearer <{name} or RECSYS_API_TOKEN>",
            [HEADER],
            headers=AUTHENTICATE,
        )

    return Depends(guard)


Reader = _token_guard("RECSYS_READ_TOKEN", "this /v1 route", lambda settings: settings.read_token)
"""Every ``/v1/*`` route: the read token (or the admin token) when ``RECSYS_READ_TOKEN`` is set."""
MetricsReader = _token_guard("RECSYS_METRICS_TOKEN", "/metrics", lambda settings: settings.metrics_token)


def require_admin(
    request: Request, credentials: HTTPAuthorizationCredentials | None, what: str, field: str, location: str
) -> None:
    """``what`` (e.g. ``explain=true``) reveals a user's history: it needs the admin token, whatever
    the read token allows. 401 when no token or a wrong one is given, 403 when the read token is."""
    settings: ServingSettings = request.app.state.settings
    if settings.api_token is None:
        message = (
            f"{what} reveals the user's history and needs the admin token; this service has none "
            "configured (set RECSYS_API_TOKEN)"
        )
        raise ServingError(
            403, "forbidden", message, [FieldError(field=field, location=location, message=message)]
        )
    if _given(credentials, settings.api_token):
        return
    if _given(credentials, settings.read_token):
        status, code, problem = 403, "forbidden", "the read token does not grant it"
    else:
        status, code, problem = 401, "unauthorized", "missing" if credentials is None else "wrong token"
    message = (
        f"{what} reveals the user's history and needs the admin token ({problem}): "
        "Authorization: Bearer <RECSYS_API_TOKEN>"
    )
    raise ServingError(
        status,
        code,
        message,
        [FieldError(field=field, location=location, message=message), HEADER],
        headers=AUTHENTICATE if status == 401 else None,
    )


async def require_writer(request: Request, credentials: Credentials) -> None:
    """Writes and admin need ``Authorization: Bearer <RECSYS_API_TOKEN>``; with no token configured they
    are refused, never open."""
    settings: ServingSettings = request.app.state.settings
    if settings.api_token is None:
        raise ServingError(
            403,
            "writes_disabled",
            "this service has no API token configured (set RECSYS_API_TOKEN): "
            "write and admin routes are refused",
        )
    if not _given(credentials, settings.api_token):
        raise ServingError(
            401, "unauthorized", "missing or wrong bearer token", [HEADER], headers=AUTHENTICATE
        )


State = Annotated[ServingState, Depends(current_state)]
Writer = Depends(require_writer)


# -- work off the event loop ------------------------------------------------------------------------


class WorkPool:
    """The threads that rank, explain and read the store, with a deadline per request.

    At most ``threads`` work at once. A request past its deadline is answered (503); if its work had
    started, the thread is abandoned and finishes on its own once the store gives up (its busy
    timeout). With ``4 × threads`` abandoned threads still running, the pool answers 503 at once
    instead of starting more, so a locked store cannot pile up a thread per request.
    """

    def __init__(self, threads: int, timeout_s: float) -> None:
        self.limiter = anyio.CapacityLimiter(threads)
        self.timeout_s = timeout_s
        self.max_abandoned = 4 * threads
        self._abandoned = 0
        self._lock = threading.Lock()

    @property
    def abandoned(self) -> int:
        """Threads still at work for requests already answered 503."""
        return self._abandoned

    async def run(self, work: Callable[[], T], deadline: bool = True) -> T:
        retry = {"Retry-After": "1"}
        if self._abandoned >= self.max_abandoned:
            raise ServingError(
                503,
                "busy",
                f"{self._abandoned} earlier requests still wait for the online store (locked by a writer?); "
                "retry",
                headers=retry,
            )
        claim = {"started": False, "finished": False, "given_up": False}

        def claimed() -> T | None:
            with self._lock:
                if claim["given_up"]:  # answered before a thread took it up: nothing to do
                    return None
                claim["started"] = True
            try:
                return work()
            finally:
                with self._lock:
                    claim["finished"] = True
                    if claim["given_up"]:
                        self._abandoned -= 1

        answered = False
        try:
            with anyio.fail_after(self.timeout_s if deadline else None):
                done = await anyio.to_thread.run_sync(claimed, abandon_on_cancel=True, limiter=self.limiter)
            answered = True
            return cast(T, done)
        except TimeoutError:
            raise ServingError(
                503,
                "busy",
                f"no answer within {self.timeout_s} s (RECSYS_WORK_TIMEOUT_S): the online store is locked "
                "by a writer or the ranking queue is full; retry",
                headers=retry,
            ) from None
        except STORE_UNAVAILABLE as error:
            raise ServingError(
                503, "store_unavailable", f"the online store did not answer ({error}); retry", headers=retry
            ) from None
        finally:
            if not answered:  # past the deadline, or the client went away: the thread may still run
                with self._lock:
                    claim["given_up"] = True
                    if claim["started"] and not claim["finished"]:
                        self._abandoned += 1


async def off_loop(request: Request, work: Callable[[], T], deadline: bool = True) -> T:
    """``work()`` (ranking, explanations, store reads) in the app's :class:`WorkPool`, so the event loop
    keeps answering ``/healthz`` and everything else meanwhile; past ``work_timeout_s`` (waiting for a
    thread included), 503 with Retry-After instead of hanging on a locked store or a long queue.
    ``deadline=False`` for work that is slow once and legitimately (loading the encoder)."""
    pool: WorkPool = request.app.state.work
    return await pool.run(work, deadline)


# -- text-query rate limit -------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per client: ``burst`` requests at once, then ``rate`` per second.

    Used from the event loop only (no lock); remembers the ``clients`` most recent clients, so a flood
    of addresses cannot grow it.
    """

    def __init__(self, rate: float, burst: int, clients: int = 10_000) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=clients)

    def wait(self, client: str, now: float | None = None) -> float:
        """0 and one request taken when ``client`` may go on; else the seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens - 1.0, now)
        return 0.0


def limit_text_queries(request: Request) -> None:
    """429 naming ``q`` when this client sent more text queries (which run the encoder) than allowed."""
    limiter: RateLimiter = request.app.state.query_limiter
    client = request.client.host if request.client is not None else "unknown"
    wait = limiter.wait(client)
    if wait > 0:
        message = (
            f"too many text queries from this client: at most {limiter.burst} at once, then "
            f"{limiter.rate:g} per second (RECSYS_QUERY_RATE_PER_S); retry in {wait:.1f} s"
        )
        raise ServingError(
            429,
            "rate_limited",
            message,
            [FieldError(field="q", location="query", message=message)],
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )
