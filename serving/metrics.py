"""Prometheus metrics of one worker: requests, latency, the run served, fallbacks, events, reloads,
and per experiment arm the answers served and the events attributed.

Each app has its own registry (several apps can live in one process, e.g. in tests). With
several uvicorn workers each reports its own numbers; scrape them per process or run
prometheus_client's multiprocess mode.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recsys_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "recsys_http_request_duration_seconds",
            "Time to answer, by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.recommendations = Counter(
            "recsys_recommendations",
            "Users answered, by strategy (ranked, popular fallback, text query)",
            ["strategy"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "recsys_fallbacks", "Users without history answered by the fallback", registry=self.registry
        )
        self.cache_hits = Counter(
            "recsys_answer_cache_hits", "Ranked answers served from the answer cache", registry=self.registry
        )
        self.cache_bytes = Gauge(
            "recsys_answer_cache_bytes", "Bytes held by the answer cache", registry=self.registry
        )
        self.cache_entries = Gauge(
            "recsys_answer_cache_entries", "Answers held by the answer cache", registry=self.registry
        )
        self.events = Counter(
            "recsys_events_applied", "Live events written to the online store", registry=self.registry
        )
        self.reloads = Counter(
            "recsys_reloads", "Run reloads, by outcome", ["outcome"], registry=self.registry
        )
        self.run = Gauge(
            "recsys_run_info", "The run being served (value 1)", ["run_id"], registry=self.registry
        )
        self.exposures = Counter(
            "recsys_experiment_exposures",
            "Answers served under an online experiment, by experiment and arm",
            ["experiment", "arm"],
            registry=self.registry,
        )
        self.exposure_failures = Counter(
            "recsys_experiment_exposure_failures",
            "Answers served whose exposure the online store could not log, by experiment and arm",
            ["experiment", "arm"],
            registry=self.registry,
        )
        self.outcomes = Counter(
            "recsys_experiment_outcomes",
            "Events attributed to an experiment arm, by kind (click, conversion, other)",
            ["experiment", "arm", "kind"],
            registry=self.registry,
        )

    def serving(self, run_id: str) -> None:
        self.run.clear()
        self.run.labels(run_id=run_id).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (not raw path: ids would explode labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, template, str(status)).inc()
