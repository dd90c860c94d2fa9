from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from recsys.cli import app
from recsys.config import DemoConfig
from recsys.data import load_dataset
from recsys.data.demo import REGIMES, TOPICS, DemoSpec, Regime, generate_demo, write_demo

SPEC = DemoSpec(users=150, items=200, events=4000, topics=12, seed=11)
DAY = 86_400


def test_demo_is_deterministic_and_in_the_contract() -> None:
    items, events = generate_demo(SPEC)
    again_items, again_events = generate_demo(SPEC)
    assert_frame_equal(items, again_items)
    assert_frame_equal(events, again_events)
    assert events.height == SPEC.events
    assert set(events["item_id"].unique()) <= set(items["item_id"])
    assert events["ts"].is_sorted()
    assert (events["ts"].max() - events["ts"].min()) <= SPEC.days * 86_400  # type: ignore[operator]
    sentences = items["text"].str.count_matches(r"\.").to_list()
    assert min(sentences) >= 2 and max(sentences) <= 4


def test_default_regime_is_frozen() -> None:
    """The default catalog's bytes for a seed never change: tests and README figures rely on them."""
    items, events = generate_demo(SPEC)
    assert _digest(items) == "434ddfa602919c91"
    assert _digest(events) == "54e0d48fab9275b2"


