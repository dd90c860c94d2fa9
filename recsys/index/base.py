"""The ANN index interface every backend satisfies (one contract test suite runs against all).

Indices are dense item indices (rows of the vectors given to ``build``/``add``). Scores
are inner products; with L2-normalized vectors that is cosine similarity.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recsys.artifacts import atomic_write_json

META_FILE = "index.json"
PAD_SCORE = -np.inf


def as_matrix(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """C-contiguous float32 [n, d] (what faiss requires), with a clear error on a wrong shape."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-d matrix of vectors, got shape {matrix.shape}")
    if dim is not None and matrix.shape[1] != dim:
        raise ValueError(f"vectors have dimension {matrix.shape[1]}, the index has {dim}")
    return matrix


class ANNIndex(ABC):
    """Top-k inner-product search with per-query exclusions and a global allow-list."""

    backend: ClassVar[str]

    def __init__(self, dim: int) -> None:
        self.dim = dim

    @property
    @abstractmethod
    def ntotal(self) -> int: ...

    @abstractmethod
    def build(self, vectors: np.ndarray) -> None:
        """Replace the contents with ``vectors`` (rows get indices 0..n-1)."""

    @abstractmethod
    def add(self, vectors: np.ndarray) -> None:
        """Append ``vectors``; they get the next indices."""

    @abstractmethod
    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        allow: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [n, k], indices int64 [n, k]) best first, padded with (-inf, -1).

        ``exclude[i]`` are indices never returned for query i; ``allow`` (if given) are the
        only indices returned for any query. Both keep k results where enough items remain.
        """

    @abstractmethod
    def _save_data(self, directory: Path) -> None: ...

    @classmethod
    @abstractmethod
    def _load_data(cls, directory: Path, meta: dict[str, Any]) -> ANNIndex: ...

    def params(self) -> dict[str, Any]:
        """Backend settings written next to the data, so a loaded index searches the same way."""
        return {}

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_data(directory)
        meta = {"backend": self.backend, "dim": self.dim, "ntotal": self.ntotal, "params": self.params()}
        atomic_write_json(directory / META_FILE, meta)

    @classmethod
    def load(cls, directory: str | Path) -> ANNIndex:
        directory = Path(directory)
        meta = read_meta(directory)
        if meta["backend"] != cls.backend:
            raise ValueError(f"{directory}: holds a {meta['backend']!r} index, not {cls.backend!r}")
        return cls._load_data(directory, meta)


def read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{directory}: no {META_FILE}; not an index folder (run `recsys index build`)"
        )
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-first top-k of each row of a dense score matrix (-inf marks unavailable items)."""
    n, m = scores.shape
    out_scores = np.full((n, k), PAD_SCORE, dtype=np.float32)
    out_idx = np.full((n, k), -1, dtype=np.int64)
    take = min(k, m)
    if take == 0:
        return out_scores, out_idx
    part = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < m else np.tile(np.arange(m), (n, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    best_scores = np.take_along_axis(part_scores, order, axis=1)
    valid = np.isfinite(best_scores)
    out_scores[:, :take] = np.where(valid, best_scores, PAD_SCORE)
    out_idx[:, :take] = np.where(valid, best, -1)
    return out_scores, out_idx


def filter_candidates(
    scores: np.ndarray,
    indices: np.ndarray,
    k: int,
    exclude: Sequence[np.ndarray] | None,
    allow: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop excluded / not-allowed hits from over-fetched results and keep the best k per row."""
    n = len(indices)
    out_scores = np.full((n, k), PAD_SCORE, dtype=np.float32)
    out_idx = np.full((n, k), -1, dtype=np.int64)
    keep = indices >= 0
    if allow is not None:
        keep &= np.isin(indices, allow)
    for row in range(n):
        row_keep = keep[row]
        if exclude is not None and len(exclude[row]):
            row_keep = row_keep & ~np.isin(indices[row], exclude[row])
        hits = np.flatnonzero(row_keep)[:k]
        out_scores[row, : len(hits)] = scores[row, hits]
        out_idx[row, : len(hits)] = indices[row, hits]
    return out_scores, out_idx
