"""Exact search in numpy: the reference every other backend is tested against, fine for small catalogs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.index.base import ANNIndex, as_matrix, top_k_rows

VECTORS_FILE = "vectors.npy"
QUERY_CHUNK = 1024


class ExactIndex(ANNIndex):
    backend = "exact"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.vectors = np.zeros((0, dim), dtype=np.float32)

    @property
    def ntotal(self) -> int:
        return len(self.vectors)

    def build(self, vectors: np.ndarray) -> None:
        self.vectors = as_matrix(vectors, self.dim).copy()

    def add(self, vectors: np.ndarray) -> None:
        self.vectors = np.concatenate([self.vectors, as_matrix(vectors, self.dim)])

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        allow: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = as_matrix(queries, self.dim)
        blocked = None
        if allow is not None:
            blocked = np.ones(self.ntotal, dtype=bool)
            blocked[np.asarray(allow, dtype=np.int64)] = False
        parts = []
        for start in range(0, len(queries), QUERY_CHUNK):
            scores = queries[start : start + QUERY_CHUNK] @ self.vectors.T
            if blocked is not None:
                scores[:, blocked] = -np.inf
            if exclude is not None:
                for row, excluded in enumerate(exclude[start : start + QUERY_CHUNK]):
                    scores[row, np.asarray(excluded, dtype=np.int64)] = -np.inf
            parts.append(top_k_rows(scores, k))
        if not parts:
            return np.zeros((0, k), dtype=np.float32), np.zeros((0, k), dtype=np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _save_data(self, directory: Path) -> None:
        np.save(directory / VECTORS_FILE, self.vectors, allow_pickle=False)

    @classmethod
    def _load_data(cls, directory: Path, meta: dict[str, Any]) -> ExactIndex:
        index = cls(int(meta["dim"]))
        index.vectors = np.load(directory / VECTORS_FILE, allow_pickle=False)
        return index
