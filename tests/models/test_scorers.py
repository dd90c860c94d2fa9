"""One contract every Scorer must pass, plus known answers per model, on a tiny checkerboard dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsys.catalog import Histories, ItemCatalog
from recsys.models import (
    ALSScorer,
    CovisitScorer,
    EASEScorer,
    ItemKNNScorer,
    MarkovScorer,
    NotFittedError,
    PopularityScorer,
    Scorer,
    TextSimilarityScorer,
    interaction_matrix,
    load_scorer,
)
from recsys.models.category import NO_CATEGORY, CategoryScorer, category_codes
from recsys.models.ease import dense_gram, mirror_lower, symmetric_inverse

DAY = 86_400
GROUP_A = [f"i{n}" for n in range(10)]
GROUP_B = [f"i{n}" for n in range(10, 20)]


def checkerboard() -> tuple[ItemCatalog, pl.DataFrame]:
    """8 users read only group-A items, 14 users only group-B items: B is more popular overall,
    so a model that ignores the history recommends B to everyone."""
    rng = np.random.default_rng(0)
    rows = []
    for group, n_users, items in (("a", 8, GROUP_A), ("b", 14, GROUP_B)):
        for u in range(n_users):
            for step, item in enumerate(rng.choice(items, size=6, replace=False)):
                rows.append((f"{group}{u}", str(item), 1_000_000 + u * DAY + step * 60))
    frame = pl.DataFrame(
        rows, schema={"user_id": pl.String, "item_id": pl.String, "ts": pl.Int64}, orient="row"
    )
    return ItemCatalog(np.asarray(GROUP_A + GROUP_B, dtype=object)), frame


def group_vectors() -> np.ndarray:
    """Text vectors that separate the groups (what a content model would know)."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(scale=0.1, size=(20, 8))
    vectors[:10, 0] += 1.0
    vectors[10:, 1] += 1.0
    return vectors.astype(np.float32)


FACTORIES: dict[str, Callable[[], Scorer]] = {
    "popularity": lambda: PopularityScorer(),
    "popularity_recent": lambda: PopularityScorer(days=7),
    "ease": lambda: EASEScorer(lambda_=10.0),
    "covisit": lambda: CovisitScorer(max_seconds=10**9),
    "markov": lambda: MarkovScorer(steps=3, recent_items=2, max_seconds=10**9, beam=6),
    "itemknn": lambda: ItemKNNScorer(neighbors=5, shrink=1.0),
    "als": lambda: ALSScorer(factors=4, regularization=0.1, iterations=10, alpha=1.0),
    "text_similarity": lambda: TextSimilarityScorer(group_vectors(), half_life_events=2.0),
    "category": lambda: CategoryScorer(np.repeat([0, 1], 10)),
}
HISTORY_AWARE = [name for name in FACTORIES if not name.startswith("popularity")]


def fitted(name: str) -> Scorer:
    catalog, frame = checkerboard()
    return FACTORIES[name]().fit(frame, catalog)


def new_users(catalog: ItemCatalog) -> Histories:
    """Users absent from fit: one with A items, one with B items, one with no history."""
    items = [
        catalog.indices(["i0", "i1", "i2"]),
        catalog.indices(["i12", "i15"]),
        np.zeros(0, dtype=np.int64),
    ]
    return Histories(
        ["new_a", "new_b", "new_empty"], items, [np.arange(len(i), dtype=np.int64) for i in items]
    )


@pytest.fixture(params=list(FACTORIES))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_scores_are_float32_users_by_items(name: str) -> None:
    catalog, _ = checkerboard()
    scores = fitted(name).score(new_users(catalog))
    assert scores.shape == (3, len(catalog))
    assert scores.dtype == np.float32
    assert not np.isnan(scores).any()


def test_fitting_twice_gives_identical_scores(name: str) -> None:
    catalog, _ = checkerboard()
    first, second = fitted(name), fitted(name)
    np.testing.assert_array_equal(first.score(new_users(catalog)), second.score(new_users(catalog)))


