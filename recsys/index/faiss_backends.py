"""FAISS backends: flat (exact inner product), HNSW and IVF.

The CPU index is canonical: it is what ``save`` writes (``faiss.write_index``). With a GPU
build of faiss and a GPU, flat and IVF are built and searched on a GPU clone made with
``index_cpu_to_gpu`` (HNSW has no GPU form in faiss and stays on CPU). Filters:
``allow`` goes to faiss as an ``IDSelectorBatch`` in ``SearchParameters`` (CPU); a small
allow-list is searched exactly over its reconstructed vectors instead, since graph and
list traversal can miss items when only a few are allowed. ``exclude`` over-fetches
``k + len(exclude[i])`` and filters, so each query still gets k results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.artifacts import atomic_path
from recsys.device import faiss_has_gpu
from recsys.index.base import PAD_SCORE, ANNIndex, as_matrix, filter_candidates, top_k_rows

INDEX_FILE = "index.faiss"
GPU_MAX_K = 2048
"""faiss GPU search returns at most this many neighbours; larger fetches go to the CPU index."""
SMALL_ALLOW = 20_000
"""Allow-lists up to this size are searched exactly over their own vectors."""


def _faiss() -> Any:
    """faiss, imported on first use (it is heavy) and typed loosely (its SWIG stubs are incomplete)."""
    import faiss

    return faiss


class FaissIndex(ANNIndex):
    gpu_capable = True

    def __init__(self, dim: int, use_gpu: bool = False) -> None:
        super().__init__(dim)
        self.use_gpu = use_gpu and self.gpu_capable and faiss_has_gpu()
        self._gpu: Any = None
        self._gpu_resources: Any = None
        self._cpu: Any = self._new_index()

    # -- per backend -------------------------------------------------------------
    def _new_index(self) -> Any:
        raise NotImplementedError

    def _prepare(self, index: Any, vectors: np.ndarray) -> None:
        """Train (IVF) before vectors are added; nothing for flat and HNSW."""

    def _search_params(self, selector: Any) -> Any:
        faiss = _faiss()

        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def _after_change(self) -> None:
        """Keep what search needs in sync after build/add (IVF needs its direct map)."""

    # -- the interface -----------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self._cpu.ntotal)

    def _to_gpu(self, index: Any) -> Any:
        faiss = _faiss()

        if self._gpu_resources is None:
            self._gpu_resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)

    def build(self, vectors: np.ndarray) -> None:
        faiss = _faiss()

        matrix = as_matrix(vectors, self.dim)
        index = self._new_index()
        if self.use_gpu:
            gpu = self._to_gpu(index)
            self._prepare(gpu, matrix)
            gpu.add(matrix)
            self._cpu, self._gpu = faiss.index_gpu_to_cpu(gpu), gpu
        else:
            self._prepare(index, matrix)
            index.add(matrix)
            self._cpu = index
        self._after_change()

    def add(self, vectors: np.ndarray) -> None:
        matrix = as_matrix(vectors, self.dim)
        if not self._cpu.is_trained:  # an IVF that was never built learns its lists from this batch
            self.build(matrix)
            return
        self._cpu.add(matrix)
        if self._gpu is not None:
            self._gpu = self._to_gpu(self._cpu)
        self._after_change()

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        allow: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = as_matrix(queries, self.dim)
        n = len(queries)
        scores = np.full((n, k), PAD_SCORE, dtype=np.float32)
        indices = np.full((n, k), -1, dtype=np.int64)
        if n == 0 or self.ntotal == 0 or k <= 0:
            return scores, indices
        if allow is not None:
            allow = np.unique(np.asarray(allow, dtype=np.int64))
            allow = allow[(allow >= 0) & (allow < self.ntotal)]
            if len(allow) <= SMALL_ALLOW:
                return self._search_allowed_exactly(queries, k, exclude, allow)
        extra = (
            np.asarray([len(e) for e in exclude], dtype=np.int64)
            if exclude is not None
            else np.zeros(n, np.int64)
        )
        # Queries with similar exclusion counts share one over-fetch size (next power of two).
        fetch = np.minimum(self.ntotal, 2 ** np.ceil(np.log2(k + extra)).astype(np.int64))
        selector = None
        if allow is not None:
            faiss = _faiss()

            selector = faiss.IDSelectorBatch(allow)
        params = self._search_params(selector)
        for size in np.unique(fetch):
            rows = np.flatnonzero(fetch == size)
            on_gpu = self._gpu is not None and params is None and size <= GPU_MAX_K
            index = self._gpu if on_gpu else self._cpu
            raw_scores, raw_idx = index.search(queries[rows], int(size), params=params)
            row_exclude = [exclude[int(r)] for r in rows] if exclude is not None else None
            scores[rows], indices[rows] = filter_candidates(raw_scores, raw_idx, k, row_exclude, None)
        return scores, indices

    def _search_allowed_exactly(
        self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None, allow: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        vectors = self._cpu.reconstruct_batch(allow) if len(allow) else np.zeros((0, self.dim), np.float32)
        dense = queries @ vectors.T
        if exclude is not None:
            for row, excluded in enumerate(exclude):
                dense[row, np.isin(allow, excluded)] = -np.inf
        scores, local = top_k_rows(dense, k)
        if not len(allow):  # nothing allowed: every slot is padding
            return scores, local
        return scores, np.where(local >= 0, allow[np.maximum(local, 0)], -1)

    # -- persistence -------------------------------------------------------------
    def _save_data(self, directory: Path) -> None:
        faiss = _faiss()

        with atomic_path(directory / INDEX_FILE) as tmp:
            faiss.write_index(self._cpu, str(tmp))

    @classmethod
    def _load_data(cls, directory: Path, meta: dict[str, Any]) -> ANNIndex:
        faiss = _faiss()

        params = meta.get("params", {})
        index = cls.from_params(int(meta["dim"]), params, use_gpu=bool(params.get("use_gpu", True)))
        index._cpu = faiss.read_index(str(directory / INDEX_FILE))
        index._after_change()
        if index.use_gpu:
            index._gpu = index._to_gpu(index._cpu)
        return index

    @classmethod
    def from_params(cls, dim: int, params: dict[str, Any], use_gpu: bool) -> FaissIndex:
        return cls(dim, use_gpu=use_gpu)

    def params(self) -> dict[str, Any]:
        return {"use_gpu": self.use_gpu}


class FlatIndex(FaissIndex):
    backend = "flat"

    def _new_index(self) -> Any:
        faiss = _faiss()

        return faiss.IndexFlatIP(self.dim)


class HNSWIndex(FaissIndex):
    backend = "hnsw"
    gpu_capable = False

    def __init__(self, dim: int, m: int = 32, ef_construction: int = 200, ef_search: int = 256) -> None:
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        super().__init__(dim, use_gpu=False)

    def _new_index(self) -> Any:
        faiss = _faiss()

        index = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def _search_params(self, selector: Any) -> Any:
        faiss = _faiss()

        return (
            faiss.SearchParametersHNSW(sel=selector, efSearch=self.ef_search)
            if selector is not None
            else None
        )

    def _after_change(self) -> None:
        self._cpu.hnsw.efSearch = self.ef_search

    @classmethod
    def from_params(cls, dim: int, params: dict[str, Any], use_gpu: bool) -> FaissIndex:
        return cls(dim, int(params["m"]), int(params["ef_construction"]), int(params["ef_search"]))

    def params(self) -> dict[str, Any]:
        return {"m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}


def default_nlist(n: int) -> int:
    """4 * sqrt(n) lists, but at least 39 training points per list (faiss's own minimum)."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


class IVFIndex(FaissIndex):
    backend = "ivf"

    def __init__(self, dim: int, nlist: int | None = None, nprobe: int = 32, use_gpu: bool = False) -> None:
        self.nlist_setting = nlist
        self.nlist = nlist or 1
        self.nprobe = nprobe
        super().__init__(dim, use_gpu=use_gpu)

    def _new_index(self) -> Any:
        faiss = _faiss()

        index = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(self.dim), self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT
        )
        index.nprobe = self.nprobe
        return index

    def build(self, vectors: np.ndarray) -> None:
        self.nlist = self.nlist_setting or default_nlist(len(vectors))
        super().build(vectors)

    def _prepare(self, index: Any, vectors: np.ndarray) -> None:
        if len(vectors) < self.nlist:
            raise ValueError(f"IVF nlist={self.nlist} needs as many training vectors, got {len(vectors)}")
        index.train(vectors)

    def _search_params(self, selector: Any) -> Any:
        faiss = _faiss()

        return faiss.SearchParametersIVF(sel=selector, nprobe=self.nprobe) if selector is not None else None

    def _after_change(self) -> None:
        self._cpu.nprobe = self.nprobe
        self._cpu.make_direct_map()  # lets reconstruct_batch serve small allow-lists
        if self._gpu is not None:
            faiss = _faiss()

            faiss.GpuParameterSpace().set_index_parameter(self._gpu, "nprobe", self.nprobe)

    @classmethod
    def from_params(cls, dim: int, params: dict[str, Any], use_gpu: bool) -> FaissIndex:
        index = cls(dim, params.get("nlist_setting"), int(params["nprobe"]), use_gpu=use_gpu)
        index.nlist = int(params["nlist"])
        return index

    def params(self) -> dict[str, Any]:
        return {
            "nlist": self.nlist,
            "nlist_setting": self.nlist_setting,
            "nprobe": self.nprobe,
            "use_gpu": self.use_gpu,
        }
