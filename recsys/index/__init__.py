"""Nearest-neighbour search over item vectors: one ``ANNIndex`` interface, exact and FAISS backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.config import IndexConfig
from recsys.device import faiss_has_gpu
from recsys.embeddings import ItemEmbeddings
from recsys.index.base import ANNIndex, read_meta
from recsys.index.exact import ExactIndex
from recsys.index.faiss_backends import FlatIndex, HNSWIndex, IVFIndex

BACKENDS: dict[str, type[ANNIndex]] = {
    cls.backend: cls for cls in (ExactIndex, FlatIndex, HNSWIndex, IVFIndex)
}


def choose_backend(n_items: int, config: IndexConfig) -> str:
    """``auto``: exact flat search while it is cheap, HNSW for mid-size catalogs, IVF for huge ones."""
    if config.backend != "auto":
        return config.backend
    if n_items < config.hnsw_min_items:
        return "flat"
    return "hnsw" if n_items < config.ivf_min_items else "ivf"


def new_index(backend: str, dim: int, config: IndexConfig) -> ANNIndex:
    use_gpu = config.use_gpu == "auto" and faiss_has_gpu()
    if backend == "exact":
        return ExactIndex(dim)
    if backend == "flat":
        return FlatIndex(dim, use_gpu=use_gpu)
    if backend == "hnsw":
        return HNSWIndex(dim, config.hnsw_m, config.hnsw_ef_construction, config.hnsw_ef_search)
    if backend == "ivf":
        return IVFIndex(dim, config.ivf_nlist, config.ivf_nprobe, use_gpu=use_gpu)
    raise ValueError(f"unknown index backend {backend!r}; choose one of {sorted(BACKENDS)} or 'auto'")


def build_index(vectors: np.ndarray, config: IndexConfig) -> ANNIndex:
    index = new_index(choose_backend(len(vectors), config), int(vectors.shape[1]), config)
    index.build(vectors)
    return index


def load_index(directory: str | Path) -> ANNIndex:
    """Whatever backend ``directory/index.json`` names."""
    meta = read_meta(Path(directory))
    backend = BACKENDS.get(str(meta["backend"]))
    if backend is None:
        raise ValueError(f"{directory}: unknown index backend {meta['backend']!r}")
    return backend.load(directory)


def similar_items(
    embeddings: ItemEmbeddings, item_id: str, k: int, index: ANNIndex | None = None
) -> list[tuple[str, float]]:
    """The ``k`` items nearest to ``item_id`` (itself excluded) as (item id, cosine)."""
    rows = np.flatnonzero(embeddings.ids == item_id)
    if not len(rows):
        raise KeyError(f"item {item_id!r} has no embedding")
    if index is None:
        index = ExactIndex(embeddings.dim)
        index.build(embeddings.vectors)
    elif index.ntotal != len(embeddings):
        raise ValueError(
            f"index holds {index.ntotal} vectors but the embeddings file {len(embeddings)}; rebuild it"
        )
    scores, indices = index.search(embeddings.vectors[rows[:1]], k, exclude=[rows[:1]])
    return [(str(embeddings.ids[i]), float(s)) for s, i in zip(scores[0], indices[0], strict=True) if i >= 0]


__all__ = [
    "BACKENDS",
    "ANNIndex",
    "ExactIndex",
    "FlatIndex",
    "HNSWIndex",
    "IVFIndex",
    "build_index",
    "choose_backend",
    "load_index",
    "new_index",
    "similar_items",
]
