"""Catalog-embedding throughput: ``encode_items`` against plain ``SentenceTransformer.encode``, same run.

Same model, same texts (a seeded demo catalog), same max_seq_length, same process, one
after the other. Baselines: (a) a plain loop of ``encode`` over batch-size chunks, (b) one
``encode`` call over all texts (it sorts by length itself: the stronger baseline). Then the
ANN indexes' recall@100 against exact search on those embeddings.

    .venv/bin/python bench/embed_bench.py [--items 3000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("RECSYS_BENCH_THREADS", "2")))
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    import torch

    from recsys.config import IndexConfig, load_config
    from recsys.data.demo import DemoSpec, generate_demo
    from recsys.device import cpu_has_fast_bf16, resolve_device
    from recsys.embeddings import encode_items
    from recsys.encoder import item_texts, load_encoder
    from recsys.index import ExactIndex, new_index

    torch.set_num_threads(args.threads)
    config = load_config().embeddings
    items, _ = generate_demo(DemoSpec(users=200, items=args.items, events=5000, seed=7))
    texts = item_texts(items, config.template)
    device = resolve_device(config.device)
    model = load_encoder("all-MiniLM-L6-v2", device)
    model.max_seq_length = config.max_seq_length
    print(
        f"device: {device} (CPU native bf16: {cpu_has_fast_bf16()}), torch threads {args.threads}, "
        f"{len(texts)} demo items, template {config.template!r}, max_seq_length {config.max_seq_length}"
    )
    model.encode(texts[:64], batch_size=config.batch_size)  # warm-up, not timed

    t0 = time.perf_counter()
    plain = np.concatenate(
        [
            model.encode(
                texts[i : i + config.batch_size], batch_size=config.batch_size, normalize_embeddings=True
            )
            for i in range(0, len(texts), config.batch_size)
        ]
    )
    loop_rate = len(texts) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    embeddings = encode_items(model, items, config, show_progress=False)
    fast_rate = len(texts) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    model.encode(texts, batch_size=config.batch_size, normalize_embeddings=True)
    single_rate = len(texts) / (time.perf_counter() - t0)
    cosine = (embeddings.vectors * plain).sum(axis=1)
    print(f"plain encode loop        {loop_rate:8.1f} items/s")
    print(f"plain single encode call {single_rate:8.1f} items/s")
    print(
        f"encode_items             {fast_rate:8.1f} items/s  = {fast_rate / loop_rate:.2f}x the loop, "
        f"{fast_rate / single_rate:.2f}x the single call; cosine to plain: min {cosine.min():.5f}, "
        f"mean {cosine.mean():.5f}"
    )

    vectors = embeddings.vectors
    queries = vectors[
        np.random.default_rng(0).choice(len(vectors), min(args.queries, len(vectors)), replace=False)
    ]
    exact = ExactIndex(embeddings.dim)
    exact.build(vectors)
    _, truth = exact.search(queries, 100)
    defaults = IndexConfig()
    print(f"\nANN recall@100 against exact search, {len(queries)} item queries over {len(vectors)} items:")
    for backend in ("hnsw", "ivf"):
        index = new_index(backend, embeddings.dim, defaults)
        t0 = time.perf_counter()
        index.build(vectors)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, found = index.search(queries, 100)
        search_ms = 1000 * (time.perf_counter() - t0) / len(queries)
        recall = np.mean([len(set(f) & set(t)) / 100 for f, t in zip(found, truth, strict=True)])
        print(
            f"  {backend:<5} recall@100 {recall:.4f}  build {build_s:.2f} s  "
            f"search {search_ms:.2f} ms/query  {index.params()}"
        )


if __name__ == "__main__":
    main()
