"""``/v1/users/{user_id}/recommendations`` and ``/v1/recommendations/batch``."""

from __future__ import annotations

import json
import time
import uuid
from functools import partial
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Body, Path, Query, Request, Response
from pydantic_core import to_json

from feature_store.online_store import STORE_UNAVAILABLE, Exposure
from recsys.catalog import Histories
from serving.dependencies import (
    Credentials,
    ServingError,
    State,
    invalid,
    limit_text_queries,
    off_loop,
    require_admin,
)
from serving.exposures import ExposureWriter
from serving.metrics import Metrics
from serving.schemas import (
    FILTER_PATTERN,
    ID_PATTERN,
    BatchRecommendations,
    Error,
    Explanation,
    FeatureContribution,
    FieldError,
    Id,
    Recommendations,
    RecommendedItem,
)
from serving.settings import Limits
from serving.state import FilterError, ServingState, log

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Error} for code in (401, 403, 422, 429, 503)}


def _allowed(state: ServingState, expression: str | None, field: str, location: str) -> np.ndarray | None:
    try:
        return state.allowed(expression)
    except FilterError as error:
        raise invalid(field, location, str(error)) from None


PER_ANSWER = {"user_id", "arm", "recommendation_id"}
"""Fields an answer's cached JSON leaves out: they differ from one answer to the next."""


def _with_user(
    user_id: str, body: bytes, arm: str | None = None, recommendation_id: str | None = None
) -> bytes:
    """An answer's JSON whose per-answer fields were left out, with them put first: cached answers hold
    no id, so users without history share one."""
    return (
        b'{"user_id":'
        + to_json(user_id)
        + b',"arm":'
        + to_json(arm)
        + b',"recommendation_id":'
        + to_json(recommendation_id)
        + b","
        + body[1:]
    )


def answer(
    state: ServingState,
    user_id: str,
    k: int,
    exclude_seen: bool,
    filter_expression: str | None,
    explain: bool,
    q: str | None,
    metrics: Metrics,
    filter_location: str = "query",
    arm: str | None = None,
    recommendation_id: str | None = None,
) -> bytes:
    """The JSON of one user's :class:`Recommendations`: ranked, the fallback, or ``q`` searched when the
    user has no history. Reads the store and ranks: call it off the event loop."""
    allowed = _allowed(state, filter_expression, "filter", filter_location)
    history = state.history(user_id)
    if q is not None and not len(history.items[0]):
        body = search_text(state, q, k, allowed, metrics)
    else:
        body = recommend(state, history, k, exclude_seen, filter_expression, explain, metrics)
    return _with_user(user_id, body, arm, recommendation_id)


async def expose(request: Request, state: ServingState, answers: list[tuple[str, str, str, bytes]]) -> None:
    """Log the exposures of answers given under the running experiment: ``(user, arm, recommendation
    id, answer JSON)`` each. Logged before the answer is sent (with the worker's other answers of the
    moment: :class:`~serving.exposures.ExposureWriter`), so an event naming it finds it; a store that
    cannot take them costs the experiment these exposures (counted), never the answer."""
    assert state.experiment is not None
    name = state.experiment.definition.name
    now = int(time.time())
    exposures = [
        Exposure(
            recommendation_id=rid,
            experiment=name,
            arm=arm,
            run_id=state.experiment.arms[arm].run_id,
            user_id=user,
            ts=now,
            items=tuple(item["item_id"] for item in json.loads(body)["items"]),
        )
        for user, arm, rid, body in answers
    ]
    metrics: Metrics = request.app.state.metrics
    writer: ExposureWriter = request.app.state.exposures
    try:
        await writer.write(state.store, exposures)
    except STORE_UNAVAILABLE as error:
        log.warning("experiment %s: %d exposures not logged (%s)", name, len(exposures), type(error).__name__)
        for exposure in exposures:
            metrics.exposure_failures.labels(name, exposure.arm).inc()
        return
    for exposure in exposures:
        metrics.exposures.labels(name, exposure.arm).inc()


def _recommendation_id(arm: str | None) -> str | None:
    return uuid.uuid4().hex if arm is not None else None


