"""Hardware probes and the one device resolver every stage uses.

Probes never raise: a missing CUDA build, a CPU-only faiss or an old torch all read as
"not available", so the CPU path is always the fallback.
"""

from __future__ import annotations

from typing import Literal

Device = Literal["cpu", "cuda"]


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(pref: str = "auto") -> Device:
    """``auto`` picks CUDA when present; asking for ``cuda`` on a machine without it is an error."""
    if pref not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {pref!r}")
    if pref == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if pref == "cuda":
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    return "cpu"


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN runs bfloat16 natively (AVX512-BF16 / AMX); elsewhere bf16 is emulated and slow."""
    try:
        import torch

        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        return False


def faiss_has_gpu() -> bool:
    """True only with a GPU build of faiss *and* a visible GPU."""
    try:
        import faiss
    except ImportError:
        return False
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    if get_num_gpus is None:
        return False
    try:
        return int(get_num_gpus()) > 0
    except RuntimeError:
        return False
