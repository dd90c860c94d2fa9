"""Approximate search at catalog scale: recall@k and queries per second of IVF and HNSW against exact search.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ann_bench.py [--n 1000000] [--dim 384] [--queries 1000]
        [--ivf-nlist 4000] [--ivf-train ROWS] [--ivf-nprobe 8,16,32,64]
        [--hnsw-m 32] [--hnsw-ef-construction 200] [--hnsw-ef 64,128,256] [--backends ivf,hnsw] [--out ann.md]

Vectors are generated, not encoded (a million item texts would take hours to embed on a CPU), but
shaped like sentence embeddings: a mixture of ``--clusters`` topics in a ``--latent``-dimensional
space, mapped into ``--dim`` dimensions by a random orthonormal projection, plus isotropic
noise of norm ``--noise``, L2-normalized. Isotropic Gaussian vectors would be the wrong test: in
384 dimensions all their neighbours are almost equally far, which no text encoder produces.
Queries are fresh draws from the same mixture (not catalog rows).

Exact search is faiss ``IndexFlatIP`` (what ``index.backend: flat`` builds); its top-k is the ground
truth. Each approximate index is built once and searched at each setting; every search is one batch of
all queries, as the batch job and the evaluation search. The row marked ``recsys auto`` is what
``recsys.index`` builds at this size with the default ``IndexConfig``. Memory: the vectors, one index at
a time (about 3 × n × dim × 4 bytes at the peak: 4.6 GB at 1M × 384).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from recsys.config import IndexConfig
from recsys.index import choose_backend
from recsys.index.faiss_backends import default_nlist

CHUNK = 100_000
"""Rows generated at a time (keeps the temporaries small beside the float32 matrix)."""


@dataclass
class Row:
    backend: str
    setting: str
    build_s: float
    qps: float
    recall: float
    recsys_auto: bool = False


def clustered_vectors(
    n: int, dim: int, clusters: int, latent: int, noise: float, seed: int, basis_seed: int = 0
) -> np.ndarray:
    """``n`` unit vectors from a topic mixture on a ``latent``-dimensional subspace (module docstring).

    The topics and the projection depend on ``basis_seed`` only, so catalog and queries (other
    ``seed``) come from the same mixture.
    """
    basis_rng = np.random.default_rng(basis_seed)
    projection, _ = np.linalg.qr(basis_rng.standard_normal((dim, latent)))
    centers = basis_rng.standard_normal((clusters, latent)).astype(np.float32)
    spread = basis_rng.uniform(0.3, 0.8, clusters).astype(np.float32)  # tight and loose topics
    weights = basis_rng.zipf(1.5, clusters).astype(np.float64)  # a few big topics, many small ones
    weights /= weights.sum()
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    projection32 = projection.T.astype(np.float32)
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        topic = rng.choice(clusters, size=size, p=weights)
        points = centers[topic] + spread[topic, None] * rng.standard_normal((size, latent), dtype=np.float32)
        block = points @ projection32
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        block += noise / np.sqrt(dim) * rng.standard_normal((size, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + size] = block
    return out


def timed_search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """(indices [q, k], queries per CPU second) of one batch search.

    CPU time of this process, not wall time: on a shared machine the wall clock measures the
    neighbours' load; with one thread (OMP_NUM_THREADS=1) the two agree on an idle machine.
    """
    started = time.process_time()
    _, indices = index.search(queries, k)
    return indices, len(queries) / (time.process_time() - started)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact top-k that the approximate top-k holds."""
    k = truth.shape[1]
    return float(np.mean([len(np.intersect1d(f, t)) / k for f, t in zip(found, truth, strict=True)]))


def bench_ivf(
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    nlist: int,
    nprobes: list[int],
    auto: dict[str, int],
    train_rows: int | None,
) -> list[Row]:
    """IVF-Flat; k-means on ``train_rows`` sampled rows (None: faiss's own, up to 256 per list)."""
    dim, k = base.shape[1], truth.shape[1]
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = base
    if train_rows is not None and train_rows < len(base):
        sample = base[np.sort(np.random.default_rng(0).choice(len(base), train_rows, replace=False))]
    started = time.process_time()
    index.train(sample)
    index.add(base)
    build_s = time.process_time() - started
    trained = f" (k-means on {len(sample):,})" if sample is not base else ""
    rows = []
    for nprobe in nprobes:
        index.nprobe = nprobe
        found, qps = timed_search(index, queries, k)
        is_auto = auto.get("nlist") == nlist and auto.get("nprobe") == nprobe
        setting = f"nlist={nlist} nprobe={nprobe}{trained}"
        rows.append(Row("ivf", setting, build_s, qps, recall_at_k(found, truth), is_auto))
    return rows


