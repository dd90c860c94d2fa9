"""Batch recommendations for a list of users from a run (the CLI's ``recommend``)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys.artifacts import RunStore
from recsys.catalog import Histories
from recsys.config import Config
from recsys.data.readers import read_table
from recsys.recommend import Recommender


def load_users(path: Path) -> list[str]:
    """User ids from a Parquet/CSV/JSONL file with a ``user_id`` column."""
    frame = read_table(path)
    if "user_id" not in frame.columns:
        raise ValueError(f"{path}: no user_id column (found {', '.join(frame.columns)})")
    return frame["user_id"].cast(pl.String).drop_nulls().unique(maintain_order=True).to_list()


def recommend_users(
    config: Config, user_ids: list[str], k: int, run_id: str | None = None, runs: Path | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(recommendations, items) for ``user_ids`` as of just after the run's latest event."""
    store = RunStore(runs or Path(config.pipeline.runs_dir))
    run_dir = store.run_dir(run_id) if run_id else store.current_dir()
    recommender = Recommender.load(run_dir)
    events = pl.read_parquet(run_dir / "data" / "interactions.parquet")
    now = int(events["ts"].max()) + 1  # type: ignore[arg-type]
    histories = Histories.from_interactions(events, recommender.catalog, users=user_ids)
    recs = recommender.recommend(histories, dict.fromkeys(user_ids, now), k)
    return recs, recommender.items
