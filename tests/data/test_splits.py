from __future__ import annotations

import polars as pl

from recsys.data import global_split, per_user_split, time_at_share


def events() -> pl.DataFrame:
    rows = [("u1", f"i{k}", 100 + k) for k in range(10)] + [("u2", "i0", 50), ("u2", "i1", 60)]
    rows.append(("u1", "tie", 109))  # same ts as i9: row order breaks the tie
    return pl.DataFrame(rows, schema=["user_id", "item_id", "ts"], orient="row")


def test_per_user_split_takes_each_users_last_share() -> None:
    train, test = per_user_split(events(), test_share=0.2, min_events=5)
    # u1 has 11 events -> ceil(2.2) = 3 in test: the three latest (ties in file order).
    assert test.filter(pl.col("user_id") == "u1")["item_id"].to_list() == ["i8", "i9", "tie"]
    # u2 has 2 events (< min_events): all in train.
    assert test.filter(pl.col("user_id") == "u2").height == 0
    assert train.height + test.height == events().height
    latest_train = train.group_by("user_id").agg(pl.col("ts").max())
    earliest_test = test.group_by("user_id").agg(pl.col("ts").min().alias("t"))
    joined = latest_train.join(earliest_test, on="user_id")
    assert (joined["ts"] <= joined["t"]).all()


def test_global_split_respects_the_cutoff() -> None:
    frame = events()
    cutoff = time_at_share(frame, 0.1)
    train, test = global_split(frame, cutoff)
    assert cutoff == int(109 - 59 * 0.1)
    assert train["ts"].max() < cutoff <= test["ts"].min()  # type: ignore[operator]
    assert train.height + test.height == frame.height
