"""Catalog embeddings: every item's text encoded once into an L2-normalized float32 matrix.

Faster than a plain ``SentenceTransformer.encode`` loop on the same texts because it
(1) encodes each distinct text once, (2) sorts the whole catalog by *token* length and
packs batches to a padded-token budget, so short texts share big batches and nothing is
padded far, and (3) runs in half precision where the hardware has it: fp16 on GPU, bf16
autocast on CPUs with native bf16 — the latter kept only after checking cosine >= 0.99
against fp32 on a sample. On CPUs ``embeddings.backend`` can instead pick the ONNX export of the
encoder in fp32 or int8 (``recsys.encoder.onnx_export``); ``select_encoder`` measures its agreement
with fp32 torch on a sample and keeps torch when it falls short, and the run records both.
(torch's own dynamic int8 quantization of the Linear layers measured cosine 0.87 min / 0.93 mean
against fp32 on MiniLM, so it is not offered; onnxruntime's per-channel int8 measures 0.99 mean.)

Text queries at serving go through ``QueryEncoder``: the same encoder behind a bounded LRU cache of
recent query vectors, safe to call from many threads.

User vectors come in two kinds (``RetrievalConfig.user_vector``): ``history_mean`` is the
recency-weighted mean of the user's item vectors; ``context_text`` encodes the user's
context text the way the encoder saw it in training.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np
import polars as pl
from cachetools import LRUCache

from recsys.artifacts import atomic_path
from recsys.catalog import Histories, ItemCatalog
from recsys.config import EmbeddingsConfig, EncoderConfig
from recsys.console import progress
from recsys.device import cpu_has_fast_bf16, resolve_device
from recsys.encoder.model import load_encoder
from recsys.encoder.onnx_export import VARIANTS, OnnxEncoder, OnnxVariant, has_variant
from recsys.encoder.text import context_texts, item_context_parts, item_texts

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

TextEncoder: TypeAlias = "SentenceTransformer | OnnxEncoder"

log = logging.getLogger(__name__)

MIN_COSINE = 0.99
"""Lowest cosine to fp32 a reduced-precision encoding may have on the check sample."""
CHECK_SAMPLE = 16


@dataclass(frozen=True)
class ItemEmbeddings:
    ids: np.ndarray
    """Item ids (object array of str), row order of ``vectors``."""
    vectors: np.ndarray
    """float32 [n, dim], rows L2-normalized."""

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.ids) != len(self.vectors):
            raise ValueError(f"ids ({len(self.ids)}) and vectors {self.vectors.shape} do not match")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            np.savez(handle, ids=np.asarray(self.ids, dtype=str), vectors=self.vectors)

    @classmethod
    def load(cls, path: str | Path) -> ItemEmbeddings:
        with np.load(path, allow_pickle=False) as data:
            missing = {"ids", "vectors"} - set(data.files)
            if missing:
                raise ValueError(f"{path}: not an item-embeddings file (missing {sorted(missing)})")
            return cls(data["ids"].astype(object), data["vectors"].astype(np.float32, copy=False))

    def aligned_to(self, catalog: ItemCatalog) -> np.ndarray:
        """Vectors in ``catalog`` order; an item without a vector is an error naming it."""
        if len(self.ids) == len(catalog) and np.array_equal(self.ids, catalog.ids):
            return self.vectors
        row = {item_id: i for i, item_id in enumerate(self.ids)}
        missing = [item_id for item_id in catalog.ids if item_id not in row]
        if missing:
            raise ValueError(
                f"{len(missing)} catalog items have no embedding (e.g. {missing[:3]}); re-run embed"
            )
        return self.vectors[np.asarray([row[item_id] for item_id in catalog.ids], dtype=np.int64)]


def _token_batches(lengths: np.ndarray, token_budget: int, max_batch: int) -> Iterator[np.ndarray]:
    """Indices sorted by descending length, cut so that rows x longest length stays within the budget."""
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(max_batch, token_budget // longest))
        yield order[start : start + size]
        start += size


def _precision(device: str, config: EmbeddingsConfig) -> str:
    if device == "cuda":
        return "fp16"
    return "bf16" if config.cpu_bf16 and cpu_has_fast_bf16() else "fp32"


def _encode_sorted(
    run: Callable[[np.ndarray], np.ndarray],
    lengths: np.ndarray,
    dim: int,
    config: EmbeddingsConfig,
    label: str,
    show_progress: bool,
) -> np.ndarray:
    out = np.zeros((len(lengths), dim), dtype=np.float32)
    with progress() as bar:
        task = bar.add_task(label, total=len(lengths), visible=show_progress)
        for rows in _token_batches(lengths, config.token_budget, config.batch_size * 4):
            out[rows] = run(rows)
            bar.advance(task, len(rows))
    return out


def _encode_unique_onnx(
    model: OnnxEncoder, texts: list[str], config: EmbeddingsConfig, description: str, show_progress: bool
) -> np.ndarray:
    if model.max_seq_length != config.max_seq_length:
        raise ValueError(
            f"ONNX encoder truncates at {model.max_seq_length} tokens but embeddings.max_seq_length is "
            f"{config.max_seq_length}; load it with the config's length"
        )
    return _encode_sorted(
        lambda rows: model.encode_batch([texts[i] for i in rows]),
        model.token_lengths(texts),
        model.dim,
        config,
        f"{description} (cpu, {model.backend})",
        show_progress,
    )


def _encode_unique_torch(
    model: SentenceTransformer,
    texts: list[str],
    config: EmbeddingsConfig,
    description: str,
    show_progress: bool,
) -> np.ndarray:
    import torch

    from recsys.encoder.train import autocast

    device = resolve_device(config.device)
    model.to(device)
    model.eval()
    lengths = np.asarray(
        [
            min(len(ids), config.max_seq_length)
            for ids in model.tokenizer(
                texts, add_special_tokens=True, truncation=True, max_length=config.max_seq_length
            )["input_ids"]
        ]
    )
    precision = _precision(device, config)
    previous_max = model.max_seq_length
    model.max_seq_length = config.max_seq_length

    def run(rows: np.ndarray, dtype_name: str) -> np.ndarray:
        features = model.preprocess([texts[i] for i in rows])
        features = {
            key: value.to(device) if isinstance(value, torch.Tensor) else value
            for key, value in features.items()
        }
        with autocast(device, dtype_name):
            vectors = model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(vectors.float(), dim=1).cpu().numpy()

    try:
        with torch.inference_mode():
            if precision != "fp32":
                sample = np.arange(min(CHECK_SAMPLE, len(texts)))
                cosine = (run(sample, "fp32") * run(sample, precision)).sum(axis=1)
                if float(cosine.min()) < MIN_COSINE:
                    precision = "fp32"
            return _encode_sorted(
                lambda rows: run(rows, precision),
                lengths,
                model.get_embedding_dimension() or 0,
                config,
                f"{description} ({device}, {precision})",
                show_progress,
            )
    finally:
        model.max_seq_length = previous_max


def encode_texts(
    model: TextEncoder,
    texts: Sequence[str],
    config: EmbeddingsConfig,
    description: str = "encoding",
    show_progress: bool = True,
) -> np.ndarray:
    """L2-normalized float32 [len(texts), dim]; identical texts are encoded once."""
    if not texts:
        dim = model.dim if isinstance(model, OnnxEncoder) else model.get_embedding_dimension() or 0
        return np.zeros((0, dim), dtype=np.float32)
    unique, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    encode = _encode_unique_onnx if isinstance(model, OnnxEncoder) else _encode_unique_torch
    out = encode(model, unique.tolist(), config, description, show_progress)  # type: ignore[arg-type]
    return out[inverse.reshape(-1)]


@dataclass(frozen=True)
class Agreement:
    """Cosine between an encoder's vectors and fp32 torch's on the same texts."""

    mean: float
    min: float
    n: int


def measure_agreement(
    reference: SentenceTransformer, candidate: TextEncoder, texts: Sequence[str], config: EmbeddingsConfig
) -> Agreement:
    """Cosine of ``candidate`` to ``reference`` in fp32 on CPU, on a seeded sample of distinct ``texts``."""
    distinct = sorted(set(texts))
    if not distinct:
        raise ValueError("agreement needs at least one text")
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(len(distinct), min(config.agreement_sample, len(distinct)), replace=False))
    sample = [distinct[i] for i in picked]
    fp32 = config.model_copy(update={"cpu_bf16": False, "device": "cpu"})
    expected = encode_texts(reference, sample, fp32, show_progress=False)
    cosine = (encode_texts(candidate, sample, config, show_progress=False) * expected).sum(axis=1)
    return Agreement(float(cosine.mean()), float(cosine.min()), len(sample))


@dataclass(frozen=True)
class EncoderChoice:
    """What encodes the catalog and the queries, and why; ``to_json`` is what the run records."""

    encoder: TextEncoder
    backend: str
    """torch, onnx or onnx-int8: the one used."""
    requested: str
    device: str
    agreement: Agreement | None
    """Measured for an ONNX backend (also when it was rejected); None for torch."""
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "requested": self.requested,
            "device": self.device,
            "agreement": None if self.agreement is None else vars(self.agreement),
            "reason": self.reason,
        }


def select_encoder(
    model: SentenceTransformer, onnx_dir: Path | None, config: EmbeddingsConfig, sample_texts: Sequence[str]
) -> EncoderChoice:
    """``config.backend`` on CPUs when its export exists and agrees with fp32 torch, else ``model``.

    ``sample_texts`` (e.g. the catalog's texts) are where agreement is measured.
    """
    device = resolve_device(config.device)

    def torch_choice(reason: str, agreement: Agreement | None = None) -> EncoderChoice:
        return EncoderChoice(model, "torch", config.backend, device, agreement, reason)

    if config.backend == "torch":
        return torch_choice("configured")
    if device == "cuda":
        return torch_choice("GPU present: torch fp16")
    if onnx_dir is None or not has_variant(onnx_dir, config.backend):
        log.warning("no %s export in %s: encoding with torch", config.backend, onnx_dir)
        return torch_choice(f"no {config.backend} export")
    candidate = OnnxEncoder(onnx_dir, config.backend, config.max_seq_length, config.onnx_threads)
    agreement = measure_agreement(model, candidate, sample_texts, config)
    if agreement.mean < config.min_agreement:
        log.warning(
            "%s agrees with fp32 torch at mean cosine %.4f < %.4f: encoding with torch",
            config.backend,
            agreement.mean,
            config.min_agreement,
        )
        return torch_choice(f"mean cosine {agreement.mean:.4f} < min_agreement", agreement)
    return EncoderChoice(candidate, config.backend, config.backend, device, agreement, "configured")


class QueryEncoder:
    """One text query to its vector, for the request path; safe to call from many threads at once.

    Vectors of recent queries are kept in a bounded LRU cache (``query_cache_size``; 0 disables it), as
    read-only arrays so no caller can change what the next one gets. An ONNX encoder runs concurrently
    (per-thread tokenizers); a torch model is serialized, since encoding sets its max_seq_length.
    """

    def __init__(self, encoder: TextEncoder, config: EmbeddingsConfig) -> None:
        self.encoder = encoder
        self.backend = encoder.backend if isinstance(encoder, OnnxEncoder) else "torch"
        self._config = config
        self._cache: LRUCache[str, np.ndarray] | None = (
            LRUCache(maxsize=config.query_cache_size) if config.query_cache_size > 0 else None
        )
        self._cache_lock = threading.Lock()
        self._torch_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _encode(self, text: str) -> np.ndarray:
        if isinstance(self.encoder, OnnxEncoder):
            return self.encoder.encode_batch([text])[0]
        with self._torch_lock:
            return encode_texts(self.encoder, [text], self._config, show_progress=False)[0]

    def encode(self, text: str) -> np.ndarray:
        """float32 [dim], L2-normalized, read-only."""
        if self._cache is not None:
            with self._cache_lock:
                cached = self._cache.get(text)
                if cached is not None:
                    self.hits += 1
                    return cached
        vector = self._encode(text)
        vector.setflags(write=False)
        with self._cache_lock:
            self.misses += 1
            if self._cache is not None:
                self._cache[text] = vector
        return vector

    def cache_info(self) -> dict[str, int]:
        """hits, misses, size and maxsize (0 without a cache), e.g. for metrics."""
        with self._cache_lock:
            size = 0 if self._cache is None else len(self._cache)
            return {
                "hits": self.hits,
                "misses": self.misses,
                "size": size,
                "maxsize": self._config.query_cache_size,
            }


def load_query_encoder(
    model_dir: str | Path, onnx_dir: str | Path | None, config: EmbeddingsConfig, backend: str | None = None
) -> QueryEncoder:
    """The query encoder of a run: ``backend`` (pass the run's recorded one; default ``config.backend``).

    An ONNX backend loads without torch; torch is used on a GPU, for ``torch``, or when the export is missing.
    """
    backend = backend or config.backend
    if backend not in ("torch", *VARIANTS):
        raise ValueError(f"backend must be torch, onnx or onnx-int8, got {backend!r}")
    device = resolve_device(config.device)
    encoder: TextEncoder
    if backend != "torch" and device == "cpu" and onnx_dir and has_variant(onnx_dir, backend):
        variant = cast("OnnxVariant", backend)
        encoder = OnnxEncoder(onnx_dir, variant, config.max_seq_length, config.onnx_threads)
    else:
        encoder = load_encoder(model_dir, device)
    return QueryEncoder(encoder, config)


def encode_with_cache(
    texts: Sequence[str], cache: Path, encode: Callable[[list[str]], np.ndarray]
) -> np.ndarray:
    """``encode``'s vectors of ``texts``, encoding only the texts ``cache`` lacks: a catalog that
    changes a little each night costs a little. ``cache`` (npz: the texts' SHA-256 digests, 128 bits in
    hex, and their vectors) is rewritten to hold exactly ``texts``, so it never outgrows the catalog."""
    if not texts:
        return encode([])
    digests = [hashlib.sha256(text.encode()).hexdigest()[:32] for text in texts]
    known: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            known = dict(zip(stored["digests"].tolist(), stored["vectors"], strict=True))
    missing = {digest: text for digest, text in zip(digests, texts, strict=True) if digest not in known}
    if missing:
        known.update(zip(missing, encode(list(missing.values())), strict=True))
    kept = list(dict.fromkeys(digests))
    vectors = np.asarray([known[digest] for digest in kept], dtype=np.float32)
    with atomic_path(cache) as tmp, tmp.open("wb") as handle:
        np.savez(handle, digests=np.asarray(kept, dtype="U32"), vectors=vectors)
    position = {digest: row for row, digest in enumerate(kept)}
    return vectors[[position[digest] for digest in digests]]


def encode_items(
    model: TextEncoder, items: pl.DataFrame, config: EmbeddingsConfig, show_progress: bool = True
) -> ItemEmbeddings:
    """Embeddings of every catalog item's template text, in catalog order."""
    texts = item_texts(items, config.template)
    vectors = encode_texts(model, texts, config, description="embedding items", show_progress=show_progress)
    return ItemEmbeddings(np.asarray(items["item_id"].to_list(), dtype=object), vectors)


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def user_vectors_from_history(
    item_vectors: np.ndarray, histories: Histories, half_life_events: float
) -> np.ndarray:
    """Recency-weighted mean of each user's item vectors (the item ``half_life_events`` back counts half).

    Users with empty histories get a zero vector (callers skip them).
    """
    out = np.zeros((len(histories), item_vectors.shape[1]), dtype=np.float32)
    for row, history in enumerate(histories.items):
        if len(history):
            age = np.arange(len(history) - 1, -1, -1, dtype=np.float64)
            weights = 0.5 ** (age / half_life_events)
            out[row] = weights @ item_vectors[history] / weights.sum()
    return _normalize(out)


def user_vectors_from_context(
    model: TextEncoder,
    items: pl.DataFrame,
    histories: Histories,
    encoder_config: EncoderConfig,
    embeddings_config: EmbeddingsConfig,
) -> np.ndarray:
    """Each user's context text (last ``context_items`` titles, newest first) through the encoder."""
    parts = item_context_parts(items, encoder_config.context_text_chars)
    texts = context_texts(parts, histories.items, encoder_config.context_items)
    vectors = encode_texts(model, texts, embeddings_config, description="encoding users", show_progress=False)
    empty = np.asarray([len(history) == 0 for history in histories.items], dtype=bool)
    vectors[empty] = 0.0
    return vectors
