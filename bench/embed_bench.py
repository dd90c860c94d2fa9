"""Catalog embedding on CPUs: torch fp32 / bf16 against the ONNX export in fp32 and int8, one run.

Same encoder, same texts (the dev dataset's catalog through the configured template), same
max_seq_length, same length-sorted batching (``encode_texts``), same thread count, one process.
Per backend:

* items/s: the best of ``--rounds`` timed encodes of the first ``--speed-texts`` catalog texts,
  the backends interleaved round by round (the machine is shared; best-of damps the noise);
* cosine to torch fp32 on the whole catalog (mean and min; goal mean >= 0.99);
* the semantic source's recall@100 on a per-user temporal split (each user with >= 5 events has
  the last 20% of their events as test; user vector = the configured kind from the train
  history; seen items excluded; exact search): goal int8 within 1% (relative) of fp32.

torch bf16 is measured only where the CPU has native bf16. ``--baseline`` adds the older
comparison of ``encode_items`` with plain ``SentenceTransformer.encode`` on a demo catalog and the
ANN indexes' recall against exact search. ``--gpu`` measures only fp16 throughput on a CUDA GPU
(``--items`` demo items, length-sorted batches of up to ``--token-budget`` padded tokens), as
``bench/gpu_check.sh`` runs it.

    .venv/bin/python bench/embed_bench.py [--data DIR] [--encoder MODEL] [--threads 2] [--out F.json]
    .venv/bin/python bench/embed_bench.py --gpu --items 100000 [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

if TYPE_CHECKING:
    from recsys.catalog import Histories

from encoder_bench import DEFAULT_DATA, K, recall_and_ndcg


def backend_table(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from recsys.catalog import Histories, ItemCatalog
    from recsys.config import load_config
    from recsys.data import load_dataset, per_user_split
    from recsys.device import cpu_has_fast_bf16
    from recsys.embeddings import encode_texts, user_vectors_from_context, user_vectors_from_history
    from recsys.encoder import item_texts, load_encoder
    from recsys.encoder.onnx_export import OnnxEncoder, export_onnx
    from recsys.index import ExactIndex
    from recsys.retrieval.semantic import SemanticSource

    torch.set_num_threads(args.threads)
    config = load_config()
    base = config.embeddings.model_copy(update={"device": "cpu", "onnx_threads": args.threads})
    dataset = load_dataset(args.data, max_bad_share=config.data.max_bad_share, as_of=config.data.as_of)
    train, test = per_user_split(dataset.interactions, config.split.test_share, config.split.min_user_events)
    catalog = ItemCatalog.from_items(dataset.items)
    truth = {
        u: set(i)
        for u, i in catalog.with_index(test).group_by("user_id").agg(pl.col("item_idx").unique()).iter_rows()
    }
    users = sorted(truth)
    histories = Histories.from_interactions(train, catalog, users)
    texts = item_texts(dataset.items, base.template)

    model = load_encoder(args.encoder, "cpu")
    with tempfile.TemporaryDirectory(prefix="embed-bench-") as scratch:
        t0 = time.perf_counter()
        onnx_dir = export_onnx(model, Path(scratch) / "onnx", base.max_seq_length)
        export_s = time.perf_counter() - t0
        sizes = {p.name: p.stat().st_size / 2**20 for p in onnx_dir.glob("*.onnx")}
        backends: dict[str, tuple[Any, Any]] = {
            "torch fp32": (model, base.model_copy(update={"backend": "torch", "cpu_bf16": False}))
        }
        if cpu_has_fast_bf16():
            backends["torch bf16"] = (model, base.model_copy(update={"backend": "torch", "cpu_bf16": True}))
        for variant in ("onnx", "onnx-int8"):
            encoder = OnnxEncoder(onnx_dir, variant, base.max_seq_length, args.threads)
            backends[f"ONNX {'fp32' if variant == 'onnx' else 'int8'}"] = (
                encoder,
                base.model_copy(update={"backend": variant}),
            )
        print(
            f"data: {args.data} — {len(texts):,} items, {len(users)} test users; encoder {args.encoder}; "
            f"template {base.template!r}, max_seq_length {base.max_seq_length}; {args.threads} threads "
            f"(torch and ONNX Runtime), CPU native bf16: {cpu_has_fast_bf16()}; export + int8 quantization "
            f"{export_s:.1f} s; files {', '.join(f'{n} {s:.1f} MiB' for n, s in sorted(sizes.items()))}"
        )

        speed_texts = texts[: args.speed_texts]
        best = {name: float("inf") for name in backends}
        for encoder, cfg in backends.values():  # warm-up, not timed
            encode_texts(encoder, speed_texts[:64], cfg, show_progress=False)
        for _ in range(args.rounds):
            for name, (encoder, cfg) in backends.items():
                t0 = time.perf_counter()
                encode_texts(encoder, speed_texts, cfg, show_progress=False)
                best[name] = min(best[name], time.perf_counter() - t0)

        rows: list[dict[str, Any]] = []
        reference: np.ndarray | None = None
        for name, (encoder, cfg) in backends.items():
            t0 = time.perf_counter()
            vectors = encode_texts(encoder, texts, cfg, show_progress=False)
            catalog_s = time.perf_counter() - t0
            if reference is None:
                reference = vectors
            cosine = (vectors * reference).sum(axis=1)
            index = ExactIndex(vectors.shape[1])
            index.build(vectors)
            user_vectors: Callable[[Histories], np.ndarray] = (
                partial(
                    user_vectors_from_context,
                    encoder,
                    dataset.items,
                    encoder_config=config.encoder,
                    embeddings_config=cfg,
                )
                if config.retrieval.user_vector == "context_text"
                else partial(
                    user_vectors_from_history,
                    vectors,
                    half_life_events=config.retrieval.history_half_life_events,
                )
            )
            candidates = SemanticSource(index, user_vectors).candidates(histories, K)
            recall, _ = recall_and_ndcg(candidates, truth, users)
            rows.append(
                {
                    "backend": name,
                    "items_per_s": len(speed_texts) / best[name],
                    "catalog_s": catalog_s,
                    "cosine_mean": float(cosine.mean()),
                    "cosine_min": float(cosine.min()),
                    "recall_at_100": recall,
                }
            )
    fp32 = rows[0]
    print(
        f"\nitems/s: best of {args.rounds} interleaved rounds over {len(speed_texts):,} texts; cosine to "
        f"torch fp32 and recall@{K} ({config.retrieval.user_vector} user vectors) over the whole catalog\n"
    )
    print(
        "| backend | items/s | × torch fp32 | whole catalog | cosine mean | cosine min | recall@100 "
        "| vs fp32 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        row["speedup"] = row["items_per_s"] / fp32["items_per_s"]
        row["recall_change"] = row["recall_at_100"] / fp32["recall_at_100"] - 1
        print(
            f"| {row['backend']} | {row['items_per_s']:.1f} | {row['speedup']:.2f}× | "
            f"{row['catalog_s']:.0f} s | {row['cosine_mean']:.5f} | {row['cosine_min']:.4f} | "
            f"{row['recall_at_100']:.4f} | {row['recall_change']:+.2%} |"
        )
    return rows


def baseline(args: argparse.Namespace) -> None:
    """``encode_items`` against plain ``encode`` calls on a demo catalog, then ANN recall vs exact."""
    import torch

    from recsys.config import IndexConfig, load_config
    from recsys.data.demo import DemoSpec, generate_demo
    from recsys.embeddings import encode_items
    from recsys.encoder import item_texts, load_encoder
    from recsys.index import ExactIndex, new_index

    torch.set_num_threads(args.threads)
    config = load_config().embeddings.model_copy(update={"backend": "torch", "device": "cpu"})
    items, _ = generate_demo(DemoSpec(users=200, items=args.items, events=5000, seed=7))
    texts = item_texts(items, config.template)
    model = load_encoder(args.encoder, "cpu")
    model.max_seq_length = config.max_seq_length
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
    print(f"\n{len(texts)} demo items, torch on CPU:")
    print(f"plain encode loop        {loop_rate:8.1f} items/s")
    print(f"plain single encode call {single_rate:8.1f} items/s")
    print(
        f"encode_items             {fast_rate:8.1f} items/s  = {fast_rate / loop_rate:.2f}x the loop, "
        f"{fast_rate / single_rate:.2f}x the single call; cosine to plain: min {cosine.min():.5f}, "
        f"mean {cosine.mean():.5f}"
    )
    vectors = embeddings.vectors
    queries = vectors[np.random.default_rng(0).choice(len(vectors), min(300, len(vectors)), replace=False)]
    exact = ExactIndex(embeddings.dim)
    exact.build(vectors)
    _, truth = exact.search(queries, 100)
    print(f"\nANN recall@100 against exact search, {len(queries)} item queries over {len(vectors)} items:")
    for backend in ("hnsw", "ivf"):
        index = new_index(backend, embeddings.dim, IndexConfig())
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


def gpu_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """fp16 catalog encoding on a CUDA GPU: ``encode_texts`` (length-sorted) vs one plain ``encode`` call."""
    import torch

    from recsys.config import load_config
    from recsys.data.demo import DemoSpec, generate_demo
    from recsys.embeddings import encode_texts
    from recsys.encoder import item_texts, load_encoder

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA GPU")
    config = load_config().embeddings.model_copy(
        update={
            "device": "cuda",
            "backend": "torch",
            "token_budget": args.token_budget,
            "batch_size": args.gpu_batch_size,
        }
    )
    items, _ = generate_demo(DemoSpec(users=100, items=args.items, events=2000, seed=7))
    texts = item_texts(items, config.template)
    model = load_encoder(args.encoder, "cuda")
    encode_texts(model, texts[:4096], config, show_progress=False)  # warm-up (kernels, allocator), not timed
    best = float("inf")
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        encode_texts(model, texts, config, show_progress=False)  # returns host arrays: the GPU work is done
        best = min(best, time.perf_counter() - t0)
    model.half()
    model.max_seq_length = config.max_seq_length
    model.encode(texts[:4096], batch_size=256)
    t0 = time.perf_counter()
    model.encode(texts, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    plain_s = time.perf_counter() - t0
    result = {
        "gpu": torch.cuda.get_device_name(0),
        "items": len(texts),
        "distinct_texts": len(set(texts)),
        "max_seq_length": config.max_seq_length,
        "token_budget": config.token_budget,
        "encode_texts_fp16_items_per_s": len(texts) / best,
        "plain_encode_fp16_items_per_s": len(texts) / plain_s,
        "encoder": args.encoder,
    }
    print(
        f"{result['gpu']}: {len(texts):,} demo items, max_seq_length {config.max_seq_length}, token budget "
        f"{config.token_budget:,}: encode_texts fp16 {result['encode_texts_fp16_items_per_s']:,.0f} items/s "
        f"(best of {args.rounds}); one plain encode call in fp16, batch 256: "
        f"{result['plain_encode_fp16_items_per_s']:,.0f} items/s"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2", help="a model name or a fine-tuned folder")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("RECSYS_BENCH_THREADS", "2")))
    parser.add_argument("--speed-texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the table as JSON here")
    parser.add_argument("--baseline", action="store_true", help="also the encode_items vs plain encode part")
    parser.add_argument("--items", type=int, default=3000, help="demo items for --baseline and --gpu")
    parser.add_argument("--gpu", action="store_true", help="only fp16 throughput on a CUDA GPU (demo items)")
    parser.add_argument("--token-budget", type=int, default=131072, help="--gpu: padded tokens per batch")
    parser.add_argument("--gpu-batch-size", type=int, default=1024, help="--gpu: embeddings.batch_size")
    args = parser.parse_args()
    if args.gpu:
        result = gpu_throughput(args)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return
    rows = backend_table(args)
    if args.out:
        args.out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2) + "\n")
    if args.baseline:
        baseline(args)


if __name__ == "__main__":
    main()
