"""Any :class:`~recsys.models.Scorer` as a candidate source, scored in memory-bounded user batches."""

from __future__ import annotations

import numpy as np

from recsys.catalog import Histories
from recsys.models.base import Scorer
from recsys.retrieval.base import CandidateSource, Retrieved

MAX_BATCH_CELLS = 20_000_000
"""Score cells (users x items) held at once: 80 MB of float32 whatever the catalog size."""


def top_k_items(
    scorer: Scorer,
    histories: Histories,
    k: int,
    exclude_seen: bool = True,
    max_batch_cells: int = MAX_BATCH_CELLS,
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's ``k`` best items, best first: (indices int64, scores float32), both ``n_users x k``.

    Seen items (when ``exclude_seen``) and ``-inf`` scores are never returned; rows with
    fewer than ``k`` candidates are padded with index ``-1`` and score ``-inf``.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    n_items = scorer.fitted_items()
    k_eff = min(k, n_items)
    indices = np.full((len(histories), k), -1, dtype=np.int64)
    values = np.full((len(histories), k), -np.inf, dtype=np.float32)
    batch = max(1, max_batch_cells // max(n_items, 1))
    for start in range(0, len(histories), batch):
        stop = min(start + batch, len(histories))
        part = histories.slice(start, stop)
        scores = scorer.score(part)
        if exclude_seen:
            rows = np.repeat(np.arange(stop - start), [len(items) for items in part.items])
            scores[rows, np.concatenate(part.items)] = -np.inf
        top = (
            np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff] if k_eff < n_items else np.argsort(-scores)
        )
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top, top_scores = (
            np.take_along_axis(top, order, axis=1),
            np.take_along_axis(top_scores, order, axis=1),
        )
        valid = top_scores > -np.inf
        indices[start:stop, :k_eff] = np.where(valid, top, -1)
        values[start:stop, :k_eff] = np.where(valid, top_scores, -np.inf)
    return indices, values


class ScorerSource(CandidateSource):
    """Candidates from a fitted scorer: full-catalog scores, seen items masked, top-k by argpartition."""

    def __init__(
        self,
        scorer: Scorer,
        name: str | None = None,
        exclude_seen: bool = True,
        max_batch_cells: int = MAX_BATCH_CELLS,
    ) -> None:
        super().__init__(exclude_seen=exclude_seen)
        self.scorer = scorer
        self.name = name or scorer.kind
        self.max_batch_cells = max_batch_cells

    def retrieve(self, histories: Histories, k: int, exclude_seen: bool | None = None) -> Retrieved:
        exclude = self.exclude_seen if exclude_seen is None else exclude_seen
        return Retrieved(*top_k_items(self.scorer, histories, k, exclude, self.max_batch_cells))
