"""Load a promoted run into the online store, so serving sees the same state the run was built on.

The nightly DAG calls :func:`publish_to_online` after the quality gate promoted a run; a
rejected run is never pushed, so the store keeps the state of the run that is serving.
"""

from __future__ import annotations

import json
from pathlib import Path

from recsys.artifacts import RunStore
from recsys.config import Config


def publish_to_online(run_dir: Path, config: Config) -> dict[str, int]:
    """Replace the online store's state with ``run_dir``'s materialized features and batch
    recommendations, in one atomic push.

    The store is the configured backend (``features.online``); a relative SQLite path lives
    under the runs folder. The run id is recorded in the store's meta (``run_id``) so serving
    can tell which run the state belongs to. Returns the number of records written.
    """
    import polars as pl

    from feature_store.offline import materialized_as_of, read_materialized
    from feature_store.online import open_online_store, push_materialized

    features = run_dir / "features"
    as_of = materialized_as_of(features)
    if as_of is None:  # the moment the features stage materializes at: just after the run's last event
        as_of = int(json.loads((run_dir / "manifest.json").read_text())["data"]["time_range"][1]) + 1
    recommendations = pl.read_parquet(run_dir / "recommendations" / "recommendations.parquet")
    with open_online_store(config.features, run_dir.parent) as store:
        records = push_materialized(
            store, read_materialized(features), as_of, recommendations, meta={"run_id": run_dir.name}
        )
    return {"records": records, "recommended_users": recommendations["user_id"].n_unique(), "as_of": as_of}


def expire_online(store: RunStore, config: Config) -> int:
    """Drop the online store's state, logged events and event ids older than their ttl, counted back
    from the promoted run's latest event (event time, not the wall clock); entries dropped."""
    from feature_store.online import open_online_store

    current = store.current()
    if current is None:
        return 0
    now = int(store.manifest(current)["data"]["time_range"][1])
    with open_online_store(config.features, store.root) as online:
        return online.expire(now)