def recommend(
    state: ServingState,
    history: Histories,
    k: int,
    exclude_seen: bool,
    filter_expression: str | None,
    explain: bool,
    metrics: Metrics,
) -> bytes:
    """The top ``k`` of the user of ``history`` from the shared :class:`~recsys.recommend.Recommender`
    (fallback if no history), as JSON without ``user_id``.

    Answers without explanations are cached by everything they depend on (:meth:`ServingState.answer_key`).
    """
    recommender = state.recommender
    now = state.now(history)
    key = state.answer_key(history, now, k, exclude_seen, filter_expression)
    cached = None if explain else state.cache.get(key)
    if cached is not None:
        metrics.cache_hits.inc()
        fallback = not len(history.items[0])
        _count(metrics, "popular" if fallback else "ranked", fallback)
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
    body = (
        Recommendations(
            user_id="",
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
        .model_dump_json(exclude=PER_ANSWER)
        .encode()
    )
    if not explain:
        state.cache.put(key, body)
    return body


def _count(metrics: Metrics, strategy: str, fallback: bool) -> None:
    metrics.recommendations.labels(strategy).inc()
    if fallback:
        metrics.fallbacks.inc()


def search_text(
    state: ServingState, text: str, k: int, allowed: np.ndarray | None, metrics: Metrics
) -> bytes:
    """Items nearest to ``text`` encoded by the run's fine-tuned encoder (for users without history),
    as JSON without ``user_id``."""
    vector = state.encode_query(text)
    allow = None if allowed is None else np.flatnonzero(allowed)
    scores, indices = state.index.search(vector, k, allow=allow)
    metrics.recommendations.labels("text_query").inc()
    metrics.fallbacks.inc()
    ids = state.recommender.catalog.ids
    found = [(int(i), float(s)) for i, s in zip(indices[0], scores[0], strict=True) if i >= 0]
    return (
        Recommendations(
            user_id="",
            run_id=state.run_id,
            as_of=state.as_of,
            strategy="text_query",
            fallback=True,
            items=[
                RecommendedItem(
                    item_id=str(ids[i]), title=state.titles[i], rank=rank, score=score, sources=[]
                )
                for rank, (i, score) in enumerate(found, start=1)
            ],
        )
        .model_dump_json(exclude=PER_ANSWER)
        .encode()
    )


def build_router(limits: Limits) -> APIRouter:
    router = APIRouter(tags=["recommendations"], responses=ERRORS)

    @router.get("/v1/users/{user_id}/recommendations", response_model=Recommendations)
    async def user_recommendations(
        request: Request,
        state: State,
        credentials: Credentials,
        user_id: Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)],
        k: int = Query(10, ge=1, le=limits.max_k, description="How many items."),
        exclude_seen: Annotated[
            bool,
            Query(description="Never recommend items the user had (false needs the admin token)."),
        ] = True,
        filter: Annotated[
            str | None,
            Query(
                max_length=1000,
                pattern=FILTER_PATTERN,
                description="Item metadata that must match, e.g. category:jazz or category:jazz,tag:live",
            ),
        ] = None,
        explain: Annotated[
            bool, Query(description="Add feature values and contributions (needs the admin token).")
        ] = False,
        q: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=500,
                description="Text searched semantically for users without history (rate-limited per client).",
            ),
        ] = None,
    ) -> Response:
        """The user's top ``k``: ranked for known users, recent popularity (flagged ``fallback``) for
        unknown ones, or with ``q`` the items nearest to that text."""
        if explain:
            require_admin(request, credentials, "explain=true", "explain", "query")
        if not exclude_seen:
            require_admin(request, credentials, "exclude_seen=false", "exclude_seen", "query")
        arm, served = state.for_user(user_id)
        if q is not None:
            limit_text_queries(request)
            await off_loop(request, served.load_encoder, deadline=False)
        metrics: Metrics = request.app.state.metrics
        rid = _recommendation_id(arm)
        work = partial(answer, served, user_id, k, exclude_seen, filter, explain, q, metrics)
        body = await off_loop(request, partial(work, arm=arm, recommendation_id=rid))
        if arm is not None and rid is not None:
            await expose(request, state, [(user_id, arm, rid, body)])
        return Response(body, media_type="application/json")

    @router.post(
        "/v1/recommendations/batch",
        response_model=BatchRecommendations,
        responses={400: {"model": Error}, 413: {"model": Error}},
    )
    async def batch_recommendations(
        request: Request,
        state: State,
        credentials: Credentials,
        user_ids: list[Id] = Body(min_length=1, max_length=limits.max_batch_users, embed=True),
        k: int = Body(10, ge=1, le=limits.max_k, embed=True),
        exclude_seen: bool = Body(True, embed=True, strict=True),
        filter: str | None = Body(None, max_length=1000, pattern=FILTER_PATTERN, embed=True),
    ) -> Response:
        """Recommendations for many users at once (each as ``GET .../recommendations`` would answer);
        ``len(user_ids) × k`` is bounded by ``RECSYS_MAX_BATCH_ITEMS``."""
        if len(user_ids) * k > limits.max_batch_items:
            message = (
                f"{len(user_ids)} users × k={k} = {len(user_ids) * k} items, over the budget of "
                f"{limits.max_batch_items} per request (RECSYS_MAX_BATCH_ITEMS): ask for fewer users or a "
                "smaller k"
            )
            raise ServingError(
                422,
                "invalid_request",
                message,
                [
                    FieldError(field="user_ids", location="body", message=message),
                    FieldError(field="k", location="body", message=message),
                ],
            )
        if not exclude_seen:
            require_admin(request, credentials, "exclude_seen=false", "exclude_seen", "body")
        metrics: Metrics = request.app.state.metrics
        results, exposed = [], []
        for user in user_ids:  # one at a time: a batch queues behind single requests, never ahead of all
            arm, served = state.for_user(user)
            rid = _recommendation_id(arm)
            work = partial(answer, served, user, k, exclude_seen, filter, False, None, metrics, "body")
            results.append(await off_loop(request, partial(work, arm=arm, recommendation_id=rid)))
            if arm is not None and rid is not None:
                exposed.append((user, arm, rid, results[-1]))
        if exposed:
            await expose(request, state, exposed)
        body = b'{"run_id":' + to_json(state.run_id) + b',"results":[' + b",".join(results) + b"]}"
        return Response(body, media_type="application/json")

    return router


__all__ = ["ServingError", "answer", "build_router"]
