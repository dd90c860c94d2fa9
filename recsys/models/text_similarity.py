"""Content baseline: the user's (recency-weighted) mean item vector against every item vector."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.catalog import Histories, ItemCatalog
from recsys.models.base import Scorer


class TextSimilarityScorer(Scorer):
    """Cosine-style scores from caller-supplied item vectors (e.g. pretrained MiniLM embeddings).

    Vectors are L2-normalised; a history's vector is the mean of its items' vectors, weighted
    by ``0.5 ** (age / half_life_events)`` (age 0 = latest event) when ``half_life_events``
    is set, uniform otherwise. ``fit`` learns nothing: it only checks the vectors match the
    catalog, so this is the "what does text alone know" reference.
    """

    kind = "text_similarity"

    def __init__(self, item_vectors: np.ndarray | None = None, half_life_events: float | None = None) -> None:
        if half_life_events is not None and half_life_events <= 0:
            raise ValueError(f"half_life_events must be positive or None, got {half_life_events}")
        self.half_life_events = half_life_events
        self.item_vectors: np.ndarray | None = None
        if item_vectors is not None:
            vectors = np.asarray(item_vectors, dtype=np.float32)
            if vectors.ndim != 2:
                raise ValueError(f"item_vectors must be 2-D (items x dim), got shape {vectors.shape}")
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            self.item_vectors = vectors / np.maximum(norms, 1e-12)

    def fit(self, interactions: pl.DataFrame, catalog: ItemCatalog) -> Self:
        if self.item_vectors is None:
            raise ValueError("TextSimilarityScorer needs item_vectors (one row per catalog item)")
        if len(self.item_vectors) != len(catalog):
            raise ValueError(
                f"item_vectors has {len(self.item_vectors)} rows but the catalog has {len(catalog)} items"
            )
        self.n_items = len(catalog)
        return self

    def _score(self, histories: Histories) -> np.ndarray:
        assert self.item_vectors is not None and self.n_items is not None
        weights = [self._weights(len(items)) for items in histories.items]
        rows = np.repeat(np.arange(len(histories)), [len(items) for items in histories.items])
        cols = np.concatenate(histories.items) if len(histories) else np.zeros(0, dtype=np.int64)
        data = np.concatenate(weights) if weights else np.zeros(0, dtype=np.float32)
        mixing = sp.csr_matrix((data, (rows, cols)), shape=(len(histories), self.n_items))
        user_vectors = np.asarray(mixing @ self.item_vectors, dtype=np.float32)
        return user_vectors @ self.item_vectors.T

    def _weights(self, length: int) -> np.ndarray:
        if self.half_life_events is None:
            raw = np.ones(length, dtype=np.float64)
        else:
            raw = 0.5 ** (np.arange(length - 1, -1, -1) / self.half_life_events)
        return (raw / max(raw.sum(), 1e-12)).astype(np.float32)

    def params(self) -> dict[str, Any]:
        return {"half_life_events": self.half_life_events}

    def _state(self) -> dict[str, np.ndarray]:
        assert self.item_vectors is not None
        return {"item_vectors": self.item_vectors}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.item_vectors = state["item_vectors"]
