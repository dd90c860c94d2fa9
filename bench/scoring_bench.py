"""Benchmark: ranking CPU time per user (the online path) and batch users/s, on a finished run.

Run (a promoted run, e.g. of the dev dataset made with ``RECSYS_ENCODER__TIME_BUDGET_S=60 recsys run
--data /work/shared/datasets/movielens_small_tmdb --runs /tmp/ml_runs``)::

    OMP_NUM_THREADS=1 POLARS_MAX_THREADS=1 .venv/bin/python bench/scoring_bench.py --runs /tmp/ml_runs

Online: the run is pushed to its online store (if it is not there yet) and each sampled user is ranked
as a request ranks them (``Recommender.score_user`` with the online store's features, then the top
``--online-k``); CPU time (``time.process_time``) per user, and the part of it spent in the ranker's
predictor. Batch: every user of the run ranked as ``recsys recommend --all`` ranks them
(point-in-time features from the event log, chunks of ``recommend.chunk_users``), top ``--batch-k``;
users per second of wall time, in one process. Prints the figures and writes them as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--users", type=int, default=200, help="online: users sampled (seeded)")
    parser.add_argument("--online-k", type=int, default=10)
    parser.add_argument("--batch-k", type=int, default=100)
    parser.add_argument("--batch-users", type=int, default=0, help="batch: at most this many users (0: all)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import numpy as np
    import polars as pl

    from feature_store.online import open_online_store
    from recsys.artifacts import RunStore
    from recsys.assemble import load_recommender
    from recsys.catalog import Histories
    from recsys.moments import UserMoments
    from recsys.ranking.behaviour import OnlineBehaviour
    from serving.state import ensure_published

    run_dir = RunStore(args.runs).current_dir()
    recommender = load_recommender(run_dir)
    offline = recommender.behaviour
    events = pl.read_parquet(run_dir / "data" / "interactions.parquet", columns=["user_id", "item_id", "ts"])
    now = int(events["ts"].max()) + 1  # type: ignore[arg-type]
    users = events["user_id"].unique().sort()
    histories = Histories.from_interactions(events, recommender.catalog, users=users.to_list())
    results: dict[str, Any] = {"run": run_dir.name, "users": len(histories)}
    ranker = recommender.ranker
    assert ranker is not None, "the run has no ranker"

    # -- online: one user per call, features from the online store --------------------------------
    ensure_published(run_dir, recommender.config)
    store = open_online_store(recommender.config.features, args.runs)
    recommender.behaviour = OnlineBehaviour(store, recommender.items, recommender.config.features)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(histories), min(args.users, len(histories)), replace=False)
    predict_cpu = [0.0]
    predict_matrix = ranker.predict_matrix

    def timed_predict(matrix: np.ndarray) -> np.ndarray:
        started = time.process_time()
        try:
            return predict_matrix(matrix)
        finally:
            predict_cpu[0] += time.process_time() - started

    ranker.predict_matrix = timed_predict  # type: ignore[method-assign]
    one_user = [histories.slice(int(row), int(row) + 1) for row in rows]
    for history in one_user[:10]:  # warm-up: first reads, lazy imports
        recommender.score_user(history, now).top(args.online_k)
    predict_cpu[0] = 0.0
    cpu, candidates = [], []
    for history in one_user:
        started = time.process_time()
        scored = recommender.score_user(history, now)
        scored.top(args.online_k)
        cpu.append(time.process_time() - started)
        candidates.append(len(scored.item_idx))
    ranker.predict_matrix = predict_matrix  # type: ignore[method-assign]
    store.close()
    ms = np.asarray(cpu) * 1000
    results["online"] = {
        "users": len(cpu),
        "k": args.online_k,
        "candidates_mean": float(np.mean(candidates)),
        "cpu_ms_mean": float(ms.mean()),
        "cpu_ms_p50": float(np.percentile(ms, 50)),
        "cpu_ms_p99": float(np.percentile(ms, 99)),
        "predict_cpu_ms_mean": predict_cpu[0] * 1000 / len(cpu),
    }
    print(
        f"online  {len(cpu)} users, {np.mean(candidates):.0f} candidates each: CPU per user "
        f"mean {ms.mean():.2f} ms, p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms "
        f"(predictor {results['online']['predict_cpu_ms_mean']:.2f} ms)"
    )

    # -- batch: chunks of users, point-in-time features from the event log ------------------------
    recommender.behaviour = offline
    batch = histories if not args.batch_users else histories.slice(0, args.batch_users)
    chunk_users = recommender.config.recommend.chunk_users
    started, started_cpu, rows_out = time.perf_counter(), time.process_time(), 0
    for chunk in batch.chunks(chunk_users):
        rows_out += recommender.recommend(chunk, UserMoments.at(chunk.user_ids, now), args.batch_k).height
    wall, batch_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    results["batch"] = {
        "users": len(batch),
        "k": args.batch_k,
        "chunk_users": chunk_users,
        "rows": rows_out,
        "wall_s": wall,
        "cpu_s": batch_cpu,
        "users_per_s": len(batch) / wall,
    }
    print(
        f"batch   {len(batch)} users, k={args.batch_k}, chunks of {chunk_users}: {wall:.2f} s wall, "
        f"{batch_cpu:.2f} s CPU, {len(batch) / wall:,.0f} users/s"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