def test_demo_has_skew_cold_items_and_topic_structure() -> None:
    items, events = generate_demo(SPEC)
    counts = events.group_by("item_id").len().sort("len", descending=True)["len"]
    top_share = counts.head(SPEC.items // 10).sum() / counts.sum()
    assert top_share > 0.3  # Zipf-skewed popularity
    start = events["ts"].min()
    assert items.filter(pl.col("created_at") > start).height > SPEC.items // 10  # items keep arriving
    # No event precedes its item's arrival.
    joined = events.join(items.select("item_id", "created_at"), on="item_id")
    assert (joined["ts"] >= joined["created_at"]).all()
    # Users' events concentrate on few topics (tastes), far from uniform over 12 topics.
    topics = joined.join(items.select("item_id", "categories"), on="item_id").with_columns(
        pl.col("categories").list.first().alias("topic")
    )
    per_user = topics.group_by("user_id").agg(pl.col("topic").n_unique().alias("n"), pl.len().alias("events"))
    busy = per_user.filter(pl.col("events") >= 30)
    assert busy["n"].mean() < 9  # type: ignore[operator]


# Regimes: small catalogs, each checked for the property that defines it.
REGIME_SPEC = DemoSpec(users=300, items=400, events=8000, topics=12, seed=3)


def _regime(regime: Regime, **changes: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    return generate_demo(DemoSpec(**{**REGIME_SPEC.__dict__, **changes, "regime": regime}))


def _digest(frame: pl.DataFrame) -> str:
    return hashlib.sha256(frame.write_ndjson().encode()).hexdigest()[:16]


def _with_topics(items: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Events with their item's arrival and topic, in each user's order."""
    return events.join(
        items.select("item_id", "created_at", pl.col("categories").list.first().alias("topic")), on="item_id"
    ).sort("user_id", "ts", maintain_order=True)


def _first_week_share(items: pl.DataFrame, events: pl.DataFrame) -> float:
    """Median, over items released within the span with 5+ events, of their events' share in week one."""
    start = events["ts"].min()
    shares = (
        _with_topics(items, events)
        .filter(pl.col("created_at") >= start)
        .group_by("item_id")
        .agg((pl.col("ts") < pl.col("created_at") + 7 * DAY).mean().alias("share"), pl.len().alias("n"))
        .filter(pl.col("n") >= 5)["share"]
    )
    assert shares.len() >= 30
    return float(shares.median())  # type: ignore[arg-type]


def _same_topic_share(items: pl.DataFrame, events: pl.DataFrame) -> tuple[float, float]:
    """(share of a user's consecutive events in one topic, the share two random events would give)."""
    joined = _with_topics(items, events)
    same = joined.select(
        (pl.col("topic") == pl.col("topic").shift(1))
        .filter(pl.col("user_id") == pl.col("user_id").shift(1))
        .mean()
    ).item()
    topic_share = joined["topic"].value_counts(normalize=True)["proportion"]
    return float(same), float((topic_share**2).sum())


def _top_next_share(items: pl.DataFrame, events: pl.DataFrame) -> float:
    """Mean, over items followed 10+ times, of the share their most frequent next item takes."""
    joined = _with_topics(items, events).with_columns(
        pl.col("item_id").shift(-1).alias("next"), pl.col("user_id").shift(-1).alias("next_user")
    )
    pairs = joined.filter(pl.col("next_user") == pl.col("user_id")).group_by("item_id", "next").len()
    per_item = pairs.group_by("item_id").agg(
        pl.col("len").max().alias("top"), pl.col("len").sum().alias("all")
    )
    followed = per_item.filter(pl.col("all") >= 10)
    return float((followed["top"] / followed["all"]).mean())  # type: ignore[arg-type]


def _drift(items: pl.DataFrame, events: pl.DataFrame) -> float:
    """How much farther apart a user's topic mix is between the first and last third of the span
    than between the first and middle one (mean total-variation distance, users with 20+ events per
    third). Sampling noise is the same for both distances, so it cancels; taste drift does not."""
    start, end = events["ts"].min(), events["ts"].max()
    third = _with_topics(items, events).with_columns(
        ((pl.col("ts") - start) * 3 // (end - start + 1)).alias("third")  # type: ignore[operator]
    )
    mix = third.group_by("user_id", "third", "topic").len()
    busy = (
        mix.group_by("user_id", "third")
        .agg(pl.col("len").sum())
        .group_by("user_id")
        .agg(pl.col("len").min().alias("least"), pl.len().alias("thirds"))
        .filter((pl.col("thirds") == 3) & (pl.col("least") >= 20))["user_id"]
    )
    assert busy.len() >= 30
    shares = (
        mix.filter(pl.col("user_id").is_in(busy.implode()))
        .with_columns((pl.col("len") / pl.col("len").sum().over("user_id", "third")).alias("p"))
        .pivot("third", index=["user_id", "topic"], values="p")
        .fill_null(0.0)
    )
    distances = shares.group_by("user_id").agg(
        ((pl.col("0") - pl.col("1")).abs().sum() / 2).alias("near"),
        ((pl.col("0") - pl.col("2")).abs().sum() / 2).alias("far"),
    )
    return float((distances["far"] - distances["near"]).mean())  # type: ignore[arg-type]


@pytest.mark.parametrize("regime", REGIMES)
def test_every_regime_is_deterministic_and_passes_validation(regime: Regime, tmp_path: Path) -> None:
    items, events = _regime(regime)
    again_items, again_events = _regime(regime)
    assert_frame_equal(items, again_items)
    assert_frame_equal(events, again_events)
    assert _digest(events) != _digest(_regime(regime, seed=4)[1])
    assert events.height >= 0.99 * REGIME_SPEC.events
    assert events["ts"].is_sorted()
    assert (events["ts"].max() - events["ts"].min()) <= REGIME_SPEC.days * DAY  # type: ignore[operator]
    joined = _with_topics(items, events)
    assert (joined["ts"] >= joined["created_at"]).all()  # no event precedes its item's arrival
    write_demo(tmp_path, DemoSpec(**{**REGIME_SPEC.__dict__, "regime": regime}))
    dataset = load_dataset(tmp_path)
    assert dataset.stats["bad_rows"] == 0
    assert dataset.interactions.height == events.height
    assert dataset.items.height == REGIME_SPEC.items


@pytest.mark.parametrize("regime", REGIMES)
def test_every_regime_keeps_text_informative_of_who_consumes(regime: Regime) -> None:
    """Each item's text is mostly its topic's words, and users consume few topics, so text predicts
    behaviour (also for items with no history)."""
    items, events = _regime(regime)
    joined = _with_topics(items, events)
    per_user = joined.group_by("user_id").agg(pl.col("topic").n_unique().alias("topics"), pl.len().alias("n"))
    assert per_user.filter(pl.col("n") >= 30)["topics"].mean() < 9  # type: ignore[operator]
    vocabulary = {word: topic for topic, words in TOPICS.items() for word in words}
    own, other = 0, 0
    for topic, text in items.select(pl.col("categories").list.first(), "text").iter_rows():
        for word in text.lower().replace(",", "").replace(".", "").split():
            if word in vocabulary:
                own, other = (own + 1, other) if word in TOPICS[topic] else (own, other + 1)
    assert own > 4 * other  # descriptions speak mostly of their own topic


def test_releases_burst_and_fade_and_keep_arriving() -> None:
    items, events = _regime("releases")
    default_items, default_events = _regime("default")
    assert _first_week_share(items, events) > 0.7
    assert _first_week_share(items, events) > _first_week_share(default_items, default_events) + 0.3
    start = events["ts"].min()
    released = items.filter(pl.col("created_at") >= start)
    assert released.height > 0.7 * items.height
    tenth = ((released["created_at"] - start) * 10 // (REGIME_SPEC.days * DAY)).unique()  # type: ignore[operator]
    assert tenth.len() == 10  # items are released throughout the span


def test_shop_users_are_sparse_and_items_long_tailed() -> None:
    items, events = _regime("shop", users=3000)
    assert events.group_by("user_id").len()["len"].median() <= 2  # type: ignore[operator]
    per_item = events.group_by("item_id").len()["len"].sort(descending=True)
    assert items.height - (per_item > 3).sum() > 0.3 * items.height  # many items seen 3 times or less
    top_decile = per_item.head(items.height // 10).sum() / per_item.sum()
    default_per_item = (
        _regime("default", users=3000)[1].group_by("item_id").len()["len"].sort(descending=True)
    )
    assert top_decile > default_per_item.head(items.height // 10).sum() / default_per_item.sum() + 0.15


def test_sessions_are_long_runs_of_related_items() -> None:
    items, events = _regime("sessions")
    same, chance = _same_topic_share(items, events)
    assert same > 0.9 and same > 3 * chance
    default_items, default_events = _regime("default")
    assert _top_next_share(items, events) > _top_next_share(default_items, default_events) + 0.1
    gaps = events.sort("user_id", "ts").select(
        ((pl.col("ts").diff() > 1800) | (pl.col("user_id") != pl.col("user_id").shift(1))).alias("new")
    )
    assert events.height / gaps["new"].sum() > 8  # mean session length


def test_drift_moves_tastes_slowly() -> None:
    items, events = _regime("drift", events=20_000)
    drift = _drift(items, events)
    assert drift > 0.1
    for steady in ("releases", "shop"):
        assert drift > _drift(*_regime(steady, events=20_000)) + 0.08


def test_cli_demo_regime_option_and_config_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DemoConfig.model_fields["regime"].annotation == Regime  # the config offers every regime
    args = ["data", "demo", "--users", "60", "--items", "80", "--events", "1000"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--regime", "shop"])
    assert result.exit_code == 0, result.output
    expected = generate_demo(DemoSpec(users=60, items=80, events=1000, regime="shop"))[1]
    assert_frame_equal(pl.read_parquet(tmp_path / "a" / "interactions.parquet"), expected)
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--regime", "nonsense"])
    assert result.exit_code != 0 and "regime" in result.output
    monkeypatch.setenv("RECSYS_DEMO__REGIME", "drift")
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    expected = generate_demo(DemoSpec(users=60, items=80, events=1000, regime="drift"))[1]
    assert_frame_equal(pl.read_parquet(tmp_path / "c" / "interactions.parquet"), expected)