def test_save_and_load_give_identical_scores(name: str, tmp_path: Path) -> None:
    catalog, _ = checkerboard()
    scorer = fitted(name)
    scorer.save(tmp_path / name)
    loaded = load_scorer(tmp_path / name)
    assert type(loaded) is type(scorer)
    assert loaded.params() == scorer.params()
    np.testing.assert_array_equal(loaded.score(new_users(catalog)), scorer.score(new_users(catalog)))
    assert type(scorer).load(tmp_path / name).params() == scorer.params()


def test_unfitted_scorer_refuses_to_score_or_save(name: str, tmp_path: Path) -> None:
    catalog, interactions = checkerboard()
    with pytest.raises(NotFittedError):
        FACTORIES[name]().score(new_users(catalog))
    with pytest.raises(NotFittedError):
        FACTORIES[name]().save(tmp_path)
    with pytest.raises(NotFittedError):
        FACTORIES[name]().fitted_items()
    assert FACTORIES[name]().fit(interactions, catalog).fitted_items() == len(catalog)


def test_history_with_unknown_item_index_is_rejected(name: str) -> None:
    bad = Histories(["u"], [np.asarray([25])], [np.asarray([0])])
    with pytest.raises(ValueError, match=r"outside 0\.\.19"):
        fitted(name).score(bad)


@pytest.mark.parametrize("name", HISTORY_AWARE)
def test_new_user_gets_items_from_their_own_group(name: str) -> None:
    catalog, _ = checkerboard()
    users = new_users(catalog)
    scores = fitted(name).score(users)
    for row, group in ((0, GROUP_A), (1, GROUP_B)):
        scores[row, users.items[row]] = -np.inf  # the caller's job: mask seen items
        best = catalog.ids[int(np.argmax(scores[row]))]
        assert best in group, f"{name}: {users.user_ids[row]} got {best}"


def test_popularity_ranks_by_event_counts_whatever_the_history() -> None:
    catalog, frame = checkerboard()
    counts = np.bincount(catalog.with_index(frame)["item_idx"].to_numpy(), minlength=len(catalog))
    scores = fitted("popularity").score(new_users(catalog))
    np.testing.assert_array_equal(scores[0], counts.astype(np.float32))
    np.testing.assert_array_equal(scores[0], scores[2])


def test_recent_popularity_counts_only_the_window_and_breaks_ties_by_all_time() -> None:
    events = pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5", "u6"],
            "item_id": ["old", "old", "old", "new", "tie", "tie"],
            "ts": [0, 0, 0, 100 * DAY, 99 * DAY, 10 * DAY],
        }
    )
    catalog = ItemCatalog(np.asarray(["old", "new", "tie"], dtype=object))
    empty = Histories(["x"], [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)])
    recent = PopularityScorer(days=30).fit(events, catalog).score(empty)[0]
    # in the last 30 days: new 1, tie 1 (all-time 2), old 0 (all-time 3)
    assert list(np.argsort(-recent)) == [2, 1, 0]
    all_time = PopularityScorer().fit(events, catalog).score(empty)[0]
    assert list(np.argsort(-all_time)) == [0, 2, 1]


def test_ease_scores_only_the_most_popular_items_when_capped() -> None:
    catalog, frame = checkerboard()
    scorer = EASEScorer(lambda_=10.0, max_items=5).fit(frame, catalog)
    scores = scorer.score(new_users(catalog))
    modelled = np.isfinite(scores[0])
    assert modelled.sum() == 5
    counts = np.bincount(catalog.with_index(frame)["item_idx"].to_numpy(), minlength=len(catalog))
    assert counts[modelled].min() >= counts[~modelled].max()


