"""Which arm a live event counts for: the exposure its recommendation id names, else the user's
latest exposure in the running experiment when the event comes within the experiment's window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from feature_store.online_store import OnlineStore, Outcome
from recsys.experiments.definition import Experiment


@dataclass(frozen=True)
class PostedEvent:
    user_id: str
    item_id: str
    ts: int
    event: str
    recommendation_id: str | None = None


def attribute(store: OnlineStore, events: Sequence[PostedEvent], active: Experiment | None) -> list[Outcome]:
    """The outcomes ``events`` make, logged in the store; events that match no exposure make none.

    A recommendation id counts only for the user it was answered to. An unknown id (expired, or its
    exposure could not be logged) falls back to the window. Call it inside the block that writes the
    events (:meth:`OnlineStore.exclusive`), so a retried event that was skipped as a duplicate is not
    passed again.
    """
    by_id = store.exposures_by_id(sorted({e.recommendation_id for e in events if e.recommendation_id}))
    outcomes = []
    for event in events:
        exposure = by_id.get(event.recommendation_id) if event.recommendation_id else None
        via = "id"
        if exposure is not None and exposure.user_id != event.user_id:
            continue
        if exposure is None and active is not None:
            latest = store.latest_exposure(active.name, event.user_id)
            if latest is not None and latest.ts <= event.ts <= latest.ts + active.window_s:
                exposure, via = latest, "window"
        if exposure is None:
            continue
        outcomes.append(
            Outcome(
                recommendation_id=exposure.recommendation_id,
                experiment=exposure.experiment,
                arm=exposure.arm,
                user_id=event.user_id,
                item_id=event.item_id,
                event=event.event,
                ts=event.ts,
                shown=event.item_id in exposure.items,
                via=via,
            )
        )
    if outcomes:
        store.log_outcomes(outcomes)
    return outcomes
