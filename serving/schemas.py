"""Request and response bodies of the HTTP API (they are the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[^\x00-\x1f]+$"
"""Ids are non-empty and free of control characters (the online store separates key parts with one)."""
UserId = Field(min_length=1, max_length=256, pattern=ID_PATTERN)
Id = Annotated[str, Field(min_length=1, max_length=256, pattern=ID_PATTERN)]
FILTER_PATTERN = r"^\s*(category|tag)\s*:[^,]*[^,\s][^,]*(,\s*(category|tag)\s*:[^,]*[^,\s][^,]*)*$"
"""``key:value`` clauses joined by commas; keys: category, tag."""


class Strict(BaseModel):
    """No unknown fields, no coercion (``0`` is not ``false``, ``"5"`` is not ``5``)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class FeatureContribution(Strict):
    feature: str
    value: float | None
    """The feature's value (null: missing, e.g. the item was not retrieved by that source)."""
    contribution: float
    """Its share of the score (LightGBM SHAP value): bias + all contributions == score."""


class Explanation(Strict):
    bias: float
    features: list[FeatureContribution]
    """Largest absolute contribution first."""


class RecommendedItem(Strict):
    item_id: str
    title: str | None
    rank: int
    score: float
    sources: list[str]
    """Candidate sources that retrieved the item (empty for a text query)."""
    explanation: Explanation | None = None


class Recommendations(Strict):
    user_id: str
    arm: str | None = None
    """The experiment arm that answered (null: no experiment running)."""
    recommendation_id: str | None = None
    """Under an experiment, this answer's id: send it with the events it leads to (``POST /v1/events``)
    so they count for its arm."""
    run_id: str
    as_of: int
    """The moment described: events strictly before it count."""
    strategy: Literal["ranked", "popular", "text_query"]
    fallback: bool
    """The user has no history: the answer is recent popularity (or the text query's matches)."""
    items: list[RecommendedItem]


class SimilarItem(Strict):
    item_id: str
    title: str | None
    rank: int
    score: float
    """Cosine similarity of the item vectors."""


class SimilarItems(Strict):
    item_id: str
    run_id: str
    items: list[SimilarItem]


class Event(Strict):
    user_id: str = UserId
    item_id: str = UserId
    ts: int = Field(ge=0, le=10**11)
    """Unix seconds; not before the online store's last push."""
    event: str = Field("interaction", min_length=1, max_length=64)
    rating: float | None = Field(None, ge=-1e6, le=1e6)
    weight: float = Field(1.0, ge=-1e6, le=1e6)
    event_id: Id | None = None
    """Optional, unique per event (e.g. a UUID the client made): a retry with the same id counts once.
    Ids are remembered as long as the event log keeps the event (the online store's ttl)."""
    recommendation_id: Id | None = None
    """Optional: the ``recommendation_id`` of the answer that led to this event (a click, a purchase);
    the event then counts for that answer's experiment arm. Without it, an event within the running
    experiment's window after the user's latest answer counts for that answer."""


class EventBatch(Strict):
    events: list[Event] = Field(min_length=1)


class EventsAccepted(Strict):
    accepted: int
    """Events in the request, all durably logged (or already logged) when this answer is sent."""
    records_written: int
    duplicates: int = 0
    """Events skipped because their ``event_id`` was already logged (a retry)."""
    attributed: int = 0
    """Events counted for an experiment arm (by their ``recommendation_id`` or the window)."""
    run_id: str


class UserForgotten(Strict):
    user_id: str
    tombstoned: bool
    """A new tombstone was recorded (false: the user had been forgotten before)."""
    store_entries_removed: int
    run_files_rewritten: int


class BatchRecommendations(Strict):
    run_id: str
    results: list[Recommendations]


class Health(Strict):
    status: Literal["ok"]


class Ready(Strict):
    status: Literal["ready"]
    run_id: str
    loaded_at: float


class Reloaded(Strict):
    previous_run_id: str | None
    run_id: str
    changed: bool


class FieldError(Strict):
    field: str
    location: str
    message: str


class Error(Strict):
    error: str
    """A short code: invalid_request, unauthorized, writes_disabled, not_found, body_too_large, ..."""
    message: str
    fields: list[FieldError] = []
