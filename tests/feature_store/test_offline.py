"""Point-in-time correctness: every feature equals a plain-Python recomputation from earlier events."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest
from fs_logs import DAY, make_log
from polars.testing import assert_frame_equal

from feature_store.columns import ITEM_TS
from feature_store.covisit import CovisitPairs, covisitation, covisitation_lazy
from feature_store.offline import (
    ITEM_GRID,
    EventLog,
    FeatureInputError,
    item_moments,
    materialize,
    read_materialized,
    training_frame,
    write_materialized,
)
from feature_store.repository import DEFAULT_FEATURE_SET, default_feature_set
from recsys.config import FeaturesConfig

CONFIG = FeaturesConfig(
    recent_items=4, covisit_max_gap=2, covisit_max_seconds=3 * DAY, covisit_top_per_item=3
)
NEVER = 3650.0


def brute_force(log: pl.DataFrame, catalog: pl.DataFrame, user: str, item: str, t: int) -> dict[str, float]:
    """Every default feature from the events with ts < t, written out loop by loop."""
    category = {row["item_id"]: (row["categories"] or [None])[0] for row in catalog.iter_rows(named=True)}
    past = [row for row in log.iter_rows(named=True) if row["ts"] < t]
    f: dict[str, float] = {}

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    on_item = [e for e in past if e["item_id"] == item]
    for days in (1, 7, 30):
        f[f"item_events_{days}d"] = sum(1 for e in on_item if t - e["ts"] <= days * DAY)
    f["item_events_all"] = len(on_item)
    f["item_unique_users"] = len({e["user_id"] for e in on_item})
    f["item_trend"] = (f["item_events_7d"] / 7) / (f["item_events_30d"] / 30) if f["item_events_30d"] else 1.0
    f["item_days_since_first"] = (t - min(e["ts"] for e in on_item)) / DAY if on_item else NEVER
    f["item_days_since_last"] = (t - max(e["ts"] for e in on_item)) / DAY if on_item else NEVER
    f["item_mean_rating"] = mean([e["rating"] for e in on_item if e["rating"] is not None])
    f["item_mean_weight"] = mean([e["weight"] for e in on_item])

    by_user = [e for e in past if e["user_id"] == user]
    for days in (1, 7, 30):
        f[f"user_events_{days}d"] = sum(1 for e in by_user if t - e["ts"] <= days * DAY)
    f["user_events_all"] = len(by_user)
    f["user_days_since_last"] = (t - max(e["ts"] for e in by_user)) / DAY if by_user else NEVER
    f["user_n_categories"] = len({category[e["item_id"]] for e in by_user} - {None})
    f["user_mean_rating"] = mean([e["rating"] for e in by_user if e["rating"] is not None])

    pair = [e for e in by_user if e["item_id"] == item]
    f["ui_seen"] = 1.0 if pair else 0.0
    f["ui_count"] = len(pair)
    f["ui_days_since"] = (t - max(e["ts"] for e in pair)) / DAY if pair else NEVER

    same = [
        e for e in by_user if category.get(item) is not None and category[e["item_id"]] == category.get(item)
    ]
    for days in CONFIG.affinity_half_lives_days:

        def decay(e: dict[str, object], half_life: float = days * DAY) -> float:
            return float(2.0 ** (-(t - int(e["ts"])) / half_life))  # type: ignore[call-overload]

        total = sum(decay(e) for e in by_user)
        f[f"user_category_affinity_{days:g}d"] = sum(decay(e) for e in same) / total if same else 0.0

    sequences: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for e in past:
        sequences[e["user_id"]].append((e["ts"], e["item_id"]))
    weights: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for sequence in sequences.values():
        sequence.sort()
        for later in range(len(sequence)):
            for steps in range(1, CONFIG.covisit_max_gap + 1):
                earlier = later - steps
                if earlier < 0:
                    break
                (t0, a), (t1, b) = sequence[earlier], sequence[later]
                if a != b and t1 - t0 <= CONFIG.covisit_max_seconds:
                    weights[a][b] += 1 / steps
                    weights[b][a] += 1 / steps
    top = {
        a: dict(sorted(others.items(), key=lambda kv: (-kv[1], kv[0]))[: CONFIG.covisit_top_per_item])
        for a, others in weights.items()
    }
    history = sorted(sequences[user])[-CONFIG.recent_items :]
    f["covisit_score"] = sum(top.get(h, {}).get(item, 0.0) for _, h in history)
    return f


def random_rows(log: pl.DataFrame, seed: int, n: int = 40) -> pl.DataFrame:
    """Random (user, item, t): some t exactly at an event's ts, some shared, some after the log ends."""
    rng = random.Random(seed)
    users = sorted(set(log["user_id"]))
    items = [f"i{k}" for k in range(10)]  # i0 has no category, i8 no events, i9 is not in the catalog
    ts = log["ts"].to_list()
    moments = [rng.choice(ts) for _ in range(n // 2)] + [
        rng.randrange(min(ts) - DAY, max(ts) + 3 * DAY) for _ in range(n // 2)
    ]
    moments[:4] = [moments[0]] * 4
    rows = [(rng.choice(users), rng.choice(items), moment) for moment in moments]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "ts"], orient="row")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_training_frame_matches_brute_force_from_strictly_earlier_events(seed: int) -> None:
    catalog, log = make_log(seed)
    rows = random_rows(log, seed).with_columns(pl.int_range(pl.len()).alias("label"))
    frame = training_frame(rows, log, catalog, CONFIG)

    assert frame.columns == [*rows.columns, *DEFAULT_FEATURE_SET.features]
    assert frame.select(rows.columns).equals(rows)
    for row in frame.iter_rows(named=True):
        expected = brute_force(log, catalog, row["user_id"], row["item_id"], row["ts"])
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (
                name,
                row["user_id"],
                row["item_id"],
                row["ts"],
            )