def test_ease_weights_match_the_closed_form() -> None:
    catalog, frame = checkerboard()
    scorer = EASEScorer(lambda_=10.0).fit(frame, catalog)
    x = interaction_matrix(frame, catalog).toarray().astype(np.float64)
    used = np.flatnonzero(x.sum(axis=0))  # items nobody read are not modelled
    x = x[:, used]
    precision = np.linalg.inv(x.T @ x + 10.0 * np.eye(len(used)))
    expected = np.eye(len(used)) - precision / np.diag(precision)
    assert scorer.weights is not None and scorer.model_items is not None
    np.testing.assert_array_equal(scorer.model_items, used)
    np.testing.assert_allclose(scorer.weights, expected, atol=1e-4)
    assert np.all(np.diag(scorer.weights) == 0)


def test_ease_gram_summed_over_user_chunks_is_the_whole_product() -> None:
    rng = np.random.default_rng(3)
    x = sp.random(230, 40, density=0.2, format="csr", dtype=np.float32, random_state=rng)
    x.data[:] = 1.0
    np.testing.assert_array_equal(dense_gram(x, chunk_users=17), (x.T @ x).toarray())


def test_ease_inverse_in_place_matches_numpy_across_mirror_blocks() -> None:
    rng = np.random.default_rng(4)
    a = rng.standard_normal((70, 70))
    spd = (a @ a.T + 70 * np.eye(70)).astype(np.float32)
    expected = np.linalg.inv(spd.astype(np.float64))
    matrix = spd.copy()
    inverse = symmetric_inverse(matrix)
    assert inverse is matrix  # no second matrix
    np.testing.assert_allclose(inverse, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(inverse, inverse.T)
    mirrored = np.tril(spd) + np.tril(spd, -1).T
    mirror_lower(lower := np.tril(spd), block=16)
    np.testing.assert_array_equal(lower, mirrored)


def test_ease_inverse_refuses_a_matrix_that_is_not_positive_definite() -> None:
    with pytest.raises(np.linalg.LinAlgError):
        symmetric_inverse(-np.eye(5, dtype=np.float32))


def test_ease_scores_histories_as_the_closed_form_product_even_after_a_refit() -> None:
    """Scores are the history rows of B summed over model items (items outside the model add nothing);
    a refit with other model items scores with the new ones."""
    catalog, frame = checkerboard()
    scorer = EASEScorer(lambda_=10.0, max_items=5)
    histories = Histories.from_interactions(frame, catalog)
    for max_items in (5, 3):
        scorer.max_items = max_items
        scorer.fit(frame, catalog)
        assert scorer.model_items is not None and scorer.weights is not None
        scores = scorer.score(histories)
        for row, items in enumerate(histories.items):
            modelled = np.isin(scorer.model_items, items).astype(np.float32)
            np.testing.assert_allclose(
                scores[row, scorer.model_items], modelled @ scorer.weights, rtol=1e-5, atol=1e-6
            )
            assert np.isinf(np.delete(scores[row], scorer.model_items)).all()


def test_itemknn_keeps_at_most_the_requested_neighbours() -> None:
    catalog, frame = checkerboard()
    scorer = ItemKNNScorer(neighbors=3, shrink=0.0).fit(frame, catalog)
    assert scorer.similarity is not None
    assert np.diff(scorer.similarity.indptr).max() <= 3
    assert scorer.similarity.diagonal().sum() == 0
    assert scorer.similarity.max() <= 1.0 + 1e-6


def test_text_similarity_needs_vectors_matching_the_catalog() -> None:
    catalog, frame = checkerboard()
    with pytest.raises(ValueError, match="needs item_vectors"):
        TextSimilarityScorer().fit(frame, catalog)
    with pytest.raises(ValueError, match="19 rows but the catalog has 20"):
        TextSimilarityScorer(group_vectors()[:19]).fit(frame, catalog)


def test_text_similarity_weights_recent_items_more() -> None:
    vectors = np.eye(3, dtype=np.float32)
    catalog = ItemCatalog(np.asarray(["x", "y", "z"], dtype=object))
    scorer = TextSimilarityScorer(vectors, half_life_events=1.0).fit(pl.DataFrame(), catalog)
    history = Histories(["u"], [np.asarray([0, 1])], [np.asarray([0, 1])])
    np.testing.assert_allclose(scorer.score(history)[0], [1 / 3, 2 / 3, 0.0], rtol=1e-6)


def test_category_scores_taste_times_the_items_share_of_its_category() -> None:
    catalog = ItemCatalog(np.asarray(["a1", "a2", "b1", "b2", "none"], dtype=object))
    events = pl.DataFrame({"item_id": ["a1", "a1", "a1", "a2", "b1", "b2", "none"]})
    scorer = CategoryScorer([0, 0, 1, 1, NO_CATEGORY], half_life_days=None).fit(events, catalog)
    history = Histories(["u"], [catalog.indices(["a1", "b1", "b1", "none"])], [np.arange(4)])
    # taste: a 1/4, b 2/4 (the uncategorised event counts in the whole); shares: a1 3/4, a2 1/4, b 1/2
    np.testing.assert_allclose(scorer.score(history)[0], [3 / 16, 1 / 16, 1 / 4, 1 / 4, -np.inf])


def test_category_shares_weigh_each_event_by_its_recency() -> None:
    """a1 sold three times four weeks before the last event, a2 once on the last day: all time, a1
    sells best; with a 7-day half-life a2 does (its weight 1 against a1's 3 x 1/16)."""
    catalog = ItemCatalog(np.asarray(["a1", "a2"], dtype=object))
    day = 86_400
    events = pl.DataFrame({"item_id": ["a1", "a1", "a1", "a2"], "ts": [0, 0, 0, 28 * day]})
    history = Histories(["u"], [catalog.indices(["a1"])], [np.arange(1)])
    all_time = CategoryScorer([0, 0], half_life_days=None).fit(events, catalog).score(history)[0]
    recent = CategoryScorer([0, 0], half_life_days=7.0).fit(events, catalog).score(history)[0]
    np.testing.assert_allclose(all_time, [3 / 4, 1 / 4])
    np.testing.assert_allclose(recent, [3 / 19, 16 / 19], rtol=1e-6)
    with pytest.raises(ValueError, match="half_life_days"):
        CategoryScorer([0, 0], half_life_days=0.0)


def test_category_taste_can_weigh_the_users_latest_events_most() -> None:
    """Three old events in category a, then one in b: counted alike the user is into a (3/4); over a
    one-event half-life into b (weights 1/8, 1/4, 1/2 against 1: b's share 8/15)."""
    catalog = ItemCatalog(np.asarray(["a1", "a2", "b1", "b2"], dtype=object))
    events = pl.DataFrame({"item_id": ["a1", "a2", "b1", "b2"], "ts": [0, 0, 0, 0]})
    history = Histories(["u"], [catalog.indices(["a1", "a1", "a1", "b1"])], [np.arange(4)])
    alike = CategoryScorer([0, 0, 1, 1], half_life_days=None).fit(events, catalog).score(history)[0]
    recent = CategoryScorer([0, 0, 1, 1], None, taste_half_life_events=1.0).fit(events, catalog)
    np.testing.assert_allclose(alike, [3 / 8, 3 / 8, 1 / 8, 1 / 8])
    np.testing.assert_allclose(recent.score(history)[0], [7 / 30, 7 / 30, 8 / 30, 8 / 30], rtol=1e-6)
    assert recent.params()["taste_half_life_events"] == 1.0
    with pytest.raises(ValueError, match="taste_half_life_events"):
        CategoryScorer([0, 0], taste_half_life_events=0.0)


def test_category_never_offers_items_of_untouched_categories_or_without_events() -> None:
    catalog = ItemCatalog(np.asarray(["a1", "a2", "b1"], dtype=object))
    scorer = CategoryScorer([0, 0, 1]).fit(pl.DataFrame({"item_id": ["a1", "b1"], "ts": [0, 0]}), catalog)
    history = Histories(["u"], [catalog.indices(["a1"])], [np.arange(1)])
    indices, _ = scorer.top_k(history, 3, exclude_seen=False)
    assert indices.tolist() == [[0, -1, -1]]


def test_category_of_a_catalog_without_categories_offers_nothing() -> None:
    catalog = ItemCatalog(np.asarray(["a", "b"], dtype=object))
    events = pl.DataFrame({"item_id": ["a", "b"], "ts": [0, 0]})
    scorer = CategoryScorer([NO_CATEGORY, NO_CATEGORY]).fit(events, catalog)
    history = Histories(["u"], [catalog.indices(["a"])], [np.arange(1)])
    assert scorer.top_k(history, 2, exclude_seen=False)[0].tolist() == [[-1, -1]]


def test_category_codes_take_each_items_first_category_in_catalog_order() -> None:
    catalog = ItemCatalog(np.asarray(["x", "y", "z", "w"], dtype=object))
    items = pl.DataFrame(
        {"item_id": ["w", "z", "y", "x"], "categories": [[], ["shoes", "red"], ["hats"], ["shoes"]]}
    )
    assert category_codes(items, catalog).tolist() == [1, 0, 1, NO_CATEGORY]
    assert category_codes(items.drop("categories"), catalog).tolist() == [NO_CATEGORY] * 4


def test_category_needs_codes_matching_the_catalog() -> None:
    catalog, frame = checkerboard()
    with pytest.raises(ValueError, match="needs item_categories"):
        CategoryScorer().fit(frame, catalog)
    with pytest.raises(ValueError, match="19 codes but the catalog has 20"):
        CategoryScorer(np.zeros(19, dtype=np.int64)).fit(frame, catalog)


def reference_top_k(scores: np.ndarray, histories: Histories, k: int, exclude_seen: bool) -> np.ndarray:
    """Each row fully sorted (score descending, then item index), seen and -inf items dropped."""
    top = np.full((len(histories), k), -1, dtype=np.int64)
    for row, seen in enumerate(histories.items):
        row_scores = scores[row].copy()
        if exclude_seen:
            row_scores[seen] = -np.inf
        order = np.lexsort((np.arange(len(row_scores)), -row_scores))
        order = order[row_scores[order] > -np.inf][:k]
        top[row, : len(order)] = order
    return top


@pytest.mark.parametrize("k", [1, 3, 7, 25])
@pytest.mark.parametrize("exclude_seen", [True, False])
def test_top_k_is_the_full_sort_of_the_scores(name: str, k: int, exclude_seen: bool) -> None:
    """Scorers that skip the dense matrix (popularity, co-visitation, EASE) answer what it would:
    the same items, the same order, ties to the smaller item index, in batches of any size."""
    catalog, _ = checkerboard()
    scorer = fitted(name)
    users = Histories(
        [*new_users(catalog).user_ids, "heavy"],
        [*new_users(catalog).items, catalog.indices(GROUP_A[:8] + GROUP_B[:2])],
        [*new_users(catalog).timestamps, np.arange(10, dtype=np.int64)],
    )
    expected = reference_top_k(scorer.score(users), users, k, exclude_seen)
    for max_batch_cells in (1, 10**6):
        indices, values = scorer.top_k(users, k, exclude_seen, max_batch_cells)
        np.testing.assert_array_equal(indices, expected)
        scores = scorer.score(users)
        for row in range(len(users)):
            found = indices[row] >= 0
            # (BLAS sums of a one-user batch may differ from the whole batch's in the last bit)
            np.testing.assert_allclose(
                values[row][found], scores[row, indices[row][found]], rtol=1e-5, atol=1e-6
            )
            assert np.isneginf(values[row][~found]).all()
