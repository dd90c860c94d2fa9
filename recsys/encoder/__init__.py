"""Sentence encoder fine-tuned on interaction logs: pairs from the logs, training, loading."""

from __future__ import annotations

from recsys.encoder.model import load_encoder, resolve_model_path
from recsys.encoder.text import context_texts, item_texts

__all__ = ["context_texts", "item_texts", "load_encoder", "resolve_model_path"]
