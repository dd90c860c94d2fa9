"""``/v1/items/{item_id}/similar``: nearest items by vector (ANN index of the served run)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Query, Request

from serving.dependencies import ServingError, State, off_loop
from serving.schemas import Error, SimilarItem, SimilarItems
from serving.settings import Limits
from serving.state import ServingState


def similar(state: ServingState, item_id: str, k: int) -> SimilarItems:
    """The ``k`` items nearest to ``item_id`` (an ANN search: call it off the event loop)."""
    row = state.recommender.catalog.index(item_id)
    if row is None:
        raise ServingError(404, "not_found", f"item '{item_id}' is not in the catalog of run {state.run_id}")
    vectors = state.recommender.item_vectors
    scores, indices = state.index.search(vectors[row : row + 1], k, exclude=[np.asarray([row])])
    ids = state.recommender.catalog.ids
    found = [(int(i), float(s)) for i, s in zip(indices[0], scores[0], strict=True) if i >= 0]
    return SimilarItems(
        item_id=item_id,
        run_id=state.run_id,
        items=[
            SimilarItem(item_id=str(ids[i]), title=state.titles[i], rank=rank, score=score)
            for rank, (i, score) in enumerate(found, start=1)
        ],
    )


def build_router(limits: Limits) -> APIRouter:
    router = APIRouter(tags=["items"], responses={code: {"model": Error} for code in (401, 404, 422, 503)})

    @router.get("/v1/items/{item_id}/similar", response_model=SimilarItems)
    async def similar_items(
        request: Request,
        state: State,
        item_id: Annotated[str, Path(min_length=1, max_length=256)],
        k: int = Query(10, ge=1, le=limits.max_k, description="How many items."),
    ) -> SimilarItems:
        """The ``k`` items whose vectors are nearest to this item's (the item itself excluded)."""
        return await off_loop(request, partial(similar, state, item_id, k))

    return router