@pytest.mark.parametrize("seed", [4, 5])
def test_events_at_or_after_the_row_time_change_nothing(seed: int) -> None:
    catalog, log = make_log(seed)
    rows = random_rows(log, seed, n=6)
    before = training_frame(rows, log, catalog, CONFIG)
    for index, (user, item, t) in enumerate(rows.iter_rows()):
        future = pl.DataFrame(
            {
                "user_id": [user, user, "u0", user],
                "item_id": [item, "i1", item, "i2"],
                "ts": [t, t, t + 1, t + 5 * DAY],
                "rating": [5.0, None, 1.0, 2.0],
                "weight": [5.0, 1.0, 1.0, 2.0],
                "event": ["view"] * 4,
            }
        )
        after = training_frame(rows[index], pl.concat([log, future]).sort("ts"), catalog, CONFIG)
        assert_frame_equal(after, before[index], check_exact=True)


def test_many_moments_cut_user_state_exactly_and_item_state_on_the_grid() -> None:
    """With more distinct ts than ITEM_GRID, a user's own events up to the row's ts still count
    (user, user x item, user x category features exact), while item features are those of the grid
    moment at or before the ts (never a later event)."""
    catalog, log = make_log(4)
    rows = random_rows(log, 4, n=4 * ITEM_GRID)
    assert rows["ts"].n_unique() > ITEM_GRID
    frame = training_frame(rows, log, catalog, CONFIG)
    grid = item_moments(rows["ts"])
    assert grid.n_unique() <= ITEM_GRID and (grid <= rows["ts"]).all() and (grid < rows["ts"]).any()
    for row, item_moment in zip(frame.iter_rows(named=True), grid.to_list(), strict=True):
        exact = brute_force(log, catalog, row["user_id"], row["item_id"], row["ts"])
        gridded = brute_force(log, catalog, row["user_id"], row["item_id"], item_moment)
        for name, value in exact.items():
            if name.startswith(("user_", "ui_")):
                assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
            elif name.startswith("item_") and not name.startswith(("item_days_since", "item_events_")):
                assert row[name] == pytest.approx(gridded[name], rel=1e-9, abs=1e-12), name


