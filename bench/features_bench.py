"""Benchmark: materialize every feature view of the 5M-event demo, then one ranker-sized training frame.

Run: ``.venv/bin/python bench/features_bench.py [--events 5000000] [--threads 2]``. Prints wall
time per step and the peak RSS of the process (``resource.getrusage``; includes generating
the demo data). Goal: materialization within 3 minutes and 8 GiB on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--threads", type=int, default=2, help="POLARS_MAX_THREADS (set before polars loads)")
    parser.add_argument("--rank-users", type=int, default=2000, help="training frame: users × candidates")
    parser.add_argument("--rank-candidates", type=int, default=500)
    args = parser.parse_args()
    os.environ["POLARS_MAX_THREADS"] = str(args.threads)

    import numpy as np
    import polars as pl

    from feature_store.offline import materialize, training_frame
    from recsys.config import FeaturesConfig
    from recsys.data.demo import DemoSpec, generate_demo

    def peak_gib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux

    started = time.perf_counter()
    items, interactions = generate_demo(DemoSpec(users=args.users, items=args.items, events=args.events))
    print(f"generate demo: {interactions.height:,} events in {time.perf_counter() - started:.1f}s")

    config = FeaturesConfig()
    as_of = int(interactions["ts"].max()) + 1  # type: ignore[arg-type]
    started = time.perf_counter()
    frames = materialize(interactions, items, as_of, config)
    elapsed = time.perf_counter() - started
    sizes = ", ".join(f"{name} {frame.height:,}" for name, frame in frames.items())
    print(f"materialize all views: {elapsed:.1f}s wall, peak RSS so far {peak_gib():.2f} GiB ({sizes})")
    del frames

    rng = np.random.default_rng(0)
    users = interactions["user_id"].unique().sample(args.rank_users, seed=0)
    catalog = items["item_id"].to_numpy()
    cutoff = int(interactions["ts"].quantile(0.85))  # type: ignore[arg-type]
    rows = pl.DataFrame(
        {
            "user_id": np.repeat(users.to_numpy(), args.rank_candidates),
            "item_id": catalog[rng.integers(0, len(catalog), args.rank_users * args.rank_candidates)],
            "ts": cutoff,
        }
    )
    started = time.perf_counter()
    frame = training_frame(rows, interactions, items, config)
    print(
        f"training_frame: {frame.height:,} rows at one cutoff, {frame.width - 3} features in "
        f"{time.perf_counter() - started:.1f}s; peak RSS {peak_gib():.2f} GiB; threads {args.threads}"
    )


if __name__ == "__main__":
    main()
