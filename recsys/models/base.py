"""The ``Scorer`` interface: score every catalog item for users given only their histories.

In the spirit of implicit's ``RecommenderBase``, but a scorer never keeps per-user state:
``score`` reads the history it is given, so users absent from ``fit`` and events that
arrived after it (online) are served by the same code. Fitted scorers save to a folder as
``scorer.json`` (kind, parameters) + ``scorer.npz`` (arrays, ``allow_pickle=False``), and
:func:`load_scorer` rebuilds any of them without refitting.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.artifacts import atomic_path, atomic_write_json
from recsys.catalog import Histories, ItemCatalog
from recsys.models.top_k import Entries, best_of_entries, dense_entries, history_cells

SCORER_JSON = "scorer.json"
SCORER_NPZ = "scorer.npz"
FORMAT_VERSION = 1
MAX_BATCH_CELLS = 20_000_000
"""Score cells (users x items) held at once by :meth:`Scorer.top_k`: 80 MB of float32 whatever the catalog."""

_REGISTRY: dict[str, type[Scorer]] = {}


class NotFittedError(RuntimeError):
    """``score`` or ``save`` was called before ``fit``."""


class Scorer(ABC):
    """Scores all ``n_items`` catalog items for each history: float32, higher is better.

    Callers mask seen items themselves (a scorer may well score them high). ``-inf`` means
    "never a candidate" (e.g. items outside a model's vocabulary).
    """

    kind: ClassVar[str]
    n_items: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _REGISTRY[cls.kind] = cls

    @abstractmethod
    def fit(self, interactions: pl.DataFrame, catalog: ItemCatalog) -> Self:
        """Learn from ``interactions`` (user_id, item_id, ts, ...); items are indexed by ``catalog``."""

    def score(self, histories: Histories) -> np.ndarray:
        """Dense ``len(histories) x n_items`` float32 scores."""
        self._check_histories(histories)
        scores = self._score(histories)
        # writeable: callers mask seen items in place (a one-row broadcast is contiguous but read-only)
        return np.require(scores, dtype=np.float32, requirements=["C", "W"])

    def top_k(
        self,
        histories: Histories,
        k: int,
        exclude_seen: bool = True,
        max_batch_cells: int = MAX_BATCH_CELLS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each user's ``k`` best items, best first, ties to the smaller item index: (indices int64,
        scores float32), both ``n_users x k``.

        Seen items (when ``exclude_seen``) and ``-inf`` scores are never returned; rows with fewer
        than ``k`` candidates are padded with index ``-1`` and score ``-inf``. Users are taken in
        batches of about ``max_batch_cells`` score cells, so memory is bounded whatever their number.
        """
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        self._check_histories(histories)
        indices = np.full((len(histories), k), -1, dtype=np.int64)
        values = np.full((len(histories), k), -np.inf, dtype=np.float32)
        batch = max(1, max_batch_cells // max(self._cells_per_user(histories, k), 1))
        for start in range(0, len(histories), batch):
            part = histories.slice(start, start + batch)
            best = best_of_entries(self._best_entries(part, k, exclude_seen), len(part), k)
            indices[start : start + batch], values[start : start + batch] = best
        return indices, values

    def _best_entries(self, histories: Histories, k: int, exclude_seen: bool) -> Entries:
        """At least each user's ``k`` best valid items (see :mod:`recsys.models.top_k`); the dense way
        here, overridden by scorers that can skip the users x items matrix."""
        scores = self.score(histories)
        if exclude_seen:
            scores[history_cells(histories.items)] = -np.inf
        return dense_entries(scores, k)

    def _cells_per_user(self, histories: Histories, k: int) -> int:
        """Score cells one user costs in :meth:`_best_entries` (sets the batch size of :meth:`top_k`)."""
        return self.fitted_items()

    def _check_histories(self, histories: Histories) -> None:
        n_items = self.fitted_items()
        for user, items in zip(histories.user_ids, histories.items, strict=True):
            if len(items) and (items.min() < 0 or items.max() >= n_items):
                raise ValueError(f"history of user {user!r} has item indices outside 0..{n_items - 1}")

    @abstractmethod
    def _score(self, histories: Histories) -> np.ndarray: ...

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable): ``type(self)(**params())`` is an unfitted twin."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """The fitted arrays, saved as npz."""

    @abstractmethod
    def _restore(self, state: dict[str, np.ndarray]) -> None: ...

    def fitted_items(self) -> int:
        """How many items it scores (the catalog it was fitted on); NotFittedError before fit or load."""
        if self.n_items is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load_scorer() first")
        return self.n_items

    def save(self, directory: str | Path) -> Path:
        """Write ``scorer.json`` and ``scorer.npz`` into ``directory`` (created if missing)."""
        n_items = self.fitted_items()
        directory = Path(directory)
        with atomic_path(directory / SCORER_NPZ) as tmp, tmp.open("wb") as handle:
            np.savez(handle, **self._state())  # type: ignore[arg-type]  # numpy stubs type **kwds as bool
        meta = {
            "kind": self.kind,
            "params": self.params(),
            "n_items": n_items,
            "format_version": FORMAT_VERSION,
        }
        atomic_write_json(directory / SCORER_JSON, meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        scorer = load_scorer(directory)
        if not isinstance(scorer, cls):
            raise TypeError(f"{directory}: holds a {type(scorer).__name__}, not a {cls.__name__}")
        return scorer


def load_scorer(directory: str | Path) -> Scorer:
    """Rebuild the fitted scorer saved in ``directory``, whatever its kind."""
    directory = Path(directory)
    meta_path = directory / SCORER_JSON
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: no saved scorer here")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    kind = meta.get("kind")
    if kind not in _REGISTRY:
        raise ValueError(f"{meta_path}: unknown scorer kind {kind!r} (known: {sorted(_REGISTRY)})")
    scorer = _REGISTRY[kind](**meta["params"])
    with np.load(directory / SCORER_NPZ, allow_pickle=False) as arrays:
        scorer._restore({name: arrays[name] for name in arrays.files})
    scorer.n_items = int(meta["n_items"])
    return scorer


def interaction_matrix(interactions: pl.DataFrame, catalog: ItemCatalog) -> sp.csr_matrix:
    """Binary users x items matrix (float32) of ``interactions``, one row per user in sorted id order.

    Events on items unknown to ``catalog`` are dropped; repeated events count once.
    """
    frame = catalog.with_index(interactions.select("user_id", "item_id"))
    user_codes = frame["user_id"].rank("dense").to_numpy().astype(np.int64) - 1
    n_users = int(user_codes.max()) + 1 if len(user_codes) else 0
    return _binary_csr(user_codes, frame["item_idx"].to_numpy(), (n_users, len(catalog)))


def history_matrix(histories: Histories, n_items: int) -> sp.csr_matrix:
    """Binary users x items matrix (float32) of ``histories``, one row per history."""
    rows = np.repeat(np.arange(len(histories)), [len(items) for items in histories.items])
    cols = np.concatenate(histories.items) if len(histories) else np.zeros(0, dtype=np.int64)
    return _binary_csr(rows, cols, (len(histories), n_items))


def _binary_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