def test_rows_that_say_when_their_items_state_is_read_get_it_then() -> None:
    """``item_ts`` (the caller's grid, a push before the user's moment): item features as of it, the
    user's own as of the row's ts; the same rows without it read both at the ts."""
    catalog, log = make_log(5)
    rows = random_rows(log, 5, n=12)
    earlier = rows.with_columns((pl.col("ts") - 3 * DAY).clip(lower_bound=0).alias(ITEM_TS))
    frame = training_frame(earlier, log, catalog, CONFIG)
    assert frame.columns == [*earlier.columns, *DEFAULT_FEATURE_SET.features]
    for row in frame.iter_rows(named=True):
        exact = brute_force(log, catalog, row["user_id"], row["item_id"], row["ts"])
        pushed = brute_force(log, catalog, row["user_id"], row["item_id"], row[ITEM_TS])
        for name, value in exact.items():
            if name.startswith(("user_", "ui_")):
                assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
            elif name in ("item_events_all", "item_unique_users", "item_mean_rating", "item_mean_weight"):
                assert row[name] == pytest.approx(pushed[name], rel=1e-9, abs=1e-12), name
    same = training_frame(rows.with_columns(pl.col("ts").alias(ITEM_TS)), log, catalog, CONFIG)
    assert_frame_equal(same.drop(ITEM_TS), training_frame(rows, log, catalog, CONFIG), check_exact=True)
    late = rows.with_columns(pl.col("ts").alias(ITEM_TS)).with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.col("ts") + 1).otherwise(pl.col("ts")).alias(ITEM_TS)
    )
    with pytest.raises(FeatureInputError, match="row 3: field 'item_ts'"):
        training_frame(late, log, catalog, CONFIG)


def test_one_cutoff_for_many_rows_equals_rows_one_by_one() -> None:
    catalog, log = make_log(7)
    t = int(log["ts"].quantile(0.7))  # type: ignore[arg-type]
    rows = pl.DataFrame(
        [(u, i, t) for u in ("u0", "u1", "u5") for i in ("i3", "i1", "i9")],
        schema=["user_id", "item_id", "ts"],
        orient="row",
    )
    together = training_frame(rows, log, catalog, CONFIG)
    one_by_one = pl.concat([training_frame(rows[k], log, catalog, CONFIG) for k in range(rows.height)])
    assert_frame_equal(together, one_by_one, check_exact=True)
    prepared = EventLog.of(log, catalog)  # prepared once, as a batch job's chunks share it
    reused = pl.concat([training_frame(rows[k], prepared, catalog, CONFIG) for k in range(rows.height)])
    assert_frame_equal(together, reused, check_exact=True)


@pytest.mark.parametrize("seed", [4, 5])
def test_chunks_asking_again_for_a_moment_read_the_shared_item_state_and_get_the_same_values(
    seed: int,
) -> None:
    catalog, log = make_log(seed)
    rows = random_rows(log, seed, n=24)
    again = rows.with_columns(pl.lit(int(rows["ts"][0]), pl.Int64).alias("ts"))  # every chunk at one moment
    rows = pl.concat([rows, again, rows])  # moments asked for again, after others came between
    expected = pl.concat([training_frame(rows[k : k + 4], log, catalog, CONFIG) for k in range(0, 72, 4)])
    prepared = EventLog.of(log, catalog)
    chunked = pl.concat([training_frame(rows[k : k + 4], prepared, catalog, CONFIG) for k in range(0, 72, 4)])
    assert_frame_equal(chunked, expected, check_exact=True)
    assert_frame_equal(chunked, training_frame(rows, log, catalog, CONFIG), check_exact=True)


