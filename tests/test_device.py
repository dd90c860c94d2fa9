from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recsys.device import cpu_has_fast_bf16, faiss_has_gpu, machine_facts, resolve_device


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


def test_machine_facts_name_the_cpu_and_the_instruction_sets_behind_the_encoders_kernels(
    tmp_path: Path,
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16\n\n"
        "processor\t: 1\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16\n"
    )
    facts = machine_facts(cpuinfo)
    assert facts["cpu_model"] == "Example CPU 9000"
    assert facts["cpu_flags"] == ["avx2", "fma", "avx512f", "avx512_bf16"]
    assert facts["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert facts["fast_bf16"] == cpu_has_fast_bf16()
    assert json.loads(json.dumps(facts)) == facts  # goes into the manifest as it is


def test_machine_facts_without_proc_cpuinfo_leave_the_flags_unknown(tmp_path: Path) -> None:
    facts = machine_facts(tmp_path / "missing")
    assert facts["cpu_flags"] is None
    assert facts["cpu_count"] is not None
