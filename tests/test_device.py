from __future__ import annotations

import pytest
import torch

from recsys.device import cpu_has_fast_bf16, faiss_has_gpu, resolve_device


def test_resolve_device_follows_the_hardware() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without a GPU")
def test_asking_for_missing_cuda_is_an_error() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_unknown_preference_is_rejected() -> None:
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda'"):
        resolve_device("tpu")


def test_probes_answer_without_raising() -> None:
    import faiss

    assert faiss_has_gpu() == (hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0)
    assert isinstance(cpu_has_fast_bf16(), bool)
