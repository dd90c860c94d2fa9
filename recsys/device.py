"""Hardware probes and the one device resolver every stage uses.

Probes never raise: a missing CUDA build, a CPU-only faiss or an old torch all read as
"not available", so the CPU path is always the fallback.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Literal

Device = Literal["cpu", "cuda"]
NUMERIC_CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
)
"""Instruction sets that change which kernels torch, oneDNN and onnxruntime run, and so the last bits of
encoder outputs (bf16 autocast, int8 matrix products): what two machines' runs must share to match."""


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


def machine_facts(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The machine a run ran on, as far as it can move the numbers: CPU model, cores, the instruction
    sets behind the encoder's kernels, torch's CPU dispatch level and the GPU (None without one)."""
    model: str | None = None
    flags: set[str] = set()
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux: no flags, the platform's processor name
        text = ""
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name" and model is None:
            model = value
        elif key == "flags" and not flags:
            flags = set(value.split())
    facts: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu_model": model or platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "cpu_flags": [flag for flag in NUMERIC_CPU_FLAGS if flag in flags] if flags else None,
        "fast_bf16": cpu_has_fast_bf16(),
        "torch_cpu_capability": None,
        "gpu": None,
    }
    try:
        import torch

        facts["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
    except (ImportError, AttributeError, RuntimeError):
        pass
    return facts
