"""The bundled MiniLM exported to ONNX (fp32, int8): agreement with torch, backend choice, query encoder."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from recsys.config import EmbeddingsConfig
from recsys.data.demo import DemoSpec, generate_demo
from recsys.embeddings import (
    QueryEncoder,
    encode_items,
    encode_texts,
    load_query_encoder,
    measure_agreement,
    select_encoder,
)
from recsys.encoder import item_texts, load_encoder
from recsys.encoder.onnx_export import FILES, META_FILE, OnnxEncoder, export_onnx, has_variant

TEXTS = [
    "A jazz trio plays late into the night in a smoky club.",
    "Astronomers track a comet as it swings past the sun.",
    "A family recipe for slow-cooked tomato sauce.",
    "Two rival chess players meet again after twenty years.",
    "jazz",
    "The storm knocked out power across the coastal town, and the rescue teams worked through the night.",
]
SEQ = 64


@pytest.fixture(scope="session")
def model():  # type: ignore[no-untyped-def]
    return load_encoder("all-MiniLM-L6-v2", "cpu")


@pytest.fixture(scope="session")
def onnx_dir(model, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """One export (fp32 + int8) for the whole session."""
    return export_onnx(model, tmp_path_factory.mktemp("export") / "onnx", max_seq_length=SEQ)


@pytest.fixture(scope="module")
def items() -> pl.DataFrame:
    return generate_demo(DemoSpec(users=10, items=40, events=100, topics=4, seed=5))[0]


@pytest.fixture(scope="module")
def catalog_texts(items: pl.DataFrame) -> list[str]:
    return item_texts(items, "{title}. {text}")


def fp32_torch(model, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    config = EmbeddingsConfig(backend="torch", cpu_bf16=False, device="cpu", max_seq_length=SEQ)
    return encode_texts(model, texts, config, show_progress=False)


def test_export_writes_both_variants_and_a_self_describing_folder(onnx_dir: Path) -> None:
    assert {p.name for p in onnx_dir.iterdir()} == {*FILES.values(), META_FILE, "tokenizer.json"}
    meta = json.loads((onnx_dir / META_FILE).read_text())
    assert meta["dim"] == 384 and meta["max_seq_length"] == SEQ and meta["inputs"][0] == "input_ids"
    assert has_variant(onnx_dir, "onnx") and has_variant(onnx_dir, "onnx-int8")
    assert not has_variant(onnx_dir.parent / "nothing-here", "onnx")
    # int8 MatMul weights (the embedding table stays fp32)
    assert (onnx_dir / FILES["onnx-int8"]).stat().st_size < 0.7 * (onnx_dir / FILES["onnx"]).stat().st_size


def test_export_rejects_unknown_variants(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="subset"):
        export_onnx(model, tmp_path / "onnx", SEQ, variants=["onnx-int4"])  # type: ignore[list-item]
    assert not (tmp_path / "onnx").exists()


@pytest.mark.parametrize(
    ("variant", "mean_at_least", "min_at_least"), [("onnx", 0.9999, 0.9999), ("onnx-int8", 0.99, 0.97)]
)
def test_onnx_encodings_agree_with_fp32_torch(  # type: ignore[no-untyped-def]
    model, onnx_dir: Path, variant: str, mean_at_least: float, min_at_least: float
) -> None:
    encoder = OnnxEncoder(onnx_dir, variant, SEQ)  # type: ignore[arg-type]
    config = EmbeddingsConfig(backend=variant, max_seq_length=SEQ, token_budget=256)  # type: ignore[arg-type]
    got = encode_texts(encoder, [*TEXTS, TEXTS[0]], config, show_progress=False)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(got[0], got[-1])  # duplicates encoded once
    cosine = (got[: len(TEXTS)] * fp32_torch(model, TEXTS)).sum(axis=1)
    assert cosine.mean() >= mean_at_least and cosine.min() >= min_at_least, cosine


def test_onnx_encoder_must_truncate_like_the_config(onnx_dir: Path) -> None:
    encoder = OnnxEncoder(onnx_dir, "onnx-int8", SEQ)
    with pytest.raises(ValueError, match="max_seq_length is 128"):
        encode_texts(encoder, TEXTS, EmbeddingsConfig(max_seq_length=128), show_progress=False)
    with pytest.raises(FileNotFoundError, match="no ONNX export"):
        OnnxEncoder(onnx_dir.parent, "onnx")


def test_measure_agreement_on_a_sample(model, onnx_dir: Path, catalog_texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    config = EmbeddingsConfig(backend="onnx-int8", max_seq_length=SEQ, agreement_sample=12)
    agreement = measure_agreement(model, OnnxEncoder(onnx_dir, "onnx-int8", SEQ), catalog_texts, config)
    assert agreement.n == 12 and 0.97 <= agreement.min <= agreement.mean <= 1.0
    assert agreement.mean >= 0.99


def test_backend_is_chosen_by_config(  # type: ignore[no-untyped-def]
    model, onnx_dir: Path, items: pl.DataFrame, catalog_texts: list[str]
) -> None:
    def choose(**overrides: object):  # type: ignore[no-untyped-def]
        config = EmbeddingsConfig(device="cpu", max_seq_length=SEQ, agreement_sample=8, **overrides)  # type: ignore[arg-type]
        return select_encoder(model, onnx_dir, config, catalog_texts)

    torch_choice = choose(backend="torch")
    assert torch_choice.encoder is model and torch_choice.to_json()["backend"] == "torch"
    for backend in ("onnx", "onnx-int8"):
        choice = choose(backend=backend)
        assert isinstance(choice.encoder, OnnxEncoder) and choice.encoder.backend == backend
        recorded = choice.to_json()
        assert recorded["backend"] == recorded["requested"] == backend
        assert recorded["agreement"]["mean"] >= 0.99 and recorded["agreement"]["n"] == 8
    # an int8 encoder never matches fp32 exactly: demanding it falls back to torch, the measurement kept
    strict = choose(backend="onnx-int8", min_agreement=1.0)
    assert strict.encoder is model and strict.backend == "torch" and strict.requested == "onnx-int8"
    assert strict.agreement is not None and "min_agreement" in strict.reason
    int8 = choose(backend="onnx-int8")
    config = EmbeddingsConfig(backend="onnx-int8", max_seq_length=SEQ)
    embeddings = encode_items(int8.encoder, items, config, show_progress=False)
    assert embeddings.ids.tolist() == items["item_id"].to_list()
    assert (embeddings.vectors * fp32_torch(model, catalog_texts)).sum(axis=1).mean() >= 0.99
    missing = select_encoder(model, None, EmbeddingsConfig(device="cpu", backend="onnx"), catalog_texts)
    assert missing.backend == "torch" and missing.reason == "no onnx export"
    with pytest.raises(ValidationError, match="backend"):
        EmbeddingsConfig(backend="tensorrt")  # type: ignore[arg-type]


def test_query_cache_is_bounded_and_least_recently_used(onnx_dir: Path) -> None:
    config = EmbeddingsConfig(max_seq_length=SEQ, query_cache_size=3)
    queries = QueryEncoder(OnnxEncoder(onnx_dir, "onnx-int8", SEQ), config)
    first = queries.encode(TEXTS[0])
    assert first.shape == (384,) and not first.flags.writeable
    assert queries.encode(TEXTS[0]) is first
    for text in TEXTS[1:4]:  # TEXTS[0] is now the least recently used of four: dropped
        queries.encode(text)
    assert queries.cache_info() == {"hits": 1, "misses": 4, "size": 3, "maxsize": 3}
    again = queries.encode(TEXTS[0])
    assert again is not first and queries.cache_info()["misses"] == 5
    np.testing.assert_array_equal(again, first)
    uncached = QueryEncoder(queries.encoder, config.model_copy(update={"query_cache_size": 0}))
    uncached.encode(TEXTS[0])
    uncached.encode(TEXTS[0])
    assert uncached.cache_info() == {"hits": 0, "misses": 2, "size": 0, "maxsize": 0}


@pytest.mark.parametrize("cache_size", [0, 4])
def test_concurrent_queries_from_threads_give_identical_vectors(onnx_dir: Path, cache_size: int) -> None:
    config = EmbeddingsConfig(max_seq_length=SEQ, query_cache_size=cache_size)
    expected = {text: OnnxEncoder(onnx_dir, "onnx-int8", SEQ).encode_batch([text])[0] for text in TEXTS}
    queries = QueryEncoder(OnnxEncoder(onnx_dir, "onnx-int8", SEQ), config)
    asked = [TEXTS[i % len(TEXTS)] for i in range(96)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(queries.encode, asked))
    for text, vector in zip(asked, got, strict=True):
        np.testing.assert_array_equal(vector, expected[text])
    info = queries.cache_info()
    assert info["hits"] + info["misses"] == len(asked) and info["size"] <= cache_size


def test_load_query_encoder_follows_the_backend(model, onnx_dir: Path) -> None:  # type: ignore[no-untyped-def]
    model_dir = "all-MiniLM-L6-v2"
    config = EmbeddingsConfig(device="cpu", max_seq_length=SEQ, cpu_bf16=False)
    assert load_query_encoder(model_dir, onnx_dir, config).backend == "onnx-int8"
    assert load_query_encoder(model_dir, onnx_dir, config, backend="onnx").backend == "onnx"
    torch_queries = load_query_encoder(model_dir, onnx_dir, config, backend="torch")
    assert torch_queries.backend == "torch"
    np.testing.assert_allclose(torch_queries.encode(TEXTS[1]), fp32_torch(model, [TEXTS[1]])[0], atol=1e-5)
    assert load_query_encoder(model_dir, None, config).backend == "torch"  # no export: torch
    with pytest.raises(ValueError, match="backend must be"):
        load_query_encoder(model_dir, onnx_dir, config, backend="int4")


def test_export_of_int8_alone_keeps_only_what_it_names(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What the pipeline does with the default backend: only the int8 model travels with the run."""
    folder = export_onnx(model, tmp_path / "onnx", SEQ, variants=("onnx-int8",))
    assert has_variant(folder, "onnx-int8") and not has_variant(folder, "onnx")
    assert not (folder / FILES["onnx"]).exists()
    vectors = OnnxEncoder(folder, "onnx-int8", SEQ).encode_batch(TEXTS)
    assert float((vectors * fp32_torch(model, TEXTS)).sum(axis=1).mean()) > 0.98
