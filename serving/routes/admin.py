"""``POST /admin/reload``: serve the newly promoted run without dropping a request."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serving.dependencies import ServingError, Writer
from serving.metrics import Metrics
from serving.schemas import Error, Reloaded
from serving.state import StateHolder, log


def build_router() -> APIRouter:
    router = APIRouter(
        tags=["admin"], responses={401: {"model": Error}, 403: {"model": Error}, 503: {"model": Error}}
    )

    @router.post("/admin/reload", response_model=Reloaded, dependencies=[Writer])
    async def reload(request: Request) -> Reloaded:
        """Load the promoted run off to the side, then swap it in with one reference assignment; requests
        in flight finish on the run they started with. On failure the current run keeps serving."""
        holder: StateHolder = request.app.state.holder
        metrics: Metrics = request.app.state.metrics
        try:
            previous, run_id = await holder.reload()
        except Exception as error:
            log.exception("reload failed")
            metrics.reloads.labels("failed").inc()
            raise ServingError(
                503, "reload_failed", f"reload failed, still serving the previous run: {error}"
            ) from None
        metrics.reloads.labels("ok").inc()
        metrics.serving(run_id)
        return Reloaded(previous_run_id=previous, run_id=run_id, changed=previous != run_id)

    return router
