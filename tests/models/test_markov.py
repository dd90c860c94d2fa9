from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.catalog import Histories, ItemCatalog
from recsys.models.markov import MarkovScorer, _prune

CHAIN = ["a", "b", "c", "d", "e", "f"]


def events(sequences: dict[str, list[str]], gap: int = 60) -> pl.DataFrame:
    rows = [
        (user, item, 1_000 + step * gap)
        for user, items in sequences.items()
        for step, item in enumerate(items)
    ]
    return pl.DataFrame(
        rows, schema={"user_id": pl.String, "item_id": pl.String, "ts": pl.Int64}, orient="row"
    )


def catalog() -> ItemCatalog:
    return ItemCatalog(np.asarray([*CHAIN, "x"], dtype=object))


def user(catalog: ItemCatalog, items: list[str]) -> Histories:
    indices = catalog.indices(items)
    return Histories(["u"], [indices], [np.arange(len(indices), dtype=np.int64)])


def test_the_walk_reaches_items_several_steps_down_a_chain() -> None:
    """Users who read the chain a..f: from a, the walk of 4 steps reaches b, c, d and e, the nearer
    ones no lower, and nothing beyond its steps."""
    cat = catalog()
    scorer = MarkovScorer(steps=4, max_seconds=10**6).fit(events({f"u{n}": CHAIN for n in range(3)}), cat)
    scores = scorer.score(user(cat, ["a"]))[0]
    reached = [scores[cat.indices([item])[0]] for item in "bcde"]
    assert all(np.isfinite(reached)) and reached == sorted(reached, reverse=True)
    assert scores[cat.indices(["f"])[0]] == -np.inf  # five steps away
    assert scores[cat.indices(["x"])[0]] == -np.inf


def test_transitions_are_directed_from_the_latest_item() -> None:
    """From c the walk goes to d, e...; the items before c (a, b) are where users came from, not where
    they go, so they are never reached."""
    cat = catalog()
    scorer = MarkovScorer(steps=2, max_seconds=10**6).fit(events({"u0": CHAIN, "u1": CHAIN}), cat)
    scores = scorer.score(user(cat, ["x", "c"]))[0]
    assert scores[cat.indices(["a"])[0]] == -np.inf and scores[cat.indices(["b"])[0]] == -np.inf
    assert np.isfinite(scores[cat.indices(["d"])[0]]) and np.isfinite(scores[cat.indices(["e"])[0]])


def test_probabilities_follow_how_often_each_next_item_came() -> None:
    """After a, three users went to b and one to x: b scores three times x."""
    cat = catalog()
    sequences = {"u0": ["a", "b"], "u1": ["a", "b"], "u2": ["a", "b"], "u3": ["a", "x"]}
    scores = MarkovScorer(steps=1, max_seconds=10**6).fit(events(sequences), cat).score(user(cat, ["a"]))[0]
    assert np.isclose(scores[cat.indices(["b"])[0]], 0.75) and np.isclose(scores[cat.indices(["x"])[0]], 0.25)


def test_events_too_far_apart_are_no_transition() -> None:
    cat = catalog()
    scorer = MarkovScorer(steps=1, max_seconds=30).fit(events({"u0": ["a", "b"]}, gap=60), cat)
    assert np.all(scorer.score(user(cat, ["a"])) == -np.inf)


def test_prune_keeps_each_rows_largest_entries_ties_to_the_smaller_column() -> None:
    matrix = sp.csr_matrix(np.array([[0.1, 0.5, 0.5, 0.2], [0.0, 0.3, 0.0, 0.0]]))
    kept = _prune(matrix, 2).toarray()
    assert kept.tolist() == [[0.0, 0.5, 0.5, 0.0], [0.0, 0.3, 0.0, 0.0]]
    ties = sp.csr_matrix(np.array([[0.4, 0.4, 0.4, 0.1]]))
    assert _prune(ties, 2).toarray().tolist() == [[0.4, 0.4, 0.0, 0.0]]
