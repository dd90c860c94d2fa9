"""The contract every index backend passes: exact answers (ANN: recall >= 0.95), filters, add, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.config import IndexConfig
from recsys.device import faiss_has_gpu
from recsys.index import (
    ANNIndex,
    ExactIndex,
    FlatIndex,
    IVFIndex,
    build_index,
    choose_backend,
    faiss_backends,
    load_index,
    new_index,
)

DIM = 32
N = 600
EXACT_BACKENDS = {"exact", "flat", "flat-gpu"}
needs_gpu = pytest.mark.skipif(not faiss_has_gpu(), reason="needs faiss-gpu and a GPU")


def make(backend: str) -> ANNIndex:
    if backend == "flat-gpu":
        return FlatIndex(DIM, use_gpu=True)
    if backend == "ivf-gpu":
        return IVFIndex(DIM, nlist=8, nprobe=8, use_gpu=True)
    if backend == "ivf":
        return IVFIndex(DIM, nlist=8, nprobe=4)  # half the lists probed: a real approximation
    return new_index(backend, DIM, IndexConfig(use_gpu="never"))


BACKENDS = [
    "exact",
    "flat",
    "hnsw",
    "ivf",
    pytest.param("flat-gpu", marks=[pytest.mark.gpu, needs_gpu]),
    pytest.param("ivf-gpu", marks=[pytest.mark.gpu, needs_gpu]),
]


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """Clustered unit vectors (like item embeddings: topics), seeded."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(12, DIM))
    points = centers[rng.integers(0, 12, N)] + 0.6 * rng.normal(size=(N, DIM))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def queries(vectors: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    noisy = vectors[:40] + 0.3 * rng.normal(size=(40, DIM))
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def brute_force(
    vectors: np.ndarray, queries: np.ndarray, k: int, banned: list[set[int]] | None = None
) -> np.ndarray:
    scores = queries @ vectors.T
    out = []
    for row, s in enumerate(scores):
        order = [int(i) for i in np.argsort(-s, kind="stable") if banned is None or int(i) not in banned[row]]
        out.append(order[:k])
    return np.asarray(out)


def check(backend: str, got: np.ndarray, expected: np.ndarray) -> None:
    if backend in EXACT_BACKENDS:
        np.testing.assert_array_equal(got, expected)
    else:
        recall = np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, expected, strict=True)])
        assert recall >= 0.95, f"{backend}: recall {recall:.3f} against exact search"


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_matches_brute_force(backend: str, vectors: np.ndarray, queries: np.ndarray) -> None:
    index = make(backend)
    index.build(vectors)
    scores, indices = index.search(queries, 20)
    assert scores.dtype == np.float32 and indices.dtype == np.int64 and indices.shape == (40, 20)
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "results must be best first"
    check(backend, indices, brute_force(vectors, queries, 20))
    np.testing.assert_allclose(
        scores, np.take_along_axis(queries @ vectors.T, indices, axis=1), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_exclude_removes_items_and_keeps_k_results(
    backend: str, vectors: np.ndarray, queries: np.ndarray
) -> None:
    index = make(backend)
    index.build(vectors)
    # Exclude each query's own 15 nearest items (plus a growing tail): the next best must take their place.
    nearest = brute_force(vectors, queries, 15)
    exclude = [np.concatenate([near, np.arange(row)]) for row, near in enumerate(nearest)]
    _, indices = index.search(queries, 10, exclude=exclude)
    assert (indices >= 0).all(), "k results where enough items remain"
    for row, excluded in enumerate(exclude):
        assert not set(indices[row]) & set(excluded.tolist())
    check(backend, indices, brute_force(vectors, queries, 10, [set(e.tolist()) for e in exclude]))


@pytest.mark.parametrize("small_allow_path", [True, False], ids=["exact-allow", "selector-allow"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_allow_and_exclude(
    backend: str,
    small_allow_path: bool,
    vectors: np.ndarray,
    queries: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not small_allow_path:
        if backend.startswith("exact"):
            pytest.skip("numpy search has a single path")
        monkeypatch.setattr(faiss_backends, "SMALL_ALLOW", 0)
    index = make(backend)
    index.build(vectors)
    allow = np.arange(0, N, 3)
    exclude = [np.arange(0, 30, 3)] * len(queries)
    _, indices = index.search(queries, 10, exclude=exclude, allow=allow)
    assert (indices >= 0).all()
    assert np.isin(indices, allow).all()
    assert not np.isin(indices, exclude[0]).any()
    banned = set(range(N)) - set(allow.tolist()) | set(exclude[0].tolist())
    check(backend, indices, brute_force(vectors, queries, 10, [banned] * len(queries)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_beyond_what_remains_is_padded(backend: str, vectors: np.ndarray, queries: np.ndarray) -> None:
    index = make(backend)
    index.build(vectors)
    scores, indices = index.search(queries[:3], 8, allow=np.asarray([5, 6, 7]), exclude=[np.asarray([6])] * 3)
    assert sorted(indices[0][:2].tolist()) == [5, 7]
    assert (indices[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_allow_list_returns_only_padding(
    backend: str, vectors: np.ndarray, queries: np.ndarray
) -> None:
    # e.g. a filter no item matches (found by schemathesis through the q= text search)
    index = make(backend)
    index.build(vectors)
    scores, indices = index.search(queries[:3], 5, allow=np.zeros(0, dtype=np.int64))
    assert indices.shape == (3, 5) and (indices == -1).all() and np.isneginf(scores).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_appends_with_next_indices(backend: str, vectors: np.ndarray, queries: np.ndarray) -> None:
    index = make(backend)
    index.build(vectors[:400])
    index.add(vectors[400:])
    assert index.ntotal == N
    _, indices = index.search(queries, 20)
    check(backend, indices, brute_force(vectors, queries, 20))
    _, own = index.search(vectors[450:455], 1)
    assert own[:, 0].tolist() == list(range(450, 455))


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_gives_identical_results(
    backend: str, vectors: np.ndarray, queries: np.ndarray, tmp_path: Path
) -> None:
    index = make(backend)
    index.build(vectors)
    index.save(tmp_path / "idx")
    loaded = load_index(tmp_path / "idx")
    assert type(loaded) is type(index) and loaded.ntotal == N
    exclude = [np.arange(5)] * len(queries)
    for before, after in zip(
        index.search(queries, 15, exclude=exclude), loaded.search(queries, 15, exclude=exclude), strict=True
    ):
        np.testing.assert_array_equal(before, after)


def test_auto_backend_follows_catalog_size() -> None:
    config = IndexConfig(hnsw_min_items=100, ivf_min_items=1000)
    assert [choose_backend(n, config) for n in (99, 100, 999, 1000)] == ["flat", "hnsw", "hnsw", "ivf"]
    assert choose_backend(10, IndexConfig(backend="exact")) == "exact"
    # Defaults: HNSW at a million items, where it beat IVF's recall at every speed (bench/ann_bench.py).
    sizes = (49_999, 1_000_000, 2_000_000)
    assert [choose_backend(n, IndexConfig()) for n in sizes] == ["flat", "hnsw", "ivf"]


def test_build_index_and_bad_inputs(vectors: np.ndarray, tmp_path: Path) -> None:
    index = build_index(vectors, IndexConfig(use_gpu="never"))
    assert isinstance(index, FlatIndex) and index.ntotal == N
    with pytest.raises(ValueError, match="dimension 5"):
        index.search(np.zeros((1, 5), np.float32), 3)
    with pytest.raises(FileNotFoundError, match=r"index\.json"):
        load_index(tmp_path)
    exact = ExactIndex(DIM)
    exact.save(tmp_path / "e")
    with pytest.raises(ValueError, match="'exact' index, not 'flat'"):
        FlatIndex.load(tmp_path / "e")
