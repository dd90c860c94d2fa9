"""Events posted to the online store, as input of the next nightly run.

``POST /v1/events`` appends every event to the online store's log before answering. Each run
adds the log's events to its input (and keeps them in ``data/live_events.parquet``), and the next
run carries that file forward, so events the log has since expired still train later runs.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys.artifacts import RunStore
from recsys.config import FeaturesConfig
from recsys.console import console

LIVE_EVENTS_FILE = "live_events.parquet"
KEY = ["user_id", "item_id", "ts"]


def logged_events(config: FeaturesConfig, runs_dir: Path) -> pl.DataFrame | None:
    """The online store's event log, or None where there is no store (nothing was ever served)."""
    from feature_store.online import logged_interactions, open_online_store

    online = config.online
    sqlite = Path(online.sqlite_path)
    if online.backend == "sqlite" and not (sqlite if sqlite.is_absolute() else runs_dir / sqlite).exists():
        return None
    with open_online_store(config, runs_dir) as store:
        return logged_interactions(store)


def with_live_events(
    interactions: pl.DataFrame,
    items: pl.DataFrame,
    logged: pl.DataFrame | None,
    carried: pl.DataFrame | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(``interactions`` plus the live events they lack, the live events kept).

    Live events on items the catalog no longer has are dropped; an event already in the input (same
    user, item and second) is not added twice. Columns follow the input's schema.
    """
    parts = [frame for frame in (carried, logged) if frame is not None and not frame.is_empty()]
    if not parts:
        return interactions, interactions.clear()
    combined = pl.concat(parts, how="diagonal_relaxed")
    live = combined.select(
        pl.col(name).cast(dtype) if name in combined.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in interactions.schema.items()
    )
    live = (
        live.unique(KEY, keep="first", maintain_order=True)
        .join(items.select("item_id"), on="item_id", how="semi")
        .join(interactions.select(KEY), on=KEY, how="anti")
    )
    if live.height:
        console.print(f"  adding {live.height} live events posted to the online store")
    return pl.concat([interactions, live]), live


def add_live_events(
    interactions: pl.DataFrame, items: pl.DataFrame, config: FeaturesConfig, runs: RunStore
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`with_live_events` with the online store's log and the live events the promoted run kept."""
    carried = None
    if (current := runs.current()) is not None:
        previous = runs.run_dir(current) / "data" / LIVE_EVENTS_FILE
        carried = pl.read_parquet(previous) if previous.exists() else None
    return with_live_events(interactions, items, logged_events(config, runs.root), carried)
