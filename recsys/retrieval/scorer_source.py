"""Any :class:`~recsys.models.Scorer` as a candidate source, scored in memory-bounded user batches."""

from __future__ import annotations

from recsys.catalog import Histories
from recsys.models.base import MAX_BATCH_CELLS, Scorer
from recsys.retrieval.base import CandidateSource, Retrieved


class ScorerSource(CandidateSource):
    """Candidates from a fitted scorer: its :meth:`~recsys.models.base.Scorer.top_k`, seen items masked."""

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
        return Retrieved(*self.scorer.top_k(histories, k, exclude, self.max_batch_cells))