def bench_hnsw(
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    m: int,
    ef_construction: int,
    efs: list[int],
    auto: dict[str, int],
) -> list[Row]:
    dim, k = base.shape[1], truth.shape[1]
    index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    started = time.process_time()
    index.add(base)
    build_s = time.process_time() - started
    rows = []
    for ef in efs:
        index.hnsw.efSearch = max(ef, k)  # faiss HNSW never returns more than efSearch neighbours
        found, qps = timed_search(index, queries, k)
        is_auto = (
            auto.get("m") == m and auto.get("ef_construction") == ef_construction and auto.get("ef") == ef
        )
        setting = f"M={m} efConstruction={ef_construction} efSearch={max(ef, k)}"
        rows.append(Row("hnsw", setting, build_s, qps, recall_at_k(found, truth), is_auto))
    return rows


def recsys_choice(n: int) -> dict[str, Any]:
    """What ``recsys.index`` builds at ``n`` items with the default config."""
    config = IndexConfig()
    backend = choose_backend(n, config)
    if backend == "ivf":
        return {"backend": "ivf", "nlist": config.ivf_nlist or default_nlist(n), "nprobe": config.ivf_nprobe}
    if backend == "hnsw":
        return {
            "backend": "hnsw",
            "m": config.hnsw_m,
            "ef_construction": config.hnsw_ef_construction,
            "ef": config.hnsw_ef_search,
        }
    return {"backend": backend}


def markdown(rows: list[Row], exact_qps: float, args: argparse.Namespace, choice: dict[str, Any]) -> str:
    lines = [
        f"ANN search, {args.n:,} × {args.dim} generated vectors ({args.clusters} topics, latent dim "
        f"{args.latent}), {args.queries:,} queries, recall@{args.k} against exact search, "
        f"{faiss.omp_get_max_threads()} thread(s), faiss {faiss.__version__}.",
        f"recsys auto at this size: {choice}.",
        "",
        f"| backend | setting | build CPU s | QPS (CPU) | × exact | recall@{args.k} | ≥ 0.95 and ≥ 10× |",
        "|---|---|---:|---:|---:|---:|---|",
        f"| exact (flat) | IndexFlatIP | – | {exact_qps:,.0f} | 1.0 | 1.000 | |",
    ]
    for row in rows:
        speedup = row.qps / exact_qps
        ok = "yes" if row.recall >= 0.95 and speedup >= 10 else "no"
        name = f"{row.backend} (recsys auto)" if row.recsys_auto else row.backend
        lines.append(
            f"| {name} | {row.setting} | {row.build_s:.0f} | {row.qps:,.0f} | {speedup:.1f} | "
            f"{row.recall:.3f} | {ok} |"
        )
    return "\n".join(lines) + "\n"


def ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--noise", type=float, default=0.1, help="norm of the isotropic noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default="ivf,hnsw")
    parser.add_argument("--ivf-nlist", type=ints, default=None, help="default: recsys's default_nlist(n)")
    parser.add_argument("--ivf-train", type=int, default=None, help="k-means sample (default: faiss's)")
    parser.add_argument("--ivf-nprobe", type=ints, default=[8, 16, 32, 64, 128])
    parser.add_argument("--hnsw-m", type=int, default=IndexConfig().hnsw_m)
    parser.add_argument("--hnsw-ef-construction", type=int, default=IndexConfig().hnsw_ef_construction)
    parser.add_argument("--hnsw-ef", type=ints, default=[128, 256, 512])
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()

    started = time.perf_counter()
    base = clustered_vectors(args.n, args.dim, args.clusters, args.latent, args.noise, seed=args.seed + 1)
    queries = clustered_vectors(
        args.queries, args.dim, args.clusters, args.latent, args.noise, seed=args.seed + 2
    )
    print(f"generated {args.n:,} vectors in {time.perf_counter() - started:.0f}s", flush=True)

    flat = faiss.IndexFlatIP(args.dim)
    flat.add(base)
    truth, exact_qps = timed_search(flat, queries, args.k)
    del flat
    print(f"exact: {exact_qps:,.0f} QPS", flush=True)

    choice = recsys_choice(args.n)
    rows: list[Row] = []
    backends = set(args.backends.split(","))
    if "ivf" in backends:
        for nlist in args.ivf_nlist or [default_nlist(args.n)]:
            auto = choice if choice["backend"] == "ivf" else {}
            rows += bench_ivf(base, queries, truth, nlist, args.ivf_nprobe, auto, args.ivf_train)
            print(markdown(rows, exact_qps, args, choice), flush=True)
    if "hnsw" in backends:
        rows += bench_hnsw(
            base,
            queries,
            truth,
            args.hnsw_m,
            args.hnsw_ef_construction,
            args.hnsw_ef,
            choice if choice["backend"] == "hnsw" else {},
        )
    table = markdown(rows, exact_qps, args, choice)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
