"""Where users are placed in time: one common now, or each user just after their latest event."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.catalog import Histories, ItemCatalog
from recsys.moments import (
    Moments,
    UserMoments,
    before_targets,
    moment_grid,
    per_user_moments,
    snap_down,
)

DAY = 86_400


def _events(users: int = 120, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        (f"u{user}", f"i{rng.integers(30)}", int(start + step * DAY))
        for user in range(users)
        for start in [rng.integers(0, 400) * DAY]
        for step in range(rng.integers(1, 6))
    ]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "ts"], orient="row")


def _histories(events: pl.DataFrame, users: list[str]) -> Histories:
    catalog = ItemCatalog.from_items(events.select("item_id").unique().sort("item_id"))
    return Histories.from_interactions(events, catalog, users=users)


def _items_then(placed: UserMoments) -> dict[str, int]:
    """When each user's items' state is read."""
    users = list(placed.moments)
    return dict(zip(users, placed.arrays(users)[1].tolist(), strict=True))


@pytest.mark.parametrize(
    ("as_of", "protocol", "expected"),
    [
        ("auto", "per_user", True),
        ("auto", "global", False),
        ("now", "per_user", False),
        ("last_event", "global", True),
    ],
)
def test_auto_follows_the_protocol(as_of: str, protocol: str, expected: bool) -> None:
    assert per_user_moments(as_of, protocol) is expected  # type: ignore[arg-type]


def test_snap_down_never_moves_a_moment_later() -> None:
    grid = np.array([10, 20, 30])
    assert snap_down(np.array([5, 10, 19, 20, 35]), grid).tolist() == [5, 10, 10, 20, 30]
    moments = np.random.default_rng(0).integers(0, 1000, 500)
    grid = moment_grid(moments, points=12)
    assert len(grid) <= 12 and grid[0] == moments.min()
    snapped = snap_down(moments, grid)
    assert (snapped <= moments).all() and set(snapped.tolist()) <= set(grid.tolist())


def test_everyone_at_now_unless_per_user() -> None:
    events = _events()
    users = events["user_id"].unique().sort().to_list()
    moments = Moments.of_events(events, per_user=False)
    assert moments.now == int(events["ts"].max()) + 1
    placed = moments.of(_histories(events, users))
    assert set(placed.moments.values()) == set(_items_then(placed).values()) == {moments.now}
    earlier = Moments.of_events(events, False, now=123).of(_histories(events, users))
    assert set(earlier.moments.values()) == {123}


def test_per_user_moments_follow_each_users_latest_event_on_a_grid_of_the_data() -> None:
    events = _events()
    users = events["user_id"].unique().sort().to_list()
    moments = Moments.of_events(events, per_user=True)
    assert moments.grid is not None and len(moments.grid) <= 48
    placed = moments.of(_histories(events, [*users, "new-user"]))
    latest = dict(events.group_by("user_id").agg(pl.col("ts").max() + 1).iter_rows())
    assert placed.moments["new-user"] == moments.now
    assert all(placed.moments[user] == latest[user] for user in users)  # every event of the user counts
    items_then = _items_then(placed)
    assert all(items_then[user] <= placed.moments[user] for user in users)
    assert set(items_then.values()) <= {*moments.grid.tolist(), moments.now}  # items' state on the grid
    assert len({items_then[user] for user in users}) > 10  # not everyone at one moment
    newest = max(latest, key=latest.__getitem__)
    assert placed.moments[newest] == items_then[newest] == moments.now
    # both depend on the data only, not on who is scored beside them (chunks, shards, CLI)
    for user in users[:20]:
        alone = moments.of(_histories(events, [user]))
        assert alone.moments[user] == placed.moments[user]
        assert alone.arrays([user])[1][0] == items_then[user]


@pytest.mark.parametrize("per_user", [True, False])
def test_users_ordered_by_moment_then_id(per_user: bool) -> None:
    events = _events()
    moments = Moments.of_events(events, per_user)
    ordered = moments.ordered(events)
    assert sorted(ordered) == events["user_id"].unique().sort().to_list()
    placed = moments.of(_histories(events, ordered))
    items_then = _items_then(placed)
    assert [(items_then[user], user) for user in ordered] == sorted((items_then[u], u) for u in ordered)
    if not per_user:
        assert ordered == sorted(ordered)


def test_a_moment_never_lies_after_the_users_first_target() -> None:
    targets = pl.DataFrame({"user_id": ["a", "a", "b"], "ts": [50, 30, 200]})
    placed = UserMoments({"a": 100, "b": 100, "c": 100}, np.array([20, 90]))  # c: no target, stays
    moved = before_targets(placed, targets)
    assert dict(moved.moments) == {"a": 30, "b": 100, "c": 100}
    assert moved.item_grid is placed.item_grid  # the items' state stays on the data's grid
    assert moved.arrays(["a", "b"])[1].tolist() == [20, 90]


def test_any_subset_of_the_users_reads_the_items_state_where_all_of_them_do() -> None:
    """A batch chunk, a shard or one request gets the moments the whole placement gives its users."""
    events = _events()
    users = events["user_id"].unique().sort().to_list()
    placed = Moments.of_events(events, per_user=True).of(_histories(events, users))
    moments, items_then = placed.arrays(users)
    for chunk in (users[:7], users[50:53], users[::-9]):
        at = [users.index(user) for user in chunk]
        chunk_moments, chunk_items_then = placed.arrays(chunk)
        assert chunk_moments.tolist() == moments[at].tolist()
        assert chunk_items_then.tolist() == items_then[at].tolist()
    assert UserMoments.at(["a", "b"], 77).arrays(["b"])[1].tolist() == [77]  # no grid: the moment itself
    with pytest.raises(ValueError, match="'nobody'"):
        placed.arrays([users[0], "nobody"])
