"""``POST /v1/events``: live events into the online store, seen by the next request of any worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.to_thread
import polars as pl
from fastapi import APIRouter, Request

from recsys.experiments import PostedEvent, attribute
from serving.dependencies import ServingError, State, Writer, invalid
from serving.metrics import Metrics
from serving.schemas import Error, Event, EventBatch, EventsAccepted, FieldError
from serving.settings import Limits
from serving.state import ServingState

if TYPE_CHECKING:
    from feature_store.online import EventsApplied
    from feature_store.online_store import Outcome


def _apply(state: ServingState, events: list[Event]) -> tuple[EventsApplied, list[Outcome]]:
    """Log and apply the events, and log what they mean for an experiment, in one write under the
    store's lock (durable before the answer; a retried event is attributed once)."""
    from feature_store.offline import FeatureInputError
    from feature_store.online import OnlineStoreBusy, apply_events, unlogged

    frame = pl.DataFrame(
        [event.model_dump(exclude={"recommendation_id"}) for event in events],
        schema={
            "user_id": pl.String,
            "item_id": pl.String,
            "ts": pl.Int64,
            "event": pl.String,
            "rating": pl.Float64,
            "weight": pl.Float64,
            "event_id": pl.String,
        },
    )
    active = state.experiment.definition if state.experiment is not None else None
    try:
        with state.store.exclusive():
            known = state.store.known_event_ids([event.event_id for event in events if event.event_id])
            applied = apply_events(state.store, frame, state.recommender.items, state.config.features)
            posted = [
                PostedEvent(event.user_id, event.item_id, event.ts, event.event, event.recommendation_id)
                for event in unlogged(events, known)
            ]
            return applied, attribute(state.store, posted, active)
    except OnlineStoreBusy:
        raise ServingError(
            503, "store_busy", "the online store is busy; retry with the same event_id"
        ) from None
    except FeatureInputError as error:  # older than the last push: it would be counted twice
        message = str(error)
        raise ServingError(
            409, "stale_event", message, [FieldError(field="ts", location="body", message=message)]
        ) from None


def build_router(limits: Limits) -> APIRouter:
    router = APIRouter(
        tags=["events"],
        responses={code: {"model": Error} for code in (400, 401, 403, 404, 409, 413, 422, 503)},
    )

    @router.post("/v1/events", response_model=EventsAccepted, dependencies=[Writer])
    async def post_events(request: Request, state: State, body: Event | EventBatch) -> EventsAccepted:
        """One event or ``{"events": [...]}``; the next recommendation reflects them (the item is
        excluded, history-based scores move). Needs ``Authorization: Bearer <token>``. The events are
        in the store's event log before the answer is sent; give each an ``event_id`` to make a retry
        harmless, and the ``recommendation_id`` of the answer that led to it to count it for that
        answer's experiment arm."""
        events = body.events if isinstance(body, EventBatch) else [body]
        if len(events) > limits.max_events:
            raise invalid("events", "body", f"at most {limits.max_events} events per request")
        prefix = "events." if isinstance(body, EventBatch) else ""
        for position, event in enumerate(events):
            if state.recommender.catalog.index(event.item_id) is None:
                field = f"{prefix}{position}.item_id" if prefix else "item_id"
                message = f"item '{event.item_id}' is not in the catalog of run {state.run_id}"
                raise ServingError(
                    404,
                    "not_found",
                    f"{field}: {message}",
                    [FieldError(field=field, location="body", message=message)],
                )
        # Off the loop but without the work pool's deadline: a 503 must mean the event was not written
        # (a write cut off by a deadline would still land), so it waits for the store's busy timeout.
        applied, outcomes = await anyio.to_thread.run_sync(_apply, state, events)
        metrics: Metrics = request.app.state.metrics
        metrics.events.inc(applied.logged)
        active = state.experiment.definition if state.experiment is not None else None
        for outcome in outcomes:
            known = active is not None and outcome.experiment == active.name
            kind = active.kind(outcome.event) if active is not None and known else "other"
            metrics.outcomes.labels(outcome.experiment, outcome.arm, kind).inc()
        return EventsAccepted(
            accepted=len(events),
            records_written=applied.records,
            duplicates=applied.duplicates,
            attributed=len(outcomes),
            run_id=state.run_id,
        )

    return router


__all__ = ["ServingError", "build_router"]