def test_covisitation_known_answer() -> None:
    events = pl.DataFrame(
        {
            "user_id": ["u"] * 5 + ["v"] * 2,
            "item_id": ["a", "b", "a", "c", "d", "a", "b"],
            "ts": [0, 10, 20, 30, 10_000, 0, 5],
        }
    )
    config = FeaturesConfig(covisit_max_gap=2, covisit_max_seconds=100, covisit_top_per_item=2)
    table = {(a, b): w for a, b, w in covisitation(events, config).rows()}
    # u: a-b, b-a and a-c one step apart (1 each), b-c two steps (1/2), a-a skipped, d too late; v: a-b (1).
    assert table == {
        ("a", "b"): 3.0,
        ("a", "c"): 1.0,
        ("b", "a"): 3.0,
        ("b", "c"): 0.5,
        ("c", "a"): 1.0,
        ("c", "b"): 0.5,
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_covisit_pairs_found_once_give_the_table_of_the_log_cut_at_any_moment(seed: int) -> None:
    _, log = make_log(seed, users=5, items=12, events=300)
    config = CONFIG.model_copy(update={"covisit_max_gap": 3, "covisit_top_per_item": 2})
    pairs = CovisitPairs.of(log, config)
    ts = log["ts"].unique().sort()
    sources = pl.Series(["i3", "i1", "i1", "never-seen", "i7"])
    for moment in [int(ts[0]), int(ts[5]), int(ts[len(ts) // 2]), int(ts[-1]), int(ts[-1]) + 1]:
        past = log.lazy().filter(pl.col("ts") < moment)
        expected = covisitation_lazy(past, config).collect()
        assert_frame_equal(pairs.table(moment), expected, check_exact=True)
        restricted = covisitation_lazy(past, config, pl.DataFrame({"item_id": sources}).lazy()).collect()
        assert_frame_equal(pairs.table(moment, sources), restricted, check_exact=True)
    assert pairs.table(moment, sources).height > 0


def test_feature_set_selects_columns_and_unknown_names_are_refused() -> None:
    catalog, log = make_log(1)
    rows = random_rows(log, 1, n=4)
    chosen = default_feature_set(CONFIG).__class__("small", ("ui_count", "item_trend"))
    frame = training_frame(rows, log, catalog, CONFIG, chosen)
    assert frame.columns == [*rows.columns, "ui_count", "item_trend"]
    with pytest.raises(ValueError, match="unknown features nope"):
        training_frame(rows, log, catalog, CONFIG, chosen.__class__("bad", ("ui_count", "nope")))


def test_bad_rows_are_refused_with_the_row_named() -> None:
    catalog, log = make_log(1)
    with pytest.raises(FeatureInputError, match="missing columns ts"):
        training_frame(pl.DataFrame({"user_id": ["u0"], "item_id": ["i1"]}), log, catalog, CONFIG)
    rows = pl.DataFrame({"user_id": ["u0", None], "item_id": ["i1", "i2"], "ts": [1, 2]})
    with pytest.raises(FeatureInputError, match="row 1 has no user_id"):
        training_frame(rows, log, catalog, CONFIG)


def test_materialized_frames_round_trip_and_corrupt_files_are_named(tmp_path: Path) -> None:
    catalog, log = make_log(2)
    frames = materialize(log, catalog, int(log["ts"].max()) + 1, CONFIG)  # type: ignore[arg-type]
    folder = write_materialized(frames, tmp_path / "features", as_of=123)
    again = read_materialized(folder)
    assert again.keys() == frames.keys()
    for name, frame in frames.items():
        assert_frame_equal(again[name], frame)
    (folder / "user.parquet").write_bytes(b"not parquet")
    with pytest.raises(FeatureInputError, match=r"user\.parquet"):
        read_materialized(folder)
    with pytest.raises(FeatureInputError, match="not a materialized feature folder"):
        read_materialized(tmp_path)
