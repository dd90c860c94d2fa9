"""``/healthz`` (the process answers), ``/readyz`` (a run is loaded) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving.dependencies import MetricsReader, ServingError
from serving.metrics import Metrics
from serving.schemas import Error, Health, Ready
from serving.state import ServingState


def build_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok")

    @router.get("/readyz", response_model=Ready, responses={503: {"model": Error}})
    async def readyz(request: Request) -> Ready:
        state: ServingState | None = request.app.state.holder.current
        if state is None:
            raise ServingError(503, "not_ready", "no run is loaded yet")
        return Ready(status="ready", run_id=state.run_id, loaded_at=state.loaded_at)

    @router.get(
        "/metrics",
        response_class=Response,
        dependencies=[MetricsReader],
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 401: {"model": Error}},
    )
    async def metrics(request: Request) -> Response:
        """Prometheus metrics of this worker; needs ``RECSYS_METRICS_TOKEN`` (or the admin token) when set."""
        registry: Metrics = request.app.state.metrics
        return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)

    return router
