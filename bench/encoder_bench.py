"""Does fine-tuning on the logs beat the pretrained encoder as a candidate source?

Split: per-user temporal — each user with >= 5 events has the last 20% of their events as
test (``per_user_split``); the encoder is fine-tuned only on the train events (its own
evaluator holds out each user's last ``eval_share`` of those). For every test user both encoders
produce top-100 semantic candidates (seen items excluded, exact search) from the same
train history; recall@100 = share of the user's test items retrieved, averaged over users.

    .venv/bin/python bench/encoder_bench.py [--data DIR] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_DATA = Path("/work/shared/datasets/movielens_small_tmdb")
K = 100


def recall_and_ndcg(
    candidates: pl.DataFrame, truth: dict[str, set[int]], users: list[str]
) -> tuple[float, float]:
    by_user = {u: idx for u, idx in candidates.sort("rank").group_by("user_id").agg("item_idx").iter_rows()}
    recalls, ndcgs = [], []
    for user in users:
        relevant, ranked = truth[user], by_user.get(user, [])
        hits = [i for i, item in enumerate(ranked[:K]) if item in relevant]
        recalls.append(len(hits) / len(relevant))
        dcg = sum(1.0 / np.log2(i + 2) for i in hits if i < 10)
        ideal = sum(1.0 / np.log2(i + 2) for i in range(min(10, len(relevant))))
        ndcgs.append(dcg / ideal)
    return float(np.mean(recalls)), float(np.mean(ndcgs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("RECSYS_BENCH_THREADS", "2")))
    args = parser.parse_args()

    import torch

    from recsys.catalog import Histories, ItemCatalog
    from recsys.config import load_config
    from recsys.data import load_dataset, per_user_split
    from recsys.embeddings import encode_items, user_vectors_from_context, user_vectors_from_history
    from recsys.encoder import load_encoder
    from recsys.encoder.train import fine_tune
    from recsys.index import ExactIndex
    from recsys.retrieval.semantic import SemanticSource

    torch.set_num_threads(args.threads)
    config = load_config()
    dataset = load_dataset(args.data, max_bad_share=config.data.max_bad_share, as_of=config.data.as_of)
    train, test = per_user_split(dataset.interactions, config.split.test_share, config.split.min_user_events)
    catalog = ItemCatalog.from_items(dataset.items)
    test_idx = catalog.with_index(test).group_by("user_id").agg(pl.col("item_idx").unique())
    truth = {user: set(items) for user, items in test_idx.iter_rows()}
    users = sorted(truth)
    histories = Histories.from_interactions(train, catalog, users)
    print(f"data: {args.data} — {dataset.stats}")
    print(
        f"split: per-user last {config.split.test_share:.0%} of events as test (users with >= "
        f"{config.split.min_user_events} events): {train.height:,} train / {test.height:,} test events, "
        f"{len(users)} test users; torch threads {args.threads}"
    )

    with tempfile.TemporaryDirectory(prefix="encoder-bench-") as scratch:
        started = time.monotonic()
        result = fine_tune(
            dataset.items, train, config.encoder, config.embeddings.template, Path(scratch) / "encoder"
        )
        wall = time.monotonic() - started
        print(
            f"fine-tuning: {wall:.0f} s wall ({result.steps} steps, {result.n_pairs:,} pairs, "
            f"{result.precision}, stopped by budget: {result.stopped_by_budget}); evaluator recall@100 "
            f"{result.metrics_before['recall@100']:.4f} -> {result.metrics_after['recall@100']:.4f}"
        )
        encoders = {"pretrained": config.encoder.base_model, "fine-tuned": str(result.path)}
        rows = []
        for label, path in encoders.items():
            model = load_encoder(path)
            t0 = time.monotonic()
            embeddings = encode_items(model, dataset.items, config.embeddings, show_progress=False)
            encode_s = time.monotonic() - t0
            index = ExactIndex(embeddings.dim)
            index.build(embeddings.vectors)
            modes = {
                "history_mean": partial(
                    user_vectors_from_history,
                    embeddings.vectors,
                    half_life_events=config.retrieval.history_half_life_events,
                ),
                "context_text": partial(
                    user_vectors_from_context,
                    model,
                    dataset.items,
                    encoder_config=config.encoder,
                    embeddings_config=config.embeddings,
                ),
            }
            for mode, vectors in modes.items():
                candidates = SemanticSource(index, vectors).candidates(histories, K)
                recall, ndcg = recall_and_ndcg(candidates, truth, users)
                rows.append((label, mode, recall, ndcg))
                print(
                    f"{label:>10} {mode:<12} recall@100 {recall:.4f}  ndcg@10 {ndcg:.4f}  "
                    f"(items encoded in {encode_s:.0f} s)"
                )
    print("\nratio fine-tuned / pretrained recall@100:")
    for mode in ("history_mean", "context_text"):
        before = next(r[2] for r in rows if r[0] == "pretrained" and r[1] == mode)
        after = next(r[2] for r in rows if r[0] == "fine-tuned" and r[1] == mode)
        print(f"  {mode:<12} {after:.4f} / {before:.4f} = {after / max(before, 1e-9):.2f}x")


if __name__ == "__main__":
    main()
