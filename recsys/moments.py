"""The moment each user's recommendations describe: the as-of time of their point-in-time features.

The ranker learns from users described just before their future starts (:mod:`recsys.ranking.
training_set`). Under the global protocol that is one moment for everyone, the data's "now". Under the
per-user protocol each user's future follows their own latest event, however long ago: a user last
seen years before the data's end is described as of then, as the ranker was trained, not with
popularity and recency that never applied to them. Batch recommendations and the evaluation take
their moments from here, so what is evaluated is what ships.

A per-user moment is exact (just after the user's latest event): the features of the user's own events
count every one of them, the session they are in included, as online, where user state is live. The
items' state is read as of a grid point at or before it, as online it comes from the latest push: a
grid of at most :data:`AS_OF_GRID` moments, quantiles of every user's latest event in the data
(:class:`UserMoments`), so item-side state is computed once per grid point, and both moments depend
only on the data, never on which users are scored beside them (chunks, shards and a CLI call for one
user all agree).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.catalog import Histories
from recsys.config import AsOf

AS_OF_GRID = 48


def moment_grid(moments: np.ndarray, points: int = AS_OF_GRID) -> np.ndarray:
    """At most ``points`` quantiles of ``moments`` (sorted, distinct), the smallest one included."""
    return np.unique(np.quantile(moments, np.linspace(0.0, 1.0, points), method="lower"))


def snap_down(moments: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Each moment moved down to the latest grid point at or before it (never later: a moment before
    the whole grid stays as it is)."""
    at = np.searchsorted(grid, moments, side="right") - 1
    return np.where(at >= 0, grid[np.maximum(at, 0)], moments)


@dataclass(frozen=True, eq=False)
class UserMoments:
    """Where scored users stand in time, what every scoring call takes: each user's moment (their own
    events strictly before it count) and ``item_grid``, the grid whose point at or before that moment
    their items' state is read at (None: at the moment itself).

    Not a dict: a copy of the moments alone would read the items' state at other moments (a batch
    chunk's own grid) and make a user's answer depend on who is scored beside them.
    """

    moments: Mapping[str, int]
    item_grid: np.ndarray | None = None

    @classmethod
    def at(cls, user_ids: Iterable[str], moment: int) -> UserMoments:
        """Every user at one ``moment``, their items' state read then too (a global "now"; online)."""
        return cls(dict.fromkeys(user_ids, moment))

    def arrays(self, user_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The moments of ``user_ids`` and the moments their items' state is read at (int64, in
        order); a user without a moment is refused."""
        missing = [user for user in user_ids if user not in self.moments]
        if missing:
            raise ValueError(f"no moment for {len(missing)} user(s), e.g. {missing[0]!r}")
        moments = np.asarray([self.moments[user] for user in user_ids], dtype=np.int64)
        return moments, moments if self.item_grid is None else snap_down(moments, self.item_grid)


def per_user_moments(as_of: AsOf, protocol: str) -> bool:
    """Whether users are described as of their own latest event (``recommend.as_of``; ``auto`` follows
    the split's ``protocol``) rather than as of the common now."""
    return as_of == "last_event" or (as_of == "auto" and protocol == "per_user")


@dataclass(frozen=True)
class Moments:
    """How users of one dataset are placed in time: all at ``now``, or (with a ``grid``) each just
    after their latest event, their items' state read on the grid."""

    now: int
    grid: np.ndarray | None = None

    @classmethod
    def of_events(cls, events: pl.DataFrame, per_user: bool, now: int | None = None) -> Moments:
        """``now`` defaults to just after the latest event; the grid comes from every user's latest."""
        latest = events.group_by("user_id").agg(pl.col("ts").max())["ts"].to_numpy() + 1
        now = int(latest.max()) if now is None else now
        return cls(now, moment_grid(latest) if per_user else None)

    def ordered(self, events: pl.DataFrame) -> list[str]:
        """Every user of ``events`` by the moment their items' state is read at, then id. Consecutive
        users share it, so a batch chunk of them costs a few cuts of the event log instead of one per
        grid moment, and any slicing of this order (shards, chunks) gives the same users in the same
        order."""
        latest = events.group_by("user_id").agg(pl.col("ts").max() + 1)
        if self.grid is None:
            placed = np.full(latest.height, self.now)
        else:
            placed = snap_down(latest["ts"].to_numpy(), self.grid)
        return latest.with_columns(pl.Series("moment", placed)).sort("moment", "user_id")["user_id"].to_list()

    def of(self, histories: Histories) -> UserMoments:
        """Each user's as-of moment (``now`` for a user without events)."""
        if self.grid is None:
            return UserMoments.at(histories.user_ids, self.now)
        latest = [int(ts[-1]) + 1 if len(ts) else self.now for ts in histories.timestamps]
        return UserMoments(dict(zip(histories.user_ids, latest, strict=True)), self.grid)


def before_targets(placed: UserMoments, targets: pl.DataFrame) -> UserMoments:
    """``placed`` moved back to each user's first event of ``targets`` where it lies later. Under the
    per-user split the events before the cut hold other users' later events, so their "now"
    (``recommend.as_of: now``) lies after most users' own futures: features as of then would count
    the very events being predicted (labels in training, the future in evaluation)."""
    first = dict(targets.group_by("user_id").agg(pl.col("ts").min()).iter_rows())
    moved = {user: min(moment, first.get(user, moment)) for user, moment in placed.moments.items()}
    return UserMoments(moved, placed.item_grid)
