"""``/v1/users/{user_id}/recommendations`` and ``/v1/recommendations/batch``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Body, Path, Query, Request, Response
from pydantic import BaseModel

from serving.dependencies import ServingError, State, invalid
from serving.metrics import Metrics
from serving.schemas import (
    FILTER_PATTERN,
    ID_PATTERN,
    BatchRecommendations,
    Error,
    Explanation,
    FeatureContribution,
    Id,
    Recommendations,
    RecommendedItem,
)
from serving.settings import Limits
from serving.state import FilterError, ServingState


def json_response(body: BaseModel) -> Response:
    """The body serialized once by pydantic (the route's ``response_model`` documents it; FastAPI would
    validate and serialize it a second time)."""
    return Response(body.model_dump_json(), media_type="application/json")


ERRORS: dict[int | str, dict[str, Any]] = {422: {"model": Error}, 503: {"model": Error}}


def _allowed(state: ServingState, expression: str | None, field: str, location: str) -> np.ndarray | None:
    try:
        return state.allowed(expression)
    except FilterError as error:
        raise invalid(field, location, str(error)) from None


def recommend(
    state: ServingState,
    user_id: str,
    k: int,
    exclude_seen: bool,
    filter_expression: str | None,
    explain: bool,
    metrics: Metrics,
) -> Recommendations:
    """The user's top ``k`` from the shared :class:`~recsys.recommend.Recommender` (fallback if unknown).

    Answers without explanations are cached by everything they depend on (:meth:`ServingState.answer_key`).
    """
    recommender = state.recommender
    history = state.history(user_id)
    now = state.now(history)
    key = state.answer_key(history, now, k, exclude_seen, filter_expression)
    cached: Recommendations | None = None if explain else state.cache.get(key)
    if cached is not None:
        metrics.cache_hits.inc()
        _count(metrics, cached.strategy, cached.fallback)
        return cached
    allowed = state.allowed(filter_expression)
    candidates = recommender.score_user(history, now, allowed, exclude_seen=exclude_seen)
    top = candidates.top(k)
    explanations: list[Explanation | None] = [None] * len(top)
    if explain and len(top) and recommender.ranker is not None:
        frame = candidates.frame(top)
        contributions = recommender.ranker.contributions(frame).to_numpy()
        names = candidates.feature_names
        for row in range(len(top)):
            values = candidates.features[top[row]]
            order = np.argsort(-np.abs(contributions[row, :-1]), kind="stable")
            explanations[row] = Explanation(
                bias=float(contributions[row, -1]),
                features=[
                    FeatureContribution(
                        feature=names[i],
                        value=None if np.isnan(values[i]) else float(values[i]),
                        contribution=float(contributions[row, i]),
                    )
                    for i in order
                ],
            )
    ids = recommender.catalog.ids
    strategy: Literal["ranked", "popular"] = "popular" if candidates.fallback else "ranked"
    _count(metrics, strategy, candidates.fallback)
    answer = Recommendations(
        user_id=user_id,
        run_id=state.run_id,
        as_of=now,
        strategy=strategy,
        fallback=candidates.fallback,
        items=[
            RecommendedItem(
                item_id=str(ids[candidates.item_idx[position]]),
                title=state.titles[candidates.item_idx[position]],
                rank=rank,
                score=float(candidates.scores[position]),
                sources=candidates.sources(position),
                explanation=explanations[rank - 1],
            )
            for rank, position in enumerate(top.tolist(), start=1)
        ],
    )
    if not explain:
        state.cache.put(key, answer)
    return answer


def _count(metrics: Metrics, strategy: str, fallback: bool) -> None:
    metrics.recommendations.labels(strategy).inc()
    if fallback:
        metrics.fallbacks.inc()


def search_text(
    state: ServingState, user_id: str, text: str, k: int, allowed: np.ndarray | None, metrics: Metrics
) -> Recommendations:
    """Items nearest to ``text`` encoded by the run's fine-tuned encoder (for users without history)."""
    vector = state.encode_query(text)
    allow = None if allowed is None else np.flatnonzero(allowed)
    scores, indices = state.index.search(vector, k, allow=allow)
    metrics.recommendations.labels("text_query").inc()
    metrics.fallbacks.inc()
    ids = state.recommender.catalog.ids
    found = [(int(i), float(s)) for i, s in zip(indices[0], scores[0], strict=True) if i >= 0]
    return Recommendations(
        user_id=user_id,
        run_id=state.run_id,
        as_of=state.as_of,
        strategy="text_query",
        fallback=True,
        items=[
            RecommendedItem(item_id=str(ids[i]), title=state.titles[i], rank=rank, score=score, sources=[])
            for rank, (i, score) in enumerate(found, start=1)
        ],
    )


def build_router(limits: Limits) -> APIRouter:
    router = APIRouter(tags=["recommendations"], responses=ERRORS)

    @router.get("/v1/users/{user_id}/recommendations", response_model=Recommendations)
    async def user_recommendations(
        request: Request,
        state: State,
        user_id: Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)],
        k: int = Query(10, ge=1, le=limits.max_k, description="How many items."),
        exclude_seen: Annotated[bool, Query(description="Never recommend items the user had.")] = True,
        filter: Annotated[
            str | None,
            Query(
                max_length=1000,
                pattern=FILTER_PATTERN,
                description="Item metadata that must match, e.g. category:jazz or category:jazz,tag:live",
            ),
        ] = None,
        explain: Annotated[bool, Query(description="Add feature values and contributions.")] = False,
        q: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=500,
                description="Text searched semantically for users without history.",
            ),
        ] = None,
    ) -> Response:
        """The user's top ``k``: ranked for known users, recent popularity (flagged ``fallback``) for
        unknown ones, or with ``q`` the items nearest to that text."""
        metrics: Metrics = request.app.state.metrics
        allowed = _allowed(state, filter, "filter", "query")
        if q is not None and not len(state.history(user_id).items[0]):
            answer = await anyio.to_thread.run_sync(search_text, state, user_id, q, k, allowed, metrics)
        else:
            answer = recommend(state, user_id, k, exclude_seen, filter, explain, metrics)
        return json_response(answer)

    @router.post(
        "/v1/recommendations/batch",
        response_model=BatchRecommendations,
        responses={400: {"model": Error}, 413: {"model": Error}},
    )
    async def batch_recommendations(
        request: Request,
        state: State,
        user_ids: list[Id] = Body(min_length=1, max_length=limits.max_batch_users, embed=True),
        k: int = Body(10, ge=1, le=limits.max_k, embed=True),
        exclude_seen: bool = Body(True, embed=True, strict=True),
        filter: str | None = Body(None, max_length=1000, pattern=FILTER_PATTERN, embed=True),
    ) -> BatchRecommendations:
        """Recommendations for many users at once (each as ``GET .../recommendations`` would answer)."""
        _allowed(state, filter, "filter", "body")
        metrics: Metrics = request.app.state.metrics

        def run() -> list[Recommendations]:
            return [recommend(state, user, k, exclude_seen, filter, False, metrics) for user in user_ids]

        return BatchRecommendations(run_id=state.run_id, results=await anyio.to_thread.run_sync(run))

    return router


__all__ = ["ServingError", "build_router", "recommend", "search_text"]
