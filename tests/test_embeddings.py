"""Catalog embeddings against the real (bundled) MiniLM on a tiny demo catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.catalog import Histories, ItemCatalog
from recsys.config import EmbeddingsConfig, EncoderConfig
from recsys.data.demo import DemoSpec, generate_demo
from recsys.device import cpu_has_fast_bf16
from recsys.embeddings import (
    ItemEmbeddings,
    _token_batches,
    encode_items,
    encode_texts,
    encode_with_cache,
    user_vectors_from_context,
    user_vectors_from_history,
)
from recsys.encoder import item_texts, load_encoder


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return load_encoder("all-MiniLM-L6-v2", "cpu")


@pytest.fixture(scope="module")
def items() -> pl.DataFrame:
    return generate_demo(DemoSpec(users=20, items=40, events=200, topics=4, seed=5))[0]


def test_save_load_roundtrip_without_pickle(tmp_path: Path) -> None:
    emb = ItemEmbeddings(np.asarray(["a", "bb"], dtype=object), np.eye(2, 3, dtype=np.float32))
    emb.save(tmp_path / "e.npz")
    loaded = ItemEmbeddings.load(tmp_path / "e.npz")
    assert loaded.ids.tolist() == ["a", "bb"] and loaded.vectors.dtype == np.float32
    np.testing.assert_array_equal(loaded.vectors, emb.vectors)
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="missing"):
        ItemEmbeddings.load(tmp_path / "other.npz")


def test_aligned_to_reorders_and_names_missing_items() -> None:
    emb = ItemEmbeddings(np.asarray(["b", "a"], dtype=object), np.asarray([[0, 1], [1, 0]], dtype=np.float32))
    catalog = ItemCatalog(np.asarray(["a", "b"], dtype=object))
    np.testing.assert_array_equal(emb.aligned_to(catalog), [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="have no embedding"):
        emb.aligned_to(ItemCatalog(np.asarray(["a", "c"], dtype=object)))


def test_token_batches_respect_the_budget_and_cover_everything() -> None:
    lengths = np.asarray([5, 50, 10, 50, 3, 20])
    batches = list(_token_batches(lengths, token_budget=100, max_batch=4))
    assert sorted(np.concatenate(batches).tolist()) == list(range(6))
    assert all(len(b) * lengths[b].max() <= 100 for b in batches)
    assert lengths[batches[0]].tolist() == [50, 50]


def test_encode_items_matches_plain_encode(model, items: pl.DataFrame) -> None:  # type: ignore[no-untyped-def]
    config = EmbeddingsConfig(max_seq_length=128, token_budget=2048)
    emb = encode_items(model, items, config, show_progress=False)
    assert emb.ids.tolist() == items["item_id"].to_list()
    assert emb.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    model.max_seq_length = 128
    plain = model.encode(item_texts(items, config.template), normalize_embeddings=True)
    cosine = (emb.vectors * plain).sum(axis=1)
    assert cosine.min() >= 0.99  # holds in fp32 and in bf16 (checked against fp32 on a sample at run time)


@pytest.mark.skipif(not cpu_has_fast_bf16(), reason="CPU without native bf16")
def test_bf16_on_cpu_stays_within_cosine_099_of_fp32(model, items: pl.DataFrame) -> None:  # type: ignore[no-untyped-def]
    texts = item_texts(items, "{title}. {text}")
    fast = encode_texts(model, texts, EmbeddingsConfig(cpu_bf16=True), show_progress=False)
    exact = encode_texts(model, texts, EmbeddingsConfig(cpu_bf16=False), show_progress=False)
    cosine = (fast * exact).sum(axis=1)
    assert cosine.min() >= 0.99
    assert not np.array_equal(fast, exact), "bf16 was not used"


def test_identical_texts_get_identical_vectors(model) -> None:  # type: ignore[no-untyped-def]
    vectors = encode_texts(
        model, ["jazz club", "a comet", "jazz club"], EmbeddingsConfig(cpu_bf16=False), show_progress=False
    )
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert float(vectors[0] @ vectors[1]) < 0.9


def test_history_vectors_weigh_recent_items_more() -> None:
    item_vectors = np.asarray([[1, 0], [0, 1]], dtype=np.float32)
    histories = Histories(
        ["u", "v", "empty"], [np.asarray([0, 1]), np.asarray([1, 1, 0]), np.zeros(0, np.int64)], []
    )
    vectors = user_vectors_from_history(item_vectors, histories, half_life_events=1.0)
    # u: weights 0.5 (old item 0), 1.0 (item 1) -> direction (0.5, 1) normalized
    np.testing.assert_allclose(vectors[0], np.asarray([0.5, 1.0]) / np.linalg.norm([0.5, 1.0]), rtol=1e-6)
    assert vectors[1][0] > vectors[1][1]  # v's latest item is 0
    np.testing.assert_array_equal(vectors[2], [0, 0])


def test_context_vectors_encode_the_users_recent_titles(model, items: pl.DataFrame) -> None:  # type: ignore[no-untyped-def]
    histories = Histories(["u", "empty"], [np.asarray([0, 1, 2]), np.zeros(0, np.int64)], [])
    config = EncoderConfig(context_items=2)
    vectors = user_vectors_from_context(model, items, histories, config, EmbeddingsConfig(cpu_bf16=False))
    titles = items["title"].to_list()
    expected = model.encode(f"{titles[2]} | {titles[1]}", normalize_embeddings=True)
    assert float(vectors[0] @ expected) > 0.999
    np.testing.assert_array_equal(vectors[1], 0)


def test_encode_with_cache_encodes_only_texts_it_has_not_seen(tmp_path: Path) -> None:
    asked: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        asked.append(texts)
        return np.asarray([[len(text), text.count("a")] for text in texts], dtype=np.float32)

    cache = tmp_path / "texts.npz"
    first = encode_with_cache(["apple", "banana", "apple"], cache, encode)
    np.testing.assert_array_equal(first, [[5, 1], [6, 3], [5, 1]])
    assert asked == [["apple", "banana"]]  # identical texts once

    asked.clear()
    second = encode_with_cache(["banana", "cherry", "apple"], cache, encode)
    np.testing.assert_array_equal(second, [[6, 3], [6, 0], [5, 1]])
    assert asked == [["cherry"]]  # only the new text

    asked.clear()
    encode_with_cache(["cherry"], cache, encode)
    assert asked == []
    with np.load(cache, allow_pickle=False) as stored:  # the cache holds exactly the last texts
        assert len(stored["digests"]) == 1
