"""fit_sources / load_sources: every known source fits, saves, loads and answers by the contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.catalog import Histories, ItemCatalog
from recsys.config import Config
from recsys.data.demo import DemoSpec, generate_demo
from recsys.index import ExactIndex
from recsys.retrieval.base import CANDIDATE_COLUMNS
from recsys.retrieval.factory import KNOWN_SOURCES, fit_sources, load_sources, user_vector_fn
from recsys.retrieval.semantic import SemanticSource


def test_every_known_source_fits_loads_and_excludes_seen_items(tmp_path: Path) -> None:
    items, events = generate_demo(DemoSpec(users=60, items=80, events=1500, topics=4, seed=3))
    catalog = ItemCatalog.from_items(items)
    config = Config.model_validate({"retrieval": {"sources": list(KNOWN_SOURCES)}})
    fit_sources(config, events, items, catalog, tmp_path / "models")

    vectors = np.random.default_rng(0).normal(size=(len(catalog), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = ExactIndex(8)
    index.build(vectors)
    user_vectors = user_vector_fn(config, vectors, items, tmp_path / "unused-encoder")
    sources = load_sources(config, tmp_path / "models", catalog, index, user_vectors)
    assert [source.name for source in sources] == list(KNOWN_SOURCES)

    histories = Histories.from_interactions(events, catalog)
    seen = pl.DataFrame(
        {
            "user_id": np.repeat(histories.user_ids, [len(h) for h in histories.items]).tolist(),
            "item_idx": np.concatenate(histories.items),
        }
    )
    for source in sources:
        frame = source.candidates(histories, k=10)
        assert dict(frame.schema) == CANDIDATE_COLUMNS, source.name
        assert frame["user_id"].n_unique() > 0.9 * len(histories), source.name
        assert frame.group_by("user_id").len()["len"].max() <= 10
        assert frame.join(seen, on=["user_id", "item_idx"], how="semi").is_empty(), source.name


def test_unknown_source_is_named() -> None:
    config = Config.model_validate({"retrieval": {"sources": ["semantic", "bogus"]}})
    items, events = generate_demo(DemoSpec(users=10, items=20, events=100, topics=2, seed=1))
    with pytest.raises(ValueError, match=r"unknown source\(s\) \['bogus'\]"):
        fit_sources(config, events, items, ItemCatalog.from_items(items), Path("/nonexistent"))


def test_cold_text_allows_only_items_with_few_events_in_its_fit(tmp_path: Path) -> None:
    catalog = ItemCatalog(np.asarray(["a", "b", "c"], dtype=object))
    events = pl.DataFrame(
        {"user_id": ["u"] * 5 + ["v"], "item_id": ["a"] * 5 + ["b"], "ts": list(range(6))},
    )
    config = Config.model_validate({"retrieval": {"sources": ["cold_text"], "cold_max_events": 1}})
    fit_sources(config, events, pl.DataFrame({"item_id": ["a", "b", "c"]}), catalog, tmp_path)
    index = ExactIndex(2)
    index.build(np.eye(3, 2, dtype=np.float32) + 0.1)
    (source,) = load_sources(config, tmp_path, catalog, index, lambda h: np.ones((len(h), 2), np.float32))
    assert source.name == "cold_text"
    assert isinstance(source, SemanticSource) and source.allow is not None
    assert source.allow.tolist() == [1, 2]  # b (1 event) and c (none); a has 5


@pytest.mark.parametrize("half_life", [None, 7.0])
def test_the_category_source_weighs_sales_by_the_configured_half_life(
    tmp_path: Path, half_life: float | None
) -> None:
    """Item a sold three times four weeks before b's one sale on the last day: all time a sells best
    in their category, over a 7-day half-life b does; the source that loads is the one configured."""
    catalog = ItemCatalog(np.asarray(["a", "b", "c"], dtype=object))
    day = 86_400
    events = pl.DataFrame(
        {"user_id": ["u", "u", "v", "w"], "item_id": ["a", "a", "a", "b"], "ts": [0, 0, 0, 28 * day]}
    )
    items = pl.DataFrame({"item_id": ["a", "b", "c"], "categories": [["shoes"]] * 3})
    retrieval = {"sources": ["category"], "trial_sources": [], "category_half_life_days": half_life}
    config = Config.model_validate({"retrieval": retrieval})
    fit_sources(config, events, items, catalog, tmp_path)
    index = ExactIndex(2)
    index.build(np.eye(3, 2, dtype=np.float32))
    (source,) = load_sources(config, tmp_path, catalog, index, lambda h: np.ones((len(h), 2), np.float32))
    history = Histories(["x"], [catalog.indices(["c"])], [np.asarray([0])])
    ranked = source.candidates(history, k=2).sort("rank")["item_idx"].to_list()
    assert ranked == ([0, 1] if half_life is None else [1, 0])


@pytest.mark.parametrize("taste_half_life", [None, 1.0])
def test_the_category_source_weighs_the_users_taste_by_the_configured_half_life(
    tmp_path: Path, taste_half_life: float | None
) -> None:
    """A user with three events in shoes and then one in hats: counted alike, shoes lead; over a
    one-event half-life, hats (the source that loads is the one configured)."""
    catalog = ItemCatalog(np.asarray(["s", "h"], dtype=object))
    events = pl.DataFrame({"user_id": ["u", "v"], "item_id": ["s", "h"], "ts": [0, 0]})
    items = pl.DataFrame({"item_id": ["s", "h"], "categories": [["shoes"], ["hats"]]})
    retrieval = {
        "sources": ["category"],
        "trial_sources": [],
        "category_half_life_days": None,
        "category_taste_half_life_events": taste_half_life,
    }
    config = Config.model_validate({"retrieval": retrieval})
    fit_sources(config, events, items, catalog, tmp_path)
    index = ExactIndex(2)
    index.build(np.eye(2, 2, dtype=np.float32))
    (source,) = load_sources(config, tmp_path, catalog, index, lambda h: np.ones((len(h), 2), np.float32))
    history = Histories(["x"], [catalog.indices(["s", "s", "s", "h"])], [np.arange(4)])
    ranked = source.retrieve(history, k=2, exclude_seen=False).items[0].tolist()
    assert ranked == ([0, 1] if taste_half_life is None else [1, 0])
